"""An ONNX graph from the waveform to the embedding, the features inside.

A phone app then needs no filterbank of its own: it feeds 16 kHz samples
``[batch, samples]`` and gets embeddings ``[batch, dim]``. Inside the graph
are the very modules of :func:`speechbrain_trkd.onnx_export.speaker_features`:
SpeechBrain's ``Fbank`` (STFT, power spectrum, Mel filterbank, log with the
80 dB floor) and the per-utterance mean normalisation. As in the feature
graph, a batch holds waveforms of one length (the graph takes no lengths),
and batch and samples are dynamic.

One part does not export as SpeechBrain writes it: its STFT returns complex
tensors, which the exporter refuses ("STFT does not currently support
complex types"). While exporting, the same transform is written as a
convolution of the zero-padded waveform with the windowed DFT basis, which
every opset has. ONNX's own ``STFT`` operator (opset 17) exports too, but
ONNX Runtime 1.32 ran it 13x slower (16.9 against 1.3 ms for 2 s, 1
thread) and further from PyTorch (largest error 1.3e-3 against 1.7e-5, of
spectra up to 38). Outside the export the module runs SpeechBrain's STFT
unchanged.

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

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import spectral_magnitude

from speechbrain_trkd.onnx_export import WAVEFORM_INPUT, export_checked


class ExportableSTFT(torch.nn.Module):
    """SpeechBrain's STFT, written as a convolution while exporting to ONNX.

    Arguments
    ---------
    stft : speechbrain.processing.features.STFT
        The STFT to compute: centred, zero-padded, one-sided, not
        normalised (``Fbank``'s).

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
        settings = {
            "center": (stft.center, True),
            "pad_mode": (stft.pad_mode, "constant"),
            "onesided": (stft.onesided, True),
            "normalized_stft": (stft.normalized_stft, False),
        }
        for name, (value, needed) in settings.items():
            if value != needed:
                raise ValueError(
                    f"the waveform graph needs an STFT with {name}={needed}, "
                    f"not {value}"
                )
        if stft.window.shape[0] > stft.n_fft:
            raise ValueError(
                f"the waveform graph needs a window of at most n_fft "
                f"({stft.n_fft}) samples, not {stft.window.shape[0]}"
            )
        self.stft = stft
        self.register_buffer("basis", self._dft_basis(stft), persistent=False)

    @staticmethod
    def _dft_basis(stft):
        """``[2 * bins, 1, n_fft]``: the window times cos, then times -sin
        (the real and imaginary parts of ``torch.stft``'s kernel)."""
        n_fft = stft.n_fft
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - stft.window.shape[0]) // 2
        window[left : left + stft.window.shape[0]] = stft.window
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * bins * torch.arange(n_fft) / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        return basis.float().unsqueeze(1)

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

        Example
        -------
        >>> stft = ExportableSTFT(Fbank(n_mels=80).compute_STFT)
        >>> stft(torch.randn(1, 16000)).shape
        torch.Size([1, 101, 201, 2])
        """
        if not torch.onnx.is_in_onnx_export():
            return self.stft(wavs)
        half = self.stft.n_fft // 2
        padded = torch.nn.functional.pad(wavs.unsqueeze(1), (half, half))
        spectra = torch.nn.functional.conv1d(
            padded, self.basis, stride=self.stft.hop_length
        )
        batch, channels, frames = spectra.shape
        spectra = spectra.view(batch, 2, channels // 2, frames)
        return spectra.permute(0, 3, 2, 1)


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
        fbank = Fbank(n_mels=n_mels)
        # Only the parts computed: a failed export then names its own part.
        self.stft = ExportableSTFT(fbank.compute_STFT)
        self.filterbank = fbank.compute_fbanks

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

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        >>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=4)
        >>> WaveformGraph(model).eval()(torch.randn(3, 8000)).shape
        torch.Size([3, 4])
        """
        power = spectral_magnitude(self.stft(waveform.float()))
        feats = self.filterbank(power)
        # SpeechBrain's sentence mean normalisation of whole utterances.
        feats = feats - feats.mean(dim=1, keepdim=True)
        return self.embedding_model(feats).flatten(1)


def export_waveform_onnx(embedding_model, path, n_mels=80, opset=17):
    """Exports a speaker encoder with its features as one ONNX graph.

    The graph's input ``waveform`` is ``[batch, samples]`` of 16 kHz audio,
    its output ``embedding`` is ``[batch, dim]``. It is checked in ONNX
    Runtime against the PyTorch graph (SpeechBrain's own STFT) on waveforms
    of another batch size and length.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        The encoder (ECAPA-TDNN, ResNet, ...), on the CPU.
    path : str
        The ``.onnx`` file to write (replaced atomically).
    n_mels : int
        The encoder's feature size.
    opset : int
        ONNX opset.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "w.onnx")
    >>> os.path.basename(export_waveform_onnx(torch.nn.Linear(80, 4), path))
    'w.onnx'
    """
    seeded = torch.Generator().manual_seed(0)
    return export_checked(
        WaveformGraph(embedding_model, n_mels),
        path,
        {WAVEFORM_INPUT: {0: "batch", 1: "samples"}},
        torch.randn(2, 32000, generator=seeded),
        torch.randn(3, 25121, generator=seeded),
        opset,
    )
