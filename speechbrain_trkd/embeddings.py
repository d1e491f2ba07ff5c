"""Speaker embeddings of whole utterances: read (the mean of the
channels), batched by length, and embedded by any encoder function.

Authors
 * speechbrain-trkd developers 2026
"""

import functools
import os

import torch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import infer_device

from speechbrain_trkd.audio_cache import audio_info, load_audio


def _read_mono(path, sample_rate):
    """Reads a whole utterance as a mono float32 waveform [T]."""
    signal, rate = load_audio(path, dtype=torch.float32)
    if rate != sample_rate:
        raise ValueError(
            f"{path}: sample rate {rate} Hz, the encoder expects "
            f"{sample_rate} Hz"
        )
    if signal.shape[1] == 0:
        raise ValueError(f"{path}: the audio file holds no samples")
    if not torch.isfinite(signal).all():
        raise ValueError(f"{path}: non-finite samples (NaN or inf)")
    return signal.mean(dim=0)


def _equal_length_batches(num_frames, batch_size, max_batch_frames=None):
    """Groups consecutive utterances of equal length (sorted longest first)
    into batches, so that no batch pads an utterance.

    A batch closes at ``batch_size`` utterances, at an utterance of another
    length, or when its audio (utterances times their length) would exceed
    ``max_batch_frames``.

    Example
    -------
    >>> _equal_length_batches([5, 5, 5, 4, 3, 3], batch_size=2)
    [[0, 1], [2], [3], [4, 5]]
    """
    # Padding moves embeddings (padded batches of 8 moved Hub ECAPA ones on
    # openspk dev by up to 2.8e-3 in 1 - cosine, and a C=128 student's O
    # EER from 4.521 to 4.577 %): the EER depended on the batch size. The
    # price on openspk O: 1.2x to 1.9x the padded time (one thread).
    batches = []
    for index in range(len(num_frames)):
        if batches:
            batch = batches[-1]
            total = (len(batch) + 1) * num_frames[batch[0]]
            if (
                len(batch) < batch_size
                and num_frames[index] == num_frames[batch[0]]
                and (max_batch_frames is None or total <= max_batch_frames)
            ):
                batch.append(index)
                continue
        batches.append([index])
    return batches


def _encode(encode_fn, wavs, wav_lens, max_chunk_frames=None):
    """``encode_fn`` on a batch of equal lengths as ``[B, D]``; beyond
    ``max_chunk_frames`` samples, the length-weighted mean over equal
    consecutive chunks.

    Example
    -------
    >>> def mean(wavs, wav_lens):
    ...     return wavs.mean(dim=1, keepdim=True)
    >>> wavs = torch.arange(8.0).reshape(1, 8)
    >>> _encode(mean, wavs, torch.ones(1)), _encode(mean, wavs, None, 3)
    (tensor([[3.5000]]), tensor([[3.5000]]))
    """
    if max_chunk_frames and wavs.shape[1] > max_chunk_frames:
        n_chunks = -(-wavs.shape[1] // max_chunk_frames)
        ones = torch.ones(len(wavs), device=wavs.device)
        chunks = torch.tensor_split(wavs, n_chunks, dim=1)
        return (
            sum(
                _encode(encode_fn, chunk, ones) * chunk.shape[1]
                for chunk in chunks
            )
            / wavs.shape[1]
        )
    encoded = encode_fn(wavs, wav_lens)
    if encoded.ndim == 3 and encoded.shape[1] == 1:
        encoded = encoded.squeeze(1)
    return encoded


def compute_embeddings(
    encode_fn,
    wav_paths,
    batch_size=8,
    device=None,
    sample_rate=16000,
    max_batch_seconds=None,
    num_workers=0,
    max_chunk_seconds=None,
):
    """Embeddings of whole utterances, each at its own length.

    Files are read with ``audio_cache.load_audio`` (``audio_io``, or a
    decoded corpus; multi-channel files are averaged to mono) through a
    ``DynamicItemDataset`` sorted by length, longest first (from the file
    headers; equal lengths in input order), batched by ``make_dataloader``
    from utterances of equal length only, so that no utterance is padded and
    an embedding does not depend on the batch (``batch_size`` bounds a batch
    of equal lengths), and passed to ``encode_fn`` under ``torch.no_grad``.
    The caller puts the model in eval mode.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs [B, T], wav_lens [B]) -> [B, D] or [B, 1, D]``, e.g.
        an in-memory student or :func:`pretrained_encode_fn`.
    wav_paths : list of str
        Audio files, one per utterance.
    batch_size : int
        Utterances of equal length per batch at most.
    device : str or torch.device, optional
        Where the batches are sent (the model's device); by default the
        accelerator when there is one, else the CPU.
    sample_rate : int
        Expected sample rate; a file at another rate raises an error.
    max_batch_seconds : float, optional
        Cap on the audio of a batch (utterances times their length); a
        single longer utterance still forms a batch of its own.
    num_workers : int
        DataLoader worker processes that read audio.
    max_chunk_seconds : float, optional
        Bounds the memory of long utterances: one longer than this is cut
        into equal consecutive chunks of at most this length, each embedded
        alone, and its embedding is their length-weighted mean (statistics
        pooled per chunk, not over the whole utterance). Shorter utterances
        are unchanged.

    Returns
    -------
    torch.Tensor
        Float32 embeddings [N, D] on the CPU, in the order of ``wav_paths``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.dataio import audio_io
    >>> def mean_abs(wavs, wav_lens):  # a toy encoder: mean |x| over time
    ...     n = wavs.shape[1]
    ...     mask = torch.arange(n) < wav_lens[:, None] * n
    ...     return ((wavs.abs() * mask).sum(1) / mask.sum(1)).unsqueeze(1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = []
    ...     for i, n in enumerate([1600, 800, 2400]):
    ...         paths.append(os.path.join(tmp, f"{i}.wav"))
    ...         wav = torch.full((1, n), 0.25 * (i + 1))
    ...         audio_io.save(paths[-1], wav, 16000)
    ...     emb = compute_embeddings(mean_abs, paths, 2, device="cpu")
    >>> emb.shape, emb.squeeze(1).tolist()
    (torch.Size([3, 1]), [0.25, 0.5, 0.75])
    """
    if len(wav_paths) == 0:
        raise ValueError("compute_embeddings: no audio files given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if device is None:
        device = infer_device()
    utterances = {}
    for index, path in enumerate(wav_paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"audio file not found: {path}")
        # Sorting on minus the length puts the longest first and keeps ties
        # in input order (reverse=True would reverse ties).
        frames = audio_info(path).frames
        utterances[str(index)] = {"wav": path, "minus_frames": -frames}
    dataset = DynamicItemDataset(utterances)
    dataset.add_dynamic_item(
        functools.partial(_read_mono, sample_rate=sample_rate),
        takes="wav",
        provides="sig",
    )
    dataset.set_output_keys(["id", "sig"])
    dataset = dataset.filtered_sorted(sort_key="minus_frames")
    max_batch_frames = None
    if max_batch_seconds is not None:
        max_batch_frames = int(max_batch_seconds * sample_rate)
    num_frames = [-dataset.data[i]["minus_frames"] for i in dataset.data_ids]
    loader = make_dataloader(
        dataset,
        batch_sampler=_equal_length_batches(
            num_frames, batch_size, max_batch_frames
        ),
        num_workers=num_workers,
    )
    max_chunk_frames = None
    if max_chunk_seconds is not None:
        max_chunk_frames = int(max_chunk_seconds * sample_rate)
    embeddings = None
    with torch.no_grad():
        for batch in loader:
            indices = torch.tensor([int(i) for i in batch.id])
            wavs, wav_lens = batch.sig
            encoded = _encode(
                encode_fn,
                wavs.to(device),
                wav_lens.to(device),
                max_chunk_frames,
            )
            if encoded.ndim != 2 or encoded.shape[0] != len(indices):
                raise ValueError(
                    f"encode_fn returned shape {tuple(encoded.shape)} for a "
                    f"batch of {len(indices)}; expected [B, D] or [B, 1, D]"
                )
            if embeddings is None:
                embeddings = torch.empty(len(wav_paths), encoded.shape[1])
            embeddings[indices] = encoded.float().cpu()
    return embeddings
