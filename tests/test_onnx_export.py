"""ONNX export: parity with PyTorch, caught perturbations, clear failures."""

import math
import shlex
import subprocess
import sys

import pytest
import torch
from recipe_runner import RECIPE_ROWS, REPO, row_id
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.lobes.models.ResNet import ResNet

from speechbrain_trkd.onnx_export import (
    INT8_FILE,
    MIN_EXPORT_COSINE,
    ONNX_FILE,
    WAVEFORM_FILE,
    OnnxExportError,
    export_onnx,
    onnx_encode_fn,
    onnx_session,
    speaker_features,
)
from speechbrain_trkd.onnx_int8 import quantize_int8, quantize_int8_static
from speechbrain_trkd.onnx_waveform import export_waveform_onnx

pytest.importorskip("onnxruntime", reason="needs the deploy extra")

LENGTHS_S = (0.4, 1.3, 3.7)
SHARED = REPO.parent / "shared"
OPENSPK = SHARED / "data" / "openspk"
OPENSPK_TEACHER = SHARED / "models" / "ecapa-openspk"


def voiced_audio(seconds, seed):
    """A voice-like test signal: harmonics of a gliding pitch, in bursts."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    pitch = 110 + 60 * torch.rand(1, generator=gen) + 20 * torch.sin(3 * t)
    phase = 2 * math.pi * torch.cumsum(pitch / 16000, dim=0)
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
    bursts = (torch.sin(2 * math.pi * 3 * t) > -0.3).float()
    noise = 0.01 * torch.randn(len(t), generator=gen)
    return 0.1 * voice * bursts + noise


def small_ecapa():
    torch.manual_seed(0)
    return ECAPA_TDNN(80, channels=[32, 32, 32, 32, 96], lin_neurons=24)


def small_resnet():
    torch.manual_seed(0)
    return ResNet(
        80, channels=[8, 8, 16, 16], block_sizes=[1, 1, 1, 1], lin_neurons=24
    )


def worst_cosine(model, session, seconds=LENGTHS_S):
    """Worst cosine between PyTorch and ONNX Runtime on generated audio."""
    encode = onnx_encode_fn(session)
    cosines = []
    for seed, duration in enumerate(seconds):
        wav = voiced_audio(duration, seed).unsqueeze(0)
        with torch.no_grad():
            expected = model.eval()(speaker_features(wav)).flatten(1)
        got = encode(wav, torch.ones(1))
        cosines.append(torch.cosine_similarity(got, expected).item())
    return min(cosines)


@pytest.fixture(params=["ecapa", "resnet"])
def exported(request, tmp_path):
    """A small encoder of each family and its ONNX session."""
    model = small_ecapa() if request.param == "ecapa" else small_resnet()
    path = export_onnx(model, str(tmp_path / "model.onnx"))
    return model, path


def test_parity_on_audio_of_several_lengths(exported):
    model, path = exported
    assert worst_cosine(model, onnx_session(path)) >= MIN_EXPORT_COSINE


@pytest.mark.parametrize("family", ["ecapa", "resnet"])
def test_waveform_graph_matches_the_feature_path(family, tmp_path):
    """Embeddings from the waveform graph equal the Python feature path's
    (``speaker_features`` then the encoder) to 1e-4 in cosine, alone and in
    a batch, at several lengths; its STFT is a convolution (ONNX's STFT
    operator is slower in ONNX Runtime)."""
    import onnx

    model = small_ecapa() if family == "ecapa" else small_resnet()
    path = export_waveform_onnx(model, str(tmp_path / WAVEFORM_FILE))
    session = onnx_session(path)
    assert worst_cosine(model, session, (0.3, 1.3, 2.05, 6.1)) >= 1 - 1e-4
    wavs = torch.stack([voiced_audio(1.7, seed) for seed in range(3)])
    batch = session.run(None, {"waveform": wavs.numpy()})[0]
    with torch.no_grad():
        expected = model.eval()(speaker_features(wavs)).flatten(1)
    cosine = torch.cosine_similarity(torch.from_numpy(batch), expected)
    assert cosine.min().item() >= 1 - 1e-4
    operators = {node.op_type for node in onnx.load(path).graph.node}
    assert "Conv" in operators and "STFT" not in operators


@pytest.mark.skipif(
    not (OPENSPK.is_dir() and OPENSPK_TEACHER.is_dir()),
    reason=f"openspk or its teacher not found under {SHARED}",
)
def test_waveform_graph_matches_pytorch_on_real_speech(tmp_path):
    """The openspk teacher from the waveform: its ONNX embeddings of real
    dev utterances equal the recipe's PyTorch scoring path to 1e-4."""
    from speechbrain.dataio import audio_io

    from speechbrain_trkd import pretrained

    encoder = pretrained.load_pretrained_encoder(str(OPENSPK_TEACHER), "cpu")
    path = export_waveform_onnx(
        encoder.mods.embedding_model, str(tmp_path / WAVEFORM_FILE)
    )
    encode = onnx_encode_fn(onnx_session(path))
    reference = pretrained.pretrained_encode_fn(encoder)
    with open(OPENSPK / "trials" / "O.txt", encoding="utf-8") as fin:
        utterances = sorted({ln.split()[2] for ln in fin})[::500][:8]
    for utterance in utterances:
        wav, _ = audio_io.load(str(OPENSPK / "wav" / utterance))
        with torch.no_grad():
            expected = reference(wav, torch.ones(1)).reshape(1, -1)
        cosine = torch.cosine_similarity(encode(wav, torch.ones(1)), expected)
        assert cosine.item() >= 1 - 1e-4, utterance


@pytest.mark.parametrize(
    ("n_fft", "win_length", "hop"), [(400, 400, 160), (401, 320, 120)]
)
def test_the_exported_stft_equals_speechbrains(n_fft, win_length, hop):
    """The convolution the export writes equals SpeechBrain's STFT, also
    for an odd n_fft and a window shorter than it."""
    from unittest import mock

    from speechbrain.processing.features import STFT

    from speechbrain_trkd.onnx_waveform import ExportableSTFT

    stft = STFT(
        16000,
        win_length=win_length * 1000 / 16000,
        hop_length=hop * 1000 / 16000,
        n_fft=n_fft,
    )
    wavs = torch.stack([voiced_audio(1.01, seed) for seed in range(2)])
    exporting = mock.patch("torch.onnx.is_in_onnx_export", return_value=True)
    not_speechbrains = mock.patch.object(
        STFT, "forward", side_effect=AssertionError("SpeechBrain's STFT ran")
    )
    with exporting, not_speechbrains:
        written = ExportableSTFT(stft)(wavs)
    expected = stft(wavs)
    assert written.shape == expected.shape
    scale = expected.abs().max()
    assert (written - expected).abs().max() <= 1e-5 * scale


def test_waveform_graph_refuses_an_stft_it_does_not_compute():
    from speechbrain.lobes.features import Fbank

    from speechbrain_trkd.onnx_waveform import ExportableSTFT

    stft = Fbank(n_mels=80).compute_STFT
    stft.center = False
    with pytest.raises(ValueError, match="center=True, not False"):
        ExportableSTFT(stft)


def test_a_perturbed_weight_is_caught(exported):
    """The parity check fails when the two sides differ by one weight."""
    model, path = exported
    session = onnx_session(path)
    weight = next(p for n, p in model.named_parameters() if "conv" in n)
    with torch.no_grad():
        weight[0].add_(0.5 * weight[0].abs().max() + 0.1)
    assert worst_cosine(model, session) < MIN_EXPORT_COSINE


def test_dynamic_batch_and_length(exported):
    """One run of a batch equals the runs of its utterances alone."""
    _, path = exported
    session = onnx_session(path)
    wavs = torch.stack([voiced_audio(1.1, seed) for seed in range(3)])
    feats = speaker_features(wavs)
    batch = session.run(None, {"features": feats.numpy()})[0]
    alone = [session.run(None, {"features": f[None].numpy()})[0] for f in feats]
    assert batch.shape == (3, 24)
    for row, single in zip(batch, alone, strict=True):
        assert torch.allclose(
            torch.tensor(row), torch.tensor(single[0]), atol=1e-5
        )


def test_int8_stays_close_and_is_smaller(tmp_path):
    model = small_ecapa()
    path = export_onnx(model, str(tmp_path / "model.onnx"))
    int8 = quantize_int8(path)
    assert (tmp_path / "model.int8.onnx").stat().st_size < (
        tmp_path / "model.onnx"
    ).stat().st_size
    assert worst_cosine(model, onnx_session(int8)) > 0.9


def voiced_features(seconds, seeds, gain=1.0):
    """Calibration inputs: features of generated voices."""
    return [
        speaker_features(gain * voiced_audio(seconds, seed)).numpy()
        for seed in seeds
    ]


def activation_scales(int8_path):
    """The QDQ graph's scale initialisers, by name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(int8_path).graph
    return {
        init.name: numpy_helper.to_array(init)
        for init in graph.initializer
        if init.name.endswith("_scale")
    }


def test_static_int8_is_qdq_per_channel_and_stays_close(tmp_path):
    """Static int8 writes QuantizeLinear/DequantizeLinear pairs, weights
    with one scale per output channel, and embeds close to fp32."""
    import onnx

    model = small_ecapa()
    path = export_onnx(model, str(tmp_path / "model.onnx"))
    int8 = quantize_int8_static(path, voiced_features(1.5, range(8)))
    ops = {node.op_type for node in onnx.load(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = activation_scales(int8)
    assert any(value.ndim == 1 and value.size > 1 for value in scales.values())
    assert worst_cosine(model, onnx_session(int8)) > 0.9


def test_calibration_sets_the_quantisation_scales(tmp_path):
    """Two calibration sets (other voices, 4x louder) give other scales."""
    model = small_ecapa()
    path = export_onnx(model, str(tmp_path / "model.onnx"))
    quiet = activation_scales(
        quantize_int8_static(
            path, voiced_features(1.5, range(4)), str(tmp_path / "a.onnx")
        )
    )
    loud = activation_scales(
        quantize_int8_static(
            path,
            voiced_features(1.5, range(4, 8), gain=4.0),
            str(tmp_path / "b.onnx"),
        )
    )
    assert quiet.keys() == loud.keys()
    differ = [
        name
        for name in quiet
        if quiet[name].shape == () and not (quiet[name] == loud[name])
    ]
    assert differ, "the activation scales do not depend on the calibration"


class Spectrum(torch.nn.Module):
    """An operator ONNX has no export for."""

    def forward(self, x):
        return torch.linalg.eigvals(x[..., :2, :2]).real.sum() + x


class WithSpectrum(torch.nn.Module):
    """An ECAPA block followed by :class:`Spectrum`."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        self.spectrum = Spectrum()

    def forward(self, x, lengths=None):
        return self.spectrum(self.block(x, lengths=lengths))


def test_unexportable_module_is_named(tmp_path):
    model = small_ecapa()
    model.blocks[2] = WithSpectrum(model.blocks[2])
    with pytest.raises(OnnxExportError) as error:
        export_onnx(model, str(tmp_path / "model.onnx"))
    message = str(error.value)
    assert "'blocks.2.spectrum' (Spectrum)" in message, message
    assert "linalg_eigvals" in message
    assert not list(tmp_path.iterdir())


def test_pytorch_scoring_path_uses_the_same_features(tmp_path):
    """``pretrained_encode_fn`` equals ``EncoderClassifier.encode_batch``."""
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.ECAPA_TDNN import Classifier
    from speechbrain.processing.features import InputNormalization

    from speechbrain_trkd import pretrained
    from speechbrain_trkd.export import export_model

    labels = CategoricalEncoder()
    labels.update_from_iterable(["a", "b"])
    labels.save(str(tmp_path / "label_encoder.txt"))
    folder = export_model(
        small_ecapa().eval(),
        Classifier(24, out_neurons=2),
        str(tmp_path / "label_encoder.txt"),
        "models/ecapa.yaml",
        {"channels": 32, "emb_dim": 24, "out_n_neurons": 2},
        str(tmp_path / "export"),
        {"title": "t", "description": "d"},
    )
    norm = InputNormalization(norm_type="global", std_norm=False)
    norm(torch.randn(4, 1, 24), torch.ones(4))  # fit a global mean
    norm._save(f"{folder}/mean_var_norm_emb.ckpt")
    encoder = pretrained.load_pretrained_encoder(folder, "cpu")
    wavs = torch.stack([voiced_audio(1.0, 0), voiced_audio(1.0, 1)])
    wavs[1, 9000:] = 0
    lens = torch.tensor([1.0, 0.5625])
    for normalize in (False, True):
        encode = pretrained.pretrained_encode_fn(encoder, normalize)
        expected = encoder.encode_batch(wavs, lens, normalize=normalize)
        assert torch.equal(encode(wavs, lens), expected)


def test_export_student_writes_onnx_that_matches(recipe_runner, tmp_path):
    """A trained run exported as a user would: ``--onnx_int8``."""
    from speechbrain.inference.speaker import EncoderClassifier

    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    output = recipe_runner.run(row, name="ecapa_to_small_export", debug=False)
    folder = tmp_path / "exported"
    command = [
        sys.executable,
        str(REPO / "recipes/VoxCeleb/TRKD/export_student.py"),
        f"{output}/hyperparams.yaml",
        f"--export_folder={folder}",
        "--onnx_int8",
        "--onnx_waveform",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{shlex.join(command)}:\n{result.stderr[-3000:]}"
    )
    encoder = EncoderClassifier.from_hparams(
        source=str(folder), savedir=str(tmp_path / "loaded")
    )
    wav = voiced_audio(2.0, 5).unsqueeze(0)
    expected = encoder.encode_batch(wav).squeeze(1)
    for name, min_cosine in (
        (ONNX_FILE, MIN_EXPORT_COSINE),
        (WAVEFORM_FILE, MIN_EXPORT_COSINE),
        (INT8_FILE, 0.9),
    ):
        got = onnx_encode_fn(onnx_session(str(folder / name)))(
            wav, torch.ones(1)
        )
        assert torch.cosine_similarity(got, expected).item() >= min_cosine


def test_int8_without_its_calibration_csv_is_refused_first(
    recipe_runner, tmp_path
):
    """``--onnx_int8`` with a training CSV that is gone stops before any
    file is written, naming the CSV."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    output = recipe_runner.run(row, name="ecapa_to_small_export", debug=False)
    folder = tmp_path / "exported"
    command = [
        sys.executable,
        str(REPO / "recipes/VoxCeleb/TRKD/export_student.py"),
        str(output),
        f"--export_folder={folder}",
        f"--train_annotation={tmp_path}/gone.csv",
        "--onnx_int8",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"{tmp_path}/gone.csv, which does not exist" in result.stderr
    assert not folder.exists()
    no_crops = [*command[:4], "--onnx_int8", "--onnx_calibration_crops=0"]
    result = subprocess.run(no_crops, capture_output=True, text=True)
    assert "calibration needs at least one crop" in result.stderr
    assert not folder.exists()
