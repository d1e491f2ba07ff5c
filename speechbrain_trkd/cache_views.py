"""Augmented views of a teacher cache, regenerated exactly from a seed.

A good teacher is consistent (Beyer et al., CVPR 2022): the student must see
the very waveform the teacher labelled, and under strong augmentation. A
teacher cache stores the teacher's embedding of each view once; the student's
loader must then rebuild the same augmented waveform from the crop alone.
``ViewAugmentation`` does that: each view's random draws (which augmentations
apply, the SNR, the noise, the dropped bands and chunks) come from a seed
derived from ``(cache seed, segment id, view)``, whatever the process, the
order or the batch. The augmenter is any SpeechBrain ``Augmenter`` that keeps
the length of its input (noise, band and chunk drop; not speed perturbation,
whose output length differs from the crop the cache recorded).
``SeededCsvNoise`` and ``SeededCsvReverb`` add noise and reverberation from
local CSV files (``noise_csv``, ``rir_csv``) with the file and its offset
drawn from that same seed: SpeechBrain's ``AddNoise`` and ``AddReverb``
take the next file of a shuffled loader, which depends on how many views the
process augmented before.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import random
import zlib

import numpy as np
import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb
from speechbrain.dataio import audio_io

# Attribute types kept in an augmenter's description (its settings).
_SETTING_TYPES = (bool, int, float, str, type(None))
# What SpeechBrain's Augmenter writes on itself while it runs (not settings).
_RUNTIME_ATTRIBUTES = {
    "do_augment",
    "N_augment",
    "augment_end_index_batch",
    "skip_concat",
}


def describe_augmentation(module):
    """The settings of a SpeechBrain augmentation as a JSON-able dict.

    Every public attribute of a plain type is kept, a function by its
    qualified name, a nested augmenter's ``augmentations`` each described in
    turn; a cache's manifest records this, so that a run whose augmentation
    differs from the build's is refused.

    Arguments
    ---------
    module : object
        An ``Augmenter`` or one of its augmentations.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain.augment.time_domain import AddNoise
    >>> settings = describe_augmentation(AddNoise(snr_low=5, snr_high=20))
    >>> settings["class"], settings["snr_low"], settings["noise_funct"]
    ('speechbrain.augment.time_domain.AddNoise', 5, 'torch.randn_like')
    """
    kind = type(module)
    settings = {"class": f"{kind.__module__}.{kind.__qualname__}"}
    for key, value in sorted(vars(module).items()):
        if key.startswith("_") or key in _RUNTIME_ATTRIBUTES | {"training"}:
            continue
        if isinstance(value, _SETTING_TYPES):
            settings[key] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(item, _SETTING_TYPES) for item in value
        ):
            settings[key] = list(value)
        elif callable(value) and hasattr(value, "__name__"):
            owner = getattr(value, "__module__", None) or "torch"
            settings[key] = f"{owner}.{value.__name__}"
    nested = getattr(module, "augmentations", None)
    if isinstance(nested, dict):
        settings["augmentations"] = {
            name: describe_augmentation(item) for name, item in nested.items()
        }
    return settings


def view_seed(seed, segment_id, view):
    """The seed of one view's random draws.

    Arguments
    ---------
    seed : int
        The cache's seed.
    segment_id : str
        The segment's id.
    view : int
        The view's index.

    Returns
    -------
    int

    Example
    -------
    >>> view_seed(1986, "spk/s1/u_0_32000", 1) == view_seed(
    ...     1986, "spk/s1/u_0_32000", 1)
    True
    >>> view_seed(1986, "spk/s1/u_0_32000", 1) != view_seed(
    ...     1986, "spk/s1/u_0_32000", 2)
    True
    """
    words = [int(seed), zlib.crc32(segment_id.encode("utf-8")), int(view)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


class ViewAugmentation:
    """Augments the views of a cache's segments, reproducibly.

    Views ``0 .. clean_views - 1`` stay clean; each later view is augmented
    by ``augmenter`` under torch and Python random states seeded by
    :func:`view_seed` (the caller's states are left as they were), outside
    any autocast, so that the teacher's build and the student's loader give
    the same samples.

    Arguments
    ---------
    augmenter : speechbrain.augment.augmenter.Augmenter
        Applied to one view at a time (``[1, samples]``); it must keep the
        length and must not concatenate the original.
    clean_views : int
        Leading views left clean (view 0 is also the validation view).
    seed : int
        The cache's seed.

    Example
    -------
    >>> from speechbrain.augment.augmenter import Augmenter
    >>> from speechbrain.augment.time_domain import AddNoise, DropChunk
    >>> views = ViewAugmentation(
    ...     Augmenter(augmentations=[AddNoise(snr_low=5, snr_high=5),
    ...                              DropChunk()],
    ...               min_augmentations=1, max_augmentations=2),
    ...     clean_views=1, seed=3)
    >>> wav = torch.sin(torch.arange(8000) / 5.0)
    >>> torch.equal(views(wav, "s0", 0), wav)
    True
    >>> torch.equal(views(wav, "s0", 1), views(wav, "s0", 1))
    True
    >>> torch.equal(views(wav, "s0", 1), views(wav, "s0", 2))
    False
    """

    def __init__(self, augmenter, clean_views=1, seed=0):
        if getattr(augmenter, "concat_original", False):
            raise ValueError(
                "the cache's view augmenter must not concatenate the "
                "original (concat_original: False): a view is one waveform"
            )
        if int(clean_views) < 0:
            raise ValueError(
                f"clean_views must be 0 or more, got {clean_views}"
            )
        self.augmenter = augmenter
        self.clean_views = int(clean_views)
        self.seed = int(seed)

    def settings(self):
        """What the cache's manifest records of this augmentation.

        Example
        -------
        >>> from speechbrain.augment.augmenter import Augmenter
        >>> from speechbrain.augment.time_domain import DropChunk
        >>> settings = ViewAugmentation(
        ...     Augmenter(augmentations=[DropChunk()]), 2).settings()
        >>> settings["clean_views"], list(
        ...     settings["augmenter"]["augmentations"])
        (2, ['DropChunk0'])
        """
        return {
            "clean_views": self.clean_views,
            "augmenter": describe_augmentation(self.augmenter),
        }

    def __call__(self, wav, segment_id, view):
        """The waveform of one view of a segment.

        Arguments
        ---------
        wav : torch.Tensor
            The view's clean crop, ``[samples]``.
        segment_id : str
            The segment's id.
        view : int
            The view's index.

        Returns
        -------
        torch.Tensor
            ``[samples]``.
        """
        if view < self.clean_views:
            return wav
        python_state = random.getstate()
        with (
            torch.random.fork_rng(devices=[]),
            torch.autocast("cpu", enabled=False),
            torch.no_grad(),
        ):
            seed = view_seed(self.seed, segment_id, view)
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                out, _ = self.augmenter(wav.float().unsqueeze(0), torch.ones(1))
            finally:
                random.setstate(python_state)
        if out.shape != (1, wav.shape[0]):
            raise ValueError(
                f"the cache's view augmenter turned a view of "
                f"{wav.shape[0]} samples into {tuple(out.shape)}: a view "
                "must keep its crop's length (no speed perturbation)"
            )
        return out[0]


def _csv_paths(csv_file):
    """The ``wav`` column of a SpeechBrain CSV, naming the file at fault."""
    with open(csv_file, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    if not rows or "wav" not in rows[0]:
        raise ValueError(f"{csv_file} has no rows with a 'wav' column")
    return [row["wav"] for row in rows]


def _seeded_file(paths):
    """One file of ``paths`` read whole (the mean of its channels), chosen
    by the torch generator: ``[samples]``."""
    index = int(torch.randint(len(paths), (1,)))
    signal, _ = audio_io.load(paths[index])
    return signal.mean(dim=0)


class SeededCsvNoise(AddNoise):
    """SpeechBrain's ``AddNoise`` from a CSV of noise files, each view's
    file and offset drawn from the torch generator (seeded per view by
    ``ViewAugmentation``); the SNR and the mixing are SpeechBrain's.

    Arguments
    ---------
    csv_file : str
        A SpeechBrain CSV with a ``wav`` column.
    **kwargs
        ``AddNoise``'s other arguments (``snr_low``, ``snr_high``,
        ``noise_sample_rate``, ``clean_sample_rate``, ...).

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> audio_io.save(os.path.join(folder, "n.wav"), torch.randn(1, 900) / 9,
    ...               16000)
    >>> with open(os.path.join(folder, "noise.csv"), "w") as f:
    ...     _ = f.write(f"ID,wav\\nn,{os.path.join(folder, 'n.wav')}\\n")
    >>> noise = SeededCsvNoise(os.path.join(folder, "noise.csv"), snr_low=5,
    ...                        snr_high=5)
    >>> clean = torch.sin(torch.arange(1000) / 3.0).unsqueeze(0)
    >>> _ = torch.manual_seed(1); first = noise(clean, torch.ones(1))
    >>> _ = torch.manual_seed(1); again = noise(clean, torch.ones(1))
    >>> torch.equal(first, again), first.shape
    (True, torch.Size([1, 1000]))
    """

    def __init__(self, csv_file, **kwargs):
        super().__init__(csv_file=csv_file, pad_noise=True, **kwargs)
        self._paths = _csv_paths(csv_file)
        self.data_loader = None  # AddNoise's loader is never built

    def _load_noise_batch_of_size(self, batch_size):
        """``batch_size`` noises, padded to the longest, and their relative
        lengths."""
        noises = [_seeded_file(self._paths) for _ in range(batch_size)]
        longest = max(len(noise) for noise in noises)
        batch = torch.zeros(batch_size, longest)
        for row, noise in enumerate(noises):
            batch[row, : len(noise)] = noise
        lengths = torch.tensor([len(n) / longest for n in noises])
        return batch, lengths


class SeededCsvReverb(AddReverb):
    """SpeechBrain's ``AddReverb`` from a CSV of room impulse responses,
    each view's response drawn from the torch generator.

    Arguments
    ---------
    csv_file : str
        A SpeechBrain CSV with a ``wav`` column.
    **kwargs
        ``AddReverb``'s other arguments.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rir = torch.zeros(1, 200); rir[0, 0] = 1.0; rir[0, 50] = 0.5
    >>> audio_io.save(os.path.join(folder, "r.wav"), rir, 16000)
    >>> with open(os.path.join(folder, "rir.csv"), "w") as f:
    ...     _ = f.write(f"ID,wav\\nr,{os.path.join(folder, 'r.wav')}\\n")
    >>> reverb = SeededCsvReverb(os.path.join(folder, "rir.csv"))
    >>> reverb(torch.randn(1, 800)).shape
    torch.Size([1, 800])
    """

    def __init__(self, csv_file, **kwargs):
        super().__init__(csv_file=csv_file, **kwargs)
        self._paths = _csv_paths(csv_file)

    def _load_rir(self, waveforms):
        """One impulse response, ``[1, samples, 1]``."""
        rir = _seeded_file(self._paths)
        return rir.to(waveforms.dtype).view(1, -1, 1).to(waveforms.device)
