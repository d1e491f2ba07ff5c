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

Authors
 * speechbrain-trkd developers 2026
"""

import random
import zlib

import numpy as np
import torch

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
