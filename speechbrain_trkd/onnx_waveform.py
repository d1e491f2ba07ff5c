"""An ONNX graph from the waveform to the embedding, the features inside.

A phone app then needs no filterbank of its own: it feeds 16 kHz samples
``[batch, samples]`` and gets embeddings ``[batch, dim]``. Inside the graph
are the very modules of :func:`speechbrain_trkd.onnx_export.speaker_features`:
SpeechBrain's ``Fbank`` (STFT, power spectrum, Mel filterbank, log with the
80 dB floor) and the per-utterance mean normalisation. As in the feature
graph, a batch holds waveforms of one length (the graph takes no lengths),
and batch and samples are dynamic.

One part does not export as SpeechBrain writes it: its STFT returns complex
tensors, and the exporter has no complex types ("STFT does not currently
support complex types"). While exporting, the STFT is computed by the
real-valued form of ``torch.stft``, equal to it, which the exporter writes
as ONNX's ``STFT`` operator: the graph needs opset 17 or later. Outside the
export the module runs SpeechBrain's STFT unchanged.

Example
-------
>>> import os, tempfile
>>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
>>> from speechbrain_trkd.onnx_export import onnx_session, speaker_features
>>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=16).eval()
>>> path = os.path.join(tempfile.mkdtemp(), "w.onnx")
>>> session = onnx_session(export_waveform_onnx(model, path))
>>> wav = torch.randn(1, 24000)
>>> got = torch.from_numpy(session.run(None, {"waveform": wav.numpy()})[0])
>>> expected = model(speaker_features(wav)).flatten(1)
>>> bool(torch.cosine_similarity(got, expected).min() > 0.9999)
True

Authors
 * speechbrain-trkd developers 2026
"""

import warnings

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import spectral_magnitude

from speechbrain_trkd.onnx_export import (
    WAVEFORM_INPUT,
    OnnxExportError,
    export_checked,
)

# ONNX's STFT operator first appears in this opset.
MIN_OPSET = 17


class ExportableSTFT(torch.nn.Module):
    """SpeechBrain's STFT, written as a real-valued ``torch.stft`` while
    exporting to ONNX.

    Arguments
    ---------
    stft : speechbrain.processing.features.STFT
        The STFT to compute (its window, sizes, centring and padding).

    Example
    -------
    >>> fbank = Fbank(n_mels=80)
    >>> wav = torch.randn(2, 4000)
    >>> torch.equal(ExportableSTFT(fbank.compute_STFT)(wav),
    ...             fbank.compute_STFT(wav))
    True
    """

    def __init__(self, stft):
        super().__init__()
        self.stft = stft

    def forward(self, wavs):
        """The STFT ``[batch, frames, bins, 2]`` of ``wavs [batch, samples]``.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[batch, samples]``.

        Returns
        -------
        torch.Tensor
            Real and imaginary parts in the last dimension, as SpeechBrain's.
        """
        if not torch.onnx.is_in_onnx_export():
            return self.stft(wavs)
        stft = self.stft
        with warnings.catch_warnings():
            # The complex form does not export; this one is equal.
            warnings.filterwarnings("ignore", "stft with return_complex=False")
            real = torch.stft(
                wavs,
                stft.n_fft,
                stft.hop_length,
                stft.win_length,
                stft.window.to(wavs.device),
                stft.center,
                stft.pad_mode,
                stft.normalized_stft,
                stft.onesided,
                return_complex=False,
            )
        return real.transpose(2, 1)


class WaveformGraph(torch.nn.Module):
    """What is exported: waveforms ``[B, samples]`` to embeddings ``[B, D]``.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        A SpeechBrain speaker encoder on features ``[B, frames, n_mels]``.
    n_mels : int
        Its filterbank channels.

    Example
    -------
    >>> from speechbrain_trkd.onnx_export import speaker_features
    >>> graph = WaveformGraph(torch.nn.Linear(80, 4)).eval()
    >>> wav = torch.randn(2, 16000)
    >>> torch.allclose(graph(wav), graph.embedding_model(
    ...     speaker_features(wav)).flatten(1), atol=1e-5)
    True
    """

    def __init__(self, embedding_model, n_mels=80):
        super().__init__()
        self.embedding_model = embedding_model
        self.fbank = Fbank(n_mels=n_mels)
        self.stft = ExportableSTFT(self.fbank.compute_STFT)

    def forward(self, waveform):
        """Embeds whole waveforms (every sample counts).

        Arguments
        ---------
        waveform : torch.Tensor
            ``[batch, samples]``, 16 kHz.

        Returns
        -------
        torch.Tensor
            Embeddings ``[batch, dim]``.
        """
        power = spectral_magnitude(self.stft(waveform.float()))
        feats = self.fbank.compute_fbanks(power)
        # SpeechBrain's sentence mean normalisation of whole utterances.
        feats = feats - feats.mean(dim=1, keepdim=True)
        return self.embedding_model(feats).flatten(1)


def export_waveform_onnx(embedding_model, path, n_mels=80, opset=MIN_OPSET):
    """Exports a speaker encoder with its features as one ONNX graph.

    The graph's input ``waveform`` is ``[batch, samples]`` of 16 kHz audio,
    its output ``embedding`` is ``[batch, dim]``. It is checked in ONNX
    Runtime against the PyTorch graph (SpeechBrain's own STFT) on waveforms
    of another batch size and length.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        The encoder (ECAPA-TDNN, ResNet, ...).
    path : str
        The ``.onnx`` file to write (replaced atomically).
    n_mels : int
        The encoder's feature size.
    opset : int
        ONNX opset, 17 or later.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> export_waveform_onnx(torch.nn.Linear(80, 4), "/tmp/x.onnx", opset=16)
    Traceback (most recent call last):
    ...
    speechbrain_trkd.onnx_export.OnnxExportError: the waveform graph needs...
    """
    if opset < MIN_OPSET:
        raise OnnxExportError(
            f"the waveform graph needs opset {MIN_OPSET} or later (ONNX's "
            f"STFT operator), not {opset}; the feature graph "
            "(export_onnx) has no such need"
        )
    seeded = torch.Generator().manual_seed(0)
    return export_checked(
        WaveformGraph(embedding_model, n_mels),
        path,
        {WAVEFORM_INPUT: {0: "batch", 1: "samples"}},
        torch.randn(2, 32000),
        torch.randn(3, 25121, generator=seeded),
        opset,
    )
