"""ONNX export of speaker encoders, and their features.

The default graph starts from the features: :func:`speaker_features` (80
filterbank energies, mean-normalised per utterance, as in
``hparams/models/*.yaml``) feeds both the PyTorch scoring path and an ONNX
Runtime session. The exported graph maps features ``[batch, frames,
n_mels]`` to embeddings ``[batch, dim]``, both batch and frames dynamic,
for ECAPA-TDNN and ResNet encoders alike. A batch of the graph holds
utterances of one length: it takes no lengths, so a padded frame counts as
speech (:func:`onnx_encode_fn` runs each utterance alone). A graph that
starts from the waveform, with the features inside, is in
``speechbrain_trkd.onnx_waveform``; int8 copies, in
``speechbrain_trkd.onnx_int8``.

Needs the ``deploy`` extra (``pip install -e ".[deploy]"``): ``onnx`` and
``onnxruntime``.

Example
-------
>>> import tempfile
>>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
>>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=16).eval()
>>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
>>> session = onnx_session(path)
>>> feats = speaker_features(torch.randn(1, 16000))
>>> session.run(None, {"features": feats.numpy()})[0].shape
(1, 16)

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import functools
import io
import os
import warnings
from unittest import mock

import speechbrain.lobes.models.ECAPA_TDNN as ecapa_tdnn
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)
ONNX_FILE = "embedding_model.onnx"
INT8_FILE = "embedding_model.int8.onnx"
WAVEFORM_FILE = "embedding_model.waveform.onnx"
INPUT_NAME = "features"
WAVEFORM_INPUT = "waveform"
OUTPUT_NAME = "embedding"
# The exported graph must match PyTorch to this cosine on a check input of
# another batch size and length than the tracing one.
MIN_EXPORT_COSINE = 0.9999


class OnnxExportError(RuntimeError):
    """A speaker encoder that cannot be exported to ONNX, or not faithfully.

    Example
    -------
    >>> raise OnnxExportError("cannot export X: its submodule 'a' (Y) ...")
    Traceback (most recent call last):
    ...
    speechbrain_trkd.onnx_export.OnnxExportError: cannot export X: ...
    """


@functools.cache
def _feature_modules(n_mels):
    """One Fbank and one sentence mean normaliser per feature size."""
    normalizer = InputNormalization(norm_type="sentence", std_norm=False)
    return Fbank(n_mels=n_mels), normalizer.eval()


def speaker_features(wavs, wav_lens=None, n_mels=80):
    """The encoder's input: mean-normalised log Mel filterbank energies.

    SpeechBrain's ``Fbank(n_mels)`` (25 ms windows every 10 ms, 16 kHz)
    followed by ``InputNormalization(norm_type="sentence", std_norm=False)``:
    each utterance's mean over its own frames is subtracted. These are the
    modules of ``hparams/models/*.yaml`` and of the training hparams.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms ``[batch, samples]`` (or one ``[samples]``), 16 kHz.
    wav_lens : torch.Tensor, optional
        Relative lengths ``[batch]`` of zero-padded waveforms (1.0 = the
        longest); by default every waveform is whole.
    n_mels : int
        Filterbank channels.

    Returns
    -------
    torch.Tensor
        Features ``[batch, frames, n_mels]``, float32.

    Example
    -------
    >>> feats = speaker_features(torch.randn(2, 16000))
    >>> feats.shape, bool(feats.mean(dim=1).abs().max() < 1e-4)
    (torch.Size([2, 101, 80]), True)
    """
    if wavs.ndim == 1:
        wavs = wavs.unsqueeze(0)
    if wav_lens is None:
        wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
    fbank, normalizer = _feature_modules(n_mels)
    return normalizer(fbank(wavs.float()), wav_lens)


class EmbeddingGraph(torch.nn.Module):
    """What is exported: features ``[B, T, F]`` to embeddings ``[B, D]``.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        A SpeechBrain speaker encoder, ``model(feats) -> [B, 1, D]`` (ECAPA)
        or ``[B, D]`` (ResNet).

    Example
    -------
    >>> graph = EmbeddingGraph(torch.nn.Linear(80, 4))
    >>> graph(torch.randn(2, 1, 80)).shape
    torch.Size([2, 4])
    """

    def __init__(self, embedding_model):
        super().__init__()
        self.embedding_model = embedding_model

    def forward(self, features):
        """Embeds whole utterances (every frame counts).

        Arguments
        ---------
        features : torch.Tensor
            ``[batch, frames, n_mels]`` from :func:`speaker_features`.

        Returns
        -------
        torch.Tensor
            Embeddings ``[batch, dim]``.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        >>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=4)
        >>> EmbeddingGraph(model).eval()(torch.randn(2, 50, 80)).shape
        torch.Size([2, 4])
        """
        return self.embedding_model(features).flatten(1)


def _broadcast_length_mask(length, max_len=None, dtype=None, device=None):
    """SpeechBrain's ``length_to_mask``, broadcast instead of expanded."""
    mask = torch.arange(max_len, device=length.device) < length.unsqueeze(1)
    return mask.to(dtype=dtype or length.dtype, device=device or length.device)


@contextlib.contextmanager
def _traceable_masks():
    """ECAPA's pooling masks with a batch size that stays dynamic.

    SpeechBrain's ``length_to_mask`` expands to ``len(length)``, a Python
    int that tracing freezes: the exported ECAPA then fails on any other
    batch size (both exporters of torch 2.11). The broadcast mask is equal.
    """
    with mock.patch.object(
        ecapa_tdnn, "length_to_mask", _broadcast_length_mask
    ):
        yield


def _trace_to_onnx(module, args, destination, opset, input_axes=None):
    """``torch.onnx.export`` with the settings of this module.

    ``input_axes`` (``{input name: {dim: axis name}}``) names the one input
    and its dynamic axes; without it the trace is static and unnamed. The
    TorchScript exporter (``dynamo=False``): it exports ECAPA-128 in about
    1 s against about 20 s for the dynamo one, with the same embeddings,
    and needs no ``onnxscript``.
    """
    names, axes = None, None
    if input_axes:
        names = list(input_axes)
        axes = {**input_axes, OUTPUT_NAME: {0: "batch"}}
    with _traceable_masks(), warnings.catch_warnings():
        # Chosen on purpose (see above), and folding is only skipped.
        warnings.filterwarnings("ignore", "You are using the legacy")
        warnings.filterwarnings("ignore", "Constant folding")
        warnings.filterwarnings("ignore", "The feature will be removed")
        torch.onnx.export(
            module,
            args,
            destination,
            input_names=names,
            output_names=[OUTPUT_NAME] if names else None,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _module_inputs(graph, example):
    """The positional inputs each submodule got in one forward pass."""
    inputs = {}

    def record(name, module, args):
        inputs.setdefault(name, args)

    hooks = [
        module.register_forward_pre_hook(functools.partial(record, name))
        for name, module in graph.named_modules()
        if name
    ]
    try:
        graph(example)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


def _exports(module, args, opset):
    """Whether ``module`` alone exports with ``args``."""
    try:
        _trace_to_onnx(module, args, io.BytesIO(), opset)
    except Exception:
        return False
    return True


def failing_module(graph, example, opset=17):
    """The innermost submodule that does not export, by its dotted name.

    Each submodule is exported alone with the positional inputs it got in
    a forward pass; the search descends into the first child that fails
    (looking through containers that are never called, like a
    ``ModuleList``) until no child of the current module fails.

    Arguments
    ---------
    graph : torch.nn.Module
        The model that failed to export.
    example : torch.Tensor
        Its example input.
    opset : int
        ONNX opset.

    Returns
    -------
    tuple
        ``(name, module)``; ``("", graph)`` when no submodule fails alone.

    Example
    -------
    >>> class Eig(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.linalg.eigvals(x).real
    >>> model = torch.nn.Sequential(torch.nn.Identity(), Eig())
    >>> name, module = failing_module(model, torch.randn(2, 3, 3))
    >>> name, type(module).__name__
    ('1', 'Eig')
    """
    inputs = _module_inputs(graph, example)
    path, module = "", graph
    while True:
        for full, child in _called_children(module, path, inputs):
            if not _exports(child, inputs[full], opset):
                path, module = full, child
                break
        else:
            return path, module


def _called_children(module, path, inputs):
    """The nearest submodules that were called, seen through containers."""
    for name, child in module.named_children():
        full = f"{path}.{name}" if path else name
        if full in inputs:
            yield full, child
        else:  # e.g. a ModuleList: never called itself
            yield from _called_children(child, full, inputs)


def _check_export(graph, path, check, input_name):
    """Raises unless ONNX Runtime matches PyTorch on ``check`` (another
    batch size and length than the traced one), and returns the lowest
    cosine of the two embeddings.

    A shape frozen while tracing (a ``len()`` or ``.item()`` in the model)
    shows up here, as a failure or as a different embedding.
    """
    with torch.no_grad():
        expected = graph(check)
    try:
        got = onnx_session(path).run(None, {input_name: check.numpy()})[0]
    except Exception as error:
        raise OnnxExportError(
            f"{path} fails in ONNX Runtime on {input_name} "
            f"{list(check.shape)} (the export used another batch size and "
            f"length): {error}"
        ) from error
    cosine = torch.nn.functional.cosine_similarity(
        torch.from_numpy(got), expected, dim=1
    )
    if not cosine.min() >= MIN_EXPORT_COSINE:
        raise OnnxExportError(
            f"{path} disagrees with PyTorch on {input_name} "
            f"{list(check.shape)}: cosine {cosine.min().item():.6f} < "
            f"{MIN_EXPORT_COSINE}"
        )
    return cosine.min().item()


def export_onnx(embedding_model, path, n_mels=80, opset=17):
    """Exports a speaker encoder as an ONNX graph of features to embeddings.

    The graph's input ``features`` is ``[batch, frames, n_mels]`` (from
    :func:`speaker_features`), its output ``embedding`` is ``[batch, dim]``;
    batch and frames are dynamic. The export is then checked in ONNX
    Runtime on another batch size and length. A model that does not export
    raises :class:`OnnxExportError` naming the innermost submodule at fault.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        The encoder (ECAPA-TDNN, ResNet, ...), on the CPU; exported in eval
        mode, its mode restored afterwards.
    path : str
        The ``.onnx`` file to write (replaced atomically).
    n_mels : int
        Feature size.
    opset : int
        ONNX opset.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> class Eig(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.linalg.eigvals(x[:, :2, :2]).real
    >>> try:
    ...     export_onnx(torch.nn.Sequential(Eig()), "/tmp/never.onnx")
    ... except OnnxExportError as error:
    ...     print(error)
    cannot export Sequential to ONNX: its submodule '0' (Eig) does not
    export: Exporting the operator 'aten::linalg_eigvals' ...
    """
    seeded = torch.Generator().manual_seed(0)
    return export_checked(
        EmbeddingGraph(embedding_model),
        path,
        {INPUT_NAME: {0: "batch", 1: "frames"}},
        torch.randn(2, 200, n_mels, generator=seeded),
        torch.randn(3, 157, n_mels, generator=seeded),
        opset,
    )


def export_checked(graph, path, input_axes, example, check, opset=17):
    """Exports ``graph`` (its ``embedding_model`` in eval mode, the mode
    restored afterwards), checks it in ONNX Runtime and moves it into place.

    Arguments
    ---------
    graph : torch.nn.Module
        A module with an ``embedding_model`` attribute, one input to
        embeddings ``[batch, dim]``, on the CPU (it is traced and checked
        there).
    path : str
        The ``.onnx`` file to write (replaced atomically).
    input_axes : dict
        ``{input name: {dim: axis name}}``: the input and its dynamic axes.
    example : torch.Tensor
        The tracing input.
    check : torch.Tensor
        An input of another batch size and length, on which ONNX Runtime
        must match PyTorch to ``MIN_EXPORT_COSINE``.
    opset : int
        ONNX opset.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> import tempfile
    >>> graph = EmbeddingGraph(torch.nn.Linear(80, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> os.path.basename(export_checked(graph, path, {"x": {0: "batch"}},
    ...     torch.randn(2, 1, 80), torch.randn(3, 1, 80)))
    'm.onnx'
    """
    embedding_model = graph.embedding_model
    was_training = embedding_model.training
    # The exporter restores the root's mode, recursively: eval it is.
    graph.eval()
    (input_name,) = input_axes
    tmp = f"{path}.tmp"
    try:
        with torch.no_grad():
            try:
                graph(example)
            except Exception as error:
                raise OnnxExportError(
                    f"{type(embedding_model).__name__} fails in PyTorch on "
                    f"{input_name} {list(example.shape)}: {error}"
                ) from error
            try:
                _trace_to_onnx(graph, (example,), tmp, opset, input_axes)
            except Exception as error:
                raise OnnxExportError(
                    _failure_message(graph, example, opset, error)
                ) from error
            cosine = _check_export(graph, tmp, check, input_name)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        embedding_model.train(was_training)
    os.replace(tmp, path)
    logger.info(
        "%s: ONNX Runtime matches PyTorch on a new %s %s, lowest cosine "
        "%.6f (required: %s)",
        path,
        input_name,
        list(check.shape),
        cosine,
        MIN_EXPORT_COSINE,
    )
    return path


def _failure_message(graph, example, opset, error):
    """Names the submodule behind an export error."""
    name, module = failing_module(graph, example, opset)
    model = type(graph.embedding_model).__name__
    reason = str(error).strip().splitlines()[0] if str(error) else repr(error)
    if not name:
        return f"cannot export {model} to ONNX: {reason}"
    name = name.removeprefix("embedding_model.").removeprefix("embedding_model")
    return (
        f"cannot export {model} to ONNX: its submodule '{name or model}' "
        f"({type(module).__name__}) does not export: {reason}"
    )


def onnx_session(path, num_threads=1, spinning=True):
    """An ONNX Runtime CPU session.

    Arguments
    ---------
    path : str
        An ``.onnx`` file.
    num_threads : int
        Threads within an operator (``intra_op_num_threads``).
    spinning : bool
        Whether those threads spin between runs, waiting for the next one
        (ONNX Runtime's default; lower latency when the session runs
        alone). Timing several sessions in turn needs it off, or the
        spinning threads of one take the cores of the next.

    Returns
    -------
    onnxruntime.InferenceSession
        Run it with ``session.run(None, {"features": feats.numpy()})``.

    Example
    -------
    >>> onnx_session("/no/such.onnx")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such.onnx does not exist
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ONNX Runtime is not installed: pip install -e '.[deploy]'"
        ) from error

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )


def onnx_encode_fn(session, n_mels=80):
    """An ``encode_fn(wavs, wav_lens)`` for ``compute_embeddings``.

    Each waveform is cut to its own length and embedded alone, since the
    graph takes no lengths. A graph whose input is ``waveform`` gets the
    samples; any other gets :func:`speaker_features` of them.

    Arguments
    ---------
    session : onnxruntime.InferenceSession
        From :func:`onnx_session`.
    n_mels : int
        Feature size of a feature-input graph.

    Returns
    -------
    callable
        ``encode(wavs [B, T], wav_lens [B]) -> torch.Tensor [B, D]``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=4)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> encode = onnx_encode_fn(onnx_session(path))
    >>> wavs = torch.cat([torch.randn(1, 8000), torch.zeros(1, 8000)], 1)
    >>> both = encode(torch.cat([wavs, wavs[:, :8000].repeat(1, 2)]),
    ...               torch.tensor([0.5, 1.0]))
    >>> alone = encode(wavs[:, :8000], torch.ones(1))
    >>> both.shape, torch.allclose(both[0], alone[0])
    (torch.Size([2, 4]), True)
    """
    input_name = session.get_inputs()[0].name

    def encode(wavs, wav_lens):
        embeddings = []
        for wav, rel_len in zip(wavs.cpu(), wav_lens.cpu(), strict=True):
            wav = wav[: int(torch.round(rel_len * wavs.shape[1]))]
            if input_name == WAVEFORM_INPUT:
                inputs = wav.unsqueeze(0).float()
            else:
                inputs = speaker_features(wav, n_mels=n_mels)
            outputs = session.run(None, {input_name: inputs.numpy()})
            embeddings.append(torch.from_numpy(outputs[0]))
        return torch.cat(embeddings)

    return encode
