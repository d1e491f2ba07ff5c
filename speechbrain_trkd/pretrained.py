"""Pretrained speaker-model folders, read as data: sha256 pins checked before
anything loads, Hub files fetched at a pinned revision, weights loaded with
``weights_only=True`` into this package's own architectures
(``recipes/VoxCeleb/TRKD/hparams/models/``); a folder's ``hyperparams.yaml``
is never run.

Embedding normalisation: the model's ``mean_var_norm_emb`` (a global mean
subtraction learnt on training embeddings) is not applied by default
(``normalize_embeddings: False``), by measurement. With the pretrained ECAPA
teacher on openspk (whole utterances, full dev lists, cosine scoring), plain
embeddings give EER 5.43 % on O and 7.18 % on H (the reference: 5.44 % and
7.17 %); with the mean subtraction, 5.42 % and 7.15 %, but minDCF(0.01)
gets worse (0.579 -> 0.586 on O, 0.802 -> 0.807 on H). The stored mean is
short (norm 24, against embeddings of norm about 318), so it barely moves
cosine scores, and exported students have no such statistics: leaving it
out scores teacher and students alike.

Authors
 * speechbrain-trkd developers 2026
"""

import os

import torch
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RevisionNotFoundError,
)
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.processing.features import InputNormalization
from speechbrain.utils.distributed import infer_device, run_on_main
from speechbrain.utils.fetching import FetchConfig
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.cache_identity import file_sha256
from speechbrain_trkd.onnx_export import speaker_features

logger = get_logger(__name__)
# The recipe's hparams files and architecture templates
# (hparams/models/<architecture>.yaml), in a checkout.
RECIPE_HPARAMS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "recipes",
    "VoxCeleb",
    "TRKD",
    "hparams",
)
MODELS_FOLDER = os.path.join(RECIPE_HPARAMS, "models")


def _load_checkpoint(path):
    """A state dict read with ``weights_only=True``, naming a bad file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({error})"
        ) from error


def check_sha256(folder, pins):
    """Raises unless each pinned file of ``folder`` has its sha256.

    Arguments
    ---------
    folder : str
        The model folder.
    pins : dict or None
        ``{file name: hex sha256}``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.ckpt"), "w") as f:
    ...     _ = f.write("abc")
    >>> check_sha256(folder, {"a.ckpt": "ba7816bf8f01cfea414140de5dae2223"
    ...                       "b00361a396177a9cb410ff61f20015ad"})
    >>> check_sha256(folder, {"a.ckpt": "00"})
    Traceback (most recent call last):
    ...
    ValueError: .../a.ckpt has sha256 ba7816bf..., the pin says 00
    """
    for name, expected in (pins or {}).items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is pinned but does not exist")
        _check_pin(path, expected)


def _check_pin(path, expected):
    """Raises unless the file's sha256 is the pinned one."""
    actual = file_sha256(path)
    if actual != str(expected).lower():
        raise ValueError(
            f"{path} has sha256 {actual[:8]}..., the pin says {expected}"
        )


def collect_pinned(pretrainer, revision, flag="teacher_source"):
    """Collects a ``Pretrainer``'s files, from the Hub at a fixed revision.

    A Hub source is read at ``revision`` (a commit), so a later push to the
    model's repository cannot change the run; a local folder is linked as it
    is (a revision means nothing there). Runs on the main process.

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        Its ``paths`` name the files, ``<Hub id or folder>/<file>``.
    revision : str or None
        The Hub commit (or tag); None takes the newest.
    flag : str
        The hparam that names the source, for the messages.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.utils.parameter_transfer import Pretrainer
    >>> source, collect_in = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> layer = torch.nn.Linear(2, 2)
    >>> torch.save(layer.state_dict(), os.path.join(source, "layer.ckpt"))
    >>> pretrainer = Pretrainer(
    ...     collect_in=collect_in, loadables={"layer": layer},
    ...     paths={"layer": os.path.join(source, "layer.ckpt")})
    >>> collect_pinned(pretrainer, revision="0123abc")
    >>> os.listdir(collect_in)
    ['layer.ckpt']
    >>> pretrainer.paths["layer"] = "./no/such/folder/layer.ckpt"
    >>> collect_pinned(pretrainer, revision=None)
    Traceback (most recent call last):
    ...
    FileNotFoundError: teacher_source=./no/such/folder: no such folder. ...
    """
    sources = sorted(
        {os.path.dirname(str(p)) for p in pretrainer.paths.values()}
    )
    for source in sources:
        if _is_local(source) and not os.path.isdir(source):
            raise FileNotFoundError(
                f"{flag}={source}: no such folder. Give the folder that "
                "holds the model's embedding_model.ckpt, classifier.ckpt and "
                f"label_encoder.txt (--{flag}=<folder>), or a Hub id such "
                "as speechbrain/spkrec-ecapa-voxceleb"
            )
    try:
        run_on_main(
            pretrainer.collect_files,
            kwargs={"fetch_config": FetchConfig(revision=revision)},
        )
    except RevisionNotFoundError as error:
        raise ValueError(
            f"The Hub has no revision {revision} for {sources[0]}: give the "
            "model's own commit with --teacher_revision=<commit> (or "
            "--teacher_revision=null for its newest files)"
        ) from error
    except (LocalEntryNotFoundError, OSError) as error:
        if all(_is_local(source) for source in sources):
            raise
        raise OSError(
            f"Could not fetch {', '.join(sources)} ({type(error).__name__}: "
            f"{error}). Offline, give a local copy of the model with "
            f"--{flag}=<folder> (its embedding_model.ckpt, classifier.ckpt "
            "and label_encoder.txt)"
        ) from error


def _is_local(source):
    """True when a model source can only be a folder: an absolute path,
    one starting with ``.``, or more than the two parts of a Hub id.

    Example
    -------
    >>> [_is_local(s) for s in ("speechbrain/x", "../models/x", "/m", "a/b/c")]
    [False, True, True, True]
    """
    return (
        os.path.isabs(source)
        or source.startswith(".")
        or len(source.split("/")) > 2
    )


def load_collected(pretrainer, sha256=None):
    """Loads the files a ``Pretrainer`` collected, as weights only.

    Replaces ``Pretrainer.load_collected``: each checkpoint is read with
    ``weights_only=True``, label encoders are read as text, the optional
    sha256 pins (by source file name) are checked first, and a damaged file
    is named by its real path, not by the collected link.

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        After ``collect_files``: its files are ``<collect_in>/<name>.ckpt``.
    sha256 : dict, optional
        ``{source file name: hex sha256}``, e.g.
        ``{"embedding_model.ckpt": "13a4..."}``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.utils.parameter_transfer import Pretrainer
    >>> folder = tempfile.mkdtemp()
    >>> layer = torch.nn.Linear(2, 2)
    >>> torch.save(layer.state_dict(), os.path.join(folder, "layer.ckpt"))
    >>> copy = torch.nn.Linear(2, 2)
    >>> load_collected(Pretrainer(collect_in=folder, loadables={"layer": copy}))
    >>> torch.equal(copy.weight, layer.weight)
    True
    """
    folder = str(pretrainer.collect_in)
    for name, loadable in pretrainer.loadables.items():
        path = os.path.realpath(os.path.join(folder, f"{name}.ckpt"))
        pin = (sha256 or {}).get(os.path.basename(path))
        if pin is not None:
            _check_pin(path, pin)
        if isinstance(loadable, CategoricalEncoder):
            try:
                loadable.load(path)
            except ValueError as error:
                raise ValueError(f"{path} is damaged ({error})") from error
        else:
            state = _load_checkpoint(path)
            _check_sizes(path, loadable, state)
            loadable.load_state_dict(state)


def _check_sizes(path, module, state):
    """Raises when a checkpoint's tensors do not fit the module the hparams
    built, naming the file, the first tensor and the sizes the file holds
    (a raw ``size mismatch`` names neither the file nor the setting).

    Example
    -------
    >>> small = torch.nn.Linear(2, 3).state_dict()
    >>> _check_sizes("c.ckpt", torch.nn.Linear(2, 5), small)
    Traceback (most recent call last):
    ...
    ValueError: c.ckpt does not fit the model the hparams build: weight ...
    """
    built = module.state_dict()
    for key, tensor in state.items():
        if key in built and tuple(built[key].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{path} does not fit the model the hparams build: {key} is "
                f"{tuple(tensor.shape)} in the file, {tuple(built[key].shape)} "
                f"in the model. The file holds {_sizes_held(state)}: give "
                "the sizes it holds (for a teacher --teacher_channels, "
                "--teacher_n_classes; for a scored or exported model its "
                "channels and classes)"
            )


def _sizes_held(state):
    """The architecture sizes a state dict shows, in words.

    Example
    -------
    >>> _sizes_held({"weight": torch.zeros(5, 192)})
    '5 classes of 192-dimensional embeddings'
    """
    if "blocks.0.conv.conv.weight" in state:  # ECAPA-TDNN
        return f"{state['blocks.0.conv.conv.weight'].shape[0]} channels"
    if set(state) == {"weight"} and state["weight"].ndim == 2:  # a head
        classes, dim = state["weight"].shape
        return f"{classes} classes of {dim}-dimensional embeddings"
    return "other sizes"


def sizes_in_weights(folder):
    """The architecture sizes a model folder's weights hold, read with
    ``weights_only=True`` (the folder's ``hyperparams.yaml`` is not read).

    Arguments
    ---------
    folder : str
        Holds ``embedding_model.ckpt`` and ``classifier.ckpt``.

    Returns
    -------
    dict
        ``n_classes``, ``emb_dim`` and ``n_mels``; for an ECAPA-TDNN its
        ``channels``, for a ResNet its ``resnet_channels`` and
        ``block_sizes``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> folder = tempfile.mkdtemp()
    >>> ecapa = ECAPA_TDNN(24, channels=[8, 8, 8, 8, 24], lin_neurons=16)
    >>> torch.save(ecapa.state_dict(), f"{folder}/embedding_model.ckpt")
    >>> head = Classifier(16, out_neurons=3)
    >>> torch.save(head.state_dict(), f"{folder}/classifier.ckpt")
    >>> sizes_in_weights(folder)
    {'n_classes': 3, 'emb_dim': 16, 'n_mels': 24, 'channels': 8}
    """
    classifier = _load_checkpoint(os.path.join(folder, "classifier.ckpt"))
    embedding = _load_checkpoint(os.path.join(folder, "embedding_model.ckpt"))
    return _sizes_of(embedding, classifier)


def _sizes_of(embedding, classifier):
    """The sizes that an embedding model's and a head's state dicts show."""
    n_classes, emb_dim = classifier["weight"].shape
    sizes = {"n_classes": n_classes, "emb_dim": emb_dim}
    if "blocks.0.conv.conv.weight" in embedding:  # ECAPA-TDNN: [C, mels, k]
        channels, sizes["n_mels"] = embedding[
            "blocks.0.conv.conv.weight"
        ].shape[:2]
        sizes["channels"] = channels
    elif "conv1.weight" in embedding:  # ResNet: layer<i>.<block>.conv1
        stages = sorted(
            {key.split(".")[0] for key in embedding if key.startswith("layer")}
        )
        sizes["resnet_channels"] = [
            embedding[f"{stage}.0.conv1.weight"].shape[0] for stage in stages
        ]
        sizes["block_sizes"] = [
            len(
                {
                    key.split(".")[1]
                    for key in embedding
                    if key.startswith(f"{stage}.")
                }
            )
            for stage in stages
        ]
    return sizes


def load_pretrained_encoder(
    model_source,
    device=None,
    architecture="ecapa",
    sizes=None,
    sha256=None,
    models_folder=MODELS_FOLDER,
):
    """Loads a pretrained speaker model's weights into our own architecture.

    Nothing in the folder is executed: its ``hyperparams.yaml`` is not read.
    The architecture comes from ``<models_folder>/<architecture>.yaml``
    (the recipe's model templates); only ``embedding_model.ckpt`` and
    ``classifier.ckpt`` (``weights_only=True``) and ``label_encoder.txt``
    (and ``mean_var_norm_emb.ckpt`` when present) are read, after the
    optional sha256 pins are checked. The embedding size and classes, an
    ECAPA's channels and input features, and a ResNet's channels and blocks
    are read from the weights' shapes; other sizes come from ``sizes``.

    Arguments
    ---------
    model_source : str
        The model folder (Hub layout).
    device : str, optional
        Device of the model; by default the accelerator when there is one.
    architecture : str
        ``ecapa`` or ``resnet``: an inference hparams file of the recipe.
    sizes : dict, optional
        Overrides of that file (e.g. ``{"channels": [16, 32, 64, 128]}``).
    sha256 : dict, optional
        ``{file name: hex sha256}`` to verify before anything is loaded.
    models_folder : str
        The architecture templates: the recipe's ``hparams/models`` in a
        checkout.

    Returns
    -------
    speechbrain.inference.speaker.EncoderClassifier
        The loaded model, in eval mode.

    Example
    -------
    >>> load_pretrained_encoder("/no/such/model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/model/classifier.ckpt does not exist
    """
    from speechbrain.inference.speaker import EncoderClassifier

    model_source = os.path.abspath(model_source)
    check_sha256(model_source, sha256)
    classifier = _load_checkpoint(os.path.join(model_source, "classifier.ckpt"))
    embedding_path = os.path.join(model_source, "embedding_model.ckpt")
    embedding = _load_checkpoint(embedding_path)
    held = _sizes_of(embedding, classifier)
    overrides = {
        "pretrained_path": model_source,
        "emb_dim": held["emb_dim"],
        "out_n_neurons": held["n_classes"],
    }
    if architecture == "ecapa":
        overrides["channels"], overrides["n_mels"] = (
            held["channels"],
            held["n_mels"],
        )
    elif architecture == "resnet" and "resnet_channels" in held:
        overrides["channels"] = held["resnet_channels"]
        overrides["block_sizes"] = held["block_sizes"]
    overrides.update(sizes or {})
    inference_file = os.path.join(models_folder, f"{architecture}.yaml")
    with open(inference_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    for name, state in (
        ("embedding_model", embedding),
        ("classifier", classifier),
    ):
        try:
            hparams[name].load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"{model_source}/{name}.ckpt does not fit the {architecture} "
                f"architecture of {inference_file} with {overrides}: {error}"
            ) from error
    encoder_file = os.path.join(model_source, "label_encoder.txt")
    if os.path.isfile(encoder_file):
        try:
            hparams["label_encoder"].load(encoder_file)
        except ValueError as error:
            raise ValueError(f"{encoder_file} is damaged ({error})") from error
    norm_file = os.path.join(model_source, "mean_var_norm_emb.ckpt")
    if os.path.isfile(norm_file):  # the embeddings' global normalisation
        norm = InputNormalization(norm_type="global", std_norm=False)
        norm._load_statistics_dict(_load_checkpoint(norm_file))
        hparams["mean_var_norm_emb"] = norm.eval()  # fixed statistics
    encoder = EncoderClassifier(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": device or infer_device()},
    )
    encoder.eval()
    return encoder


def pretrained_encode_fn(encoder, normalize=False):
    """An ``encode_fn`` for :func:`compute_embeddings` from a loaded model.

    Arguments
    ---------
    encoder : speechbrain.inference.speaker.EncoderClassifier
        A loaded pretrained speaker model.
    normalize : bool
        Apply the model's ``mean_var_norm_emb`` to the embeddings (an error
        when the model has none). Off by default: see the module docstring
        for the measurement behind this choice.

    Returns
    -------
    callable
        ``encode_fn(wavs, wav_lens) -> [B, 1, D]``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> pretrained_encode_fn(SimpleNamespace(hparams=SimpleNamespace()), True)
    Traceback (most recent call last):
    ...
    ValueError: normalize=True, but the model has no mean_var_norm_emb
    """
    if normalize and not hasattr(encoder.hparams, "mean_var_norm_emb"):
        raise ValueError(
            "normalize=True, but the model has no mean_var_norm_emb"
        )

    def encode(wavs, wav_lens):
        # encode_batch's steps, with the features an ONNX export is fed.
        n_mels = encoder.hparams.n_mels
        feats = speaker_features(wavs, wav_lens, n_mels=n_mels)
        embeddings = encoder.mods.embedding_model(feats, wav_lens)
        if normalize:
            ones = torch.ones(len(embeddings), device=embeddings.device)
            embeddings = encoder.hparams.mean_var_norm_emb(embeddings, ones)
        return embeddings

    return encode
