"""A trained speaker encoder written as a SpeechBrain pretrained-model
folder: ``hyperparams.yaml`` from the recipe's architecture template,
the weights, the label encoder and a model card.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import hashlib
import io
import os
import shutil
import tempfile

import ruamel.yaml
import torch
from hyperpyyaml.core import recursive_update
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.pretrained import RECIPE_HPARAMS

logger = get_logger(__name__)


def _filled(template_text, values):
    """The template's round-trip tree with ``values`` merged in (must
    match its keys): HyperPyYAML's override merge on ruamel's tree keeps
    the ``!ref`` / ``!new`` tags and comments, which ``resolve_references``
    would resolve away."""
    tree = ruamel.yaml.YAML().load(template_text)
    recursive_update(tree, values, must_match=True)
    return tree


def _dump(tree):
    """A round-trip tree as text, in the templates' layout."""
    yaml = ruamel.yaml.YAML()
    yaml.indent(mapping=4, sequence=6, offset=4)
    text = io.StringIO()
    yaml.dump(tree, text)
    return text.getvalue()


def folder_hparams(template_text, values):
    r"""The ``hyperparams.yaml`` of an exported folder: the template filled
    in, its ``Pretrainer`` without ``paths`` and with no
    ``pretrained_path``, so that ``EncoderClassifier.from_hparams`` reads
    each file from the folder it loads (a copy, a Hub upload, a relative
    path): ``<source>/<loadable>.ckpt``, its ``default_source``.

    Example
    -------
    >>> template = ("pretrained_path: !PLACEHOLDER\nsize: 1\n"
    ...     "pretrainer: !new:P\n    loadables: {m: 1}\n"
    ...     "    paths:\n        m: !ref <pretrained_path>/m.ckpt\n")
    >>> print(folder_hparams(template, {"size": 2}), end="")
    size: 2
    pretrainer: !new:P
        loadables: {m: 1}
    """
    tree = _filled(template_text, values)
    del tree["pretrained_path"]
    del tree["pretrainer"]["paths"]
    return _dump(tree)


def model_card(info):
    """Writes the text of a Hub model card for an exported encoder.

    Arguments
    ---------
    info : dict
        ``title``, ``description`` and optionally ``model`` (what the
        weights are), ``training`` (how they were trained) and ``metrics``,
        each a mapping shown as a table.

    Returns
    -------
    str
        Markdown with a YAML front matter for the Hub.

    Example
    -------
    >>> card = model_card({"title": "ECAPA-512", "description": "A test."})
    >>> card.splitlines()[0], "EncoderClassifier" in card
    ('---', True)
    """
    lines = [
        "---",
        "language: en",
        "license: apache-2.0",
        "library_name: speechbrain",
        "tags: [speaker-verification, speaker-embeddings, "
        "knowledge-distillation, speechbrain-trkd]",
        "---",
        "",
        f"# {info['title']}",
        "",
        info["description"],
        "",
    ]
    for section in ("model", "training", "metrics"):
        if info.get(section):
            lines += [f"## {section.capitalize()}", "", "| | |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in info[section].items()]
            lines.append("")
    lines += [
        "## Usage",
        "",
        "```python",
        "from speechbrain.inference.speaker import EncoderClassifier",
        "",
        "encoder = EncoderClassifier.from_hparams(source='<this folder or "
        "Hub id>')",
        "embeddings = encoder.encode_batch(wavs)  # [batch, time], 16 kHz",
        "```",
        "",
        "The folder loads from wherever it is: a copy, a relative path or "
        "a Hub upload (`hyperparams.yaml` names no folder).",
        "",
    ]
    return "\n".join(lines)


def export_model(
    embedding_model,
    classifier,
    label_encoder_file,
    inference_hparams,
    inference_values,
    export_folder,
    card_info,
):
    """Writes a pretrained-model folder that ``EncoderClassifier`` loads.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        The trained speaker encoder.
    classifier : torch.nn.Module
        Its classification head.
    label_encoder_file : str
        The ``label_encoder.txt`` of the training run.
    inference_hparams : str
        The inference template (see ``hparams/models``); a relative
        path is taken from the recipe's ``hparams`` folder.
    inference_values : dict
        Top-level template values (architecture sizes).
    export_folder : str
        Where to write: a new folder, or one whose files are replaced as a
        whole (written beside it, then swapped in; other files it holds
        are kept).
    card_info : dict
        Passed to ``model_card``; its ``model`` facts are filled in
        (``model_facts``). A card edited since the last export is kept
        (``write_card``).

    Returns
    -------
    str
        The absolute export folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> tmp = tempfile.mkdtemp()
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["spk1", "spk2"])
    >>> encoder.save(os.path.join(tmp, "label_encoder.txt"))
    >>> folder = export_model(
    ...     ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=192),
    ...     Classifier(192, out_neurons=2),
    ...     os.path.join(tmp, "label_encoder.txt"),
    ...     "models/ecapa.yaml",
    ...     {"channels": 8, "out_n_neurons": 2},
    ...     os.path.join(tmp, "export"),
    ...     {"title": "A test", "description": "Untrained."},
    ... )
    >>> sorted(os.listdir(folder))
    ['README.md', 'classifier.ckpt', 'embedding_model.ckpt',
     'hyperparams.yaml', 'label_encoder.ckpt', 'label_encoder.txt']
    >>> from speechbrain.inference.speaker import EncoderClassifier
    >>> model = EncoderClassifier.from_hparams(
    ...     source=folder, savedir=os.path.join(tmp, "loaded"))
    >>> model.encode_batch(torch.zeros(1, 16000)).shape
    torch.Size([1, 1, 192])
    """
    export_folder = os.path.abspath(export_folder)
    if not os.path.isabs(inference_hparams):
        inference_hparams = os.path.join(RECIPE_HPARAMS, inference_hparams)
    with open(inference_hparams, encoding="utf-8") as fin:
        template = fin.read()
    card = dict(
        card_info,
        model=model_facts(embedding_model, classifier, inference_values),
    )
    with _replaced_folder(export_folder) as folder:
        with open(os.path.join(folder, "hyperparams.yaml"), "w") as fout:
            fout.write(folder_hparams(template, inference_values))
        write_card(folder, model_card(card))
        torch.save(
            embedding_model.state_dict(),
            os.path.join(folder, "embedding_model.ckpt"),
        )
        torch.save(
            classifier.state_dict(), os.path.join(folder, "classifier.ckpt")
        )
        # label_encoder.txt is the Hub speaker models' name (what a teacher
        # folder is read by); label_encoder.ckpt the one from_hparams reads.
        for name in ("label_encoder.txt", "label_encoder.ckpt"):
            shutil.copyfile(label_encoder_file, os.path.join(folder, name))
    logger.info("Exported the model to %s", export_folder)
    return export_folder


@contextlib.contextmanager
def _replaced_folder(folder):
    """A staging copy of ``folder`` (empty if there is none) that replaces
    it when the block ends, and is deleted if the block fails: the folder
    is then either the old one, untouched, or the whole new one (a full
    disk left a half-written folder and a ``.tmp`` file before)."""
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(folder)}.", dir=parent
    )
    try:
        if os.path.isdir(folder):  # earlier files (ONNX, an edited card)
            shutil.copytree(folder, staging, dirs_exist_ok=True)
        yield staging
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise OSError(
                error.errno,
                f"exporting to {folder} failed ({error.strerror or error}); "
                "the folder is as it was",
            ) from error
        raise
    old = f"{staging}.old"
    if os.path.isdir(folder):
        os.rename(folder, old)
    os.rename(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def model_facts(embedding_model, classifier, sizes):
    """What an exported model's weights are, for its card.

    Example
    -------
    >>> model_facts(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4), {"c": 2})
    {'architecture': 'Linear', 'c': 2, 'embedding model parameters': '9', \
'classifier parameters': '16'}
    """
    return {
        "architecture": type(embedding_model).__name__,
        **sizes,
        "embedding model parameters": _count(embedding_model),
        "classifier parameters": _count(classifier),
    }


def _count(module):
    """A module's parameter count, with thousands separators."""
    return f"{sum(p.numel() for p in module.parameters()):,}"


# The card's last line: the sha256 of the text above it, as written.
_CARD_MARK = "<!-- speechbrain-trkd card sha256: {} -->"


def write_card(folder, text):
    """Writes a model card as ``README.md``, unless the ``README.md`` there
    was edited since it was written: then the new card goes beside it, as
    ``README.new.md``, and a warning says so (an edit is never lost).

    Arguments
    ---------
    folder : str
        The export folder.
    text : str
        The card.

    Returns
    -------
    str
        The file written.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.path.basename(write_card(folder, "# Card"))
    'README.md'
    >>> os.path.basename(write_card(folder, "# New card"))
    'README.md'
    >>> with open(os.path.join(folder, "README.md"), "a") as fout:
    ...     _ = fout.write("My notes.")
    >>> os.path.basename(write_card(folder, "# Newer card"))
    'README.new.md'
    """
    body = text.rstrip()
    digest = hashlib.sha256(body.encode()).hexdigest()
    marked = f"{body}\n\n{_CARD_MARK.format(digest)}\n"
    path = os.path.join(folder, "README.md")
    if os.path.isfile(path) and _edited(path):
        path = os.path.join(folder, "README.new.md")
        logger.warning(
            "%s was edited since it was written: it is kept, and the new "
            "card is %s",
            os.path.join(folder, "README.md"),
            path,
        )
    atomic_write(path, marked.encode())
    return path


def _edited(path):
    """Whether a card differs from what ``write_card`` wrote."""
    with open(path, encoding="utf-8") as fin:
        body, _, last = fin.read().rstrip().rpartition("\n\n")
    digest = hashlib.sha256(body.encode()).hexdigest()
    return last != _CARD_MARK.format(digest)


def atomic_write(path, data):
    """Writes bytes to ``path`` through a temporary file and a rename.

    Arguments
    ---------
    path : str
        Destination file.
    data : bytes
        Content.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> atomic_write(path, b"hi")
    >>> open(path).read()
    'hi'
    """
    tmp = path + ".tmp"
    with open(tmp, "wb") as fout:
        fout.write(data)
    os.replace(tmp, path)


def export_best_checkpoint(hparams, card_info=None):
    """Exports the best checkpoint of a training run described by hparams.

    Arguments
    ---------
    hparams : dict
        The loaded training hyperparameters (``checkpointer``,
        ``embedding_model``, ``classifier``, ``save_folder``,
        ``inference_hparams``, ``inference_overrides``, ``export_folder``).
    card_info : dict, optional
        Extra model-card facts (e.g. metrics).

    Returns
    -------
    str
        The export folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> tmp = tempfile.mkdtemp()
    >>> emb = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=192)
    >>> head = Classifier(192, out_neurons=1)
    >>> save = os.path.join(tmp, "save")
    >>> checkpointer = Checkpointer(
    ...     save, {"embedding_model": emb, "classifier": head})
    >>> _ = checkpointer.save_checkpoint(meta={"ErrorRate": 0.5})
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["spk1"])
    >>> encoder.save(os.path.join(save, "label_encoder.txt"))
    >>> hparams = {
    ...     "checkpointer": checkpointer, "embedding_model": emb,
    ...     "classifier": head, "save_folder": save,
    ...     "inference_hparams": "models/ecapa.yaml",
    ...     "inference_overrides": {"channels": 8, "out_n_neurons": 1},
    ...     "export_folder": os.path.join(tmp, "export"),
    ... }
    >>> os.path.basename(export_best_checkpoint(hparams))
    'export'
    """
    checkpoint = hparams["checkpointer"].recover_if_possible(
        min_key="ErrorRate"
    )
    if checkpoint is None:
        raise FileNotFoundError(
            f"No checkpoint in {hparams['save_folder']}: train first "
            "with the same hparams and overrides"
        )
    info = student_card(hparams)
    info["training"]["checkpoint"] = os.path.basename(str(checkpoint.path))
    info.update(card_info or {})
    return export_model(
        hparams["embedding_model"],
        hparams["classifier"],
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["inference_hparams"],
        hparams["inference_overrides"],
        hparams["export_folder"],
        info,
    )


def student_card(hparams, metrics=None):
    """The model-card facts of a distilled student: how it was trained
    (``export_model`` adds what its weights are).

    Arguments
    ---------
    hparams : dict
        The training hyperparameters (``student_name``, ``kd_method``,
        ``kd_weight``, ``kd_temperature``, ``teacher_source``,
        ``number_of_epochs``, ``data_folder``).
    metrics : dict, optional
        ``{list: {backend: {metric: value}}}``, flattened into the card.

    Returns
    -------
    dict
        ``title``, ``description``, ``training`` and, with metrics,
        ``metrics``.

    Example
    -------
    >>> card = student_card(
    ...     {"student_name": "s", "kd_method": "trkd", "teacher_source": "t"},
    ...     {"O": {"cosine": {"eer": 3.14159}}})
    >>> card["title"], card["metrics"]
    ('s: a distilled speaker encoder', {'O cosine eer': 3.1416})
    >>> student_card({"student_name": "s", "kd_method": "none"})["description"]
    'A speaker encoder trained from random weights ... without distillation.'
    """
    method = hparams.get("kd_method")
    distilled = method != "none"
    how = (
        f"distilled from the teacher `{hparams.get('teacher_source')}` with "
        f"the KD method `{method}`"
        if distilled
        else "without distillation"
    )
    info = {
        "title": f"{hparams.get('student_name')}: a "
        + ("distilled speaker encoder" if distilled else "speaker encoder"),
        "description": "A speaker encoder trained from random weights with "
        f"speechbrain-trkd (AAM loss on the training speakers), {how}.",
        "training": {
            "kd_method": method,
            "teacher": hparams.get("teacher_source") if distilled else None,
            "kd_weight": hparams.get("kd_weight") if distilled else None,
            "kd_temperature": hparams.get("kd_temperature")
            if distilled
            else None,
            "epochs": hparams.get("number_of_epochs"),
            "data": hparams.get("data_folder"),
        },
    }
    info["training"] = {
        k: v for k, v in info["training"].items() if v is not None
    }
    if metrics is not None:
        info["metrics"] = card_metrics(metrics)
    return info


def teacher_card(hparams, metrics=None):
    """The model-card facts of a teacher trained by ``train_teacher.py``:
    from scratch (no ``pretrainer``), or from a pretrained backbone,
    frozen or fine-tuned.

    Arguments
    ---------
    hparams : dict
        ``teacher_name``, ``pretrainer``, ``teacher_source``,
        ``freeze_backbone``, ``number_of_epochs``, ``data_folder``.
    metrics : dict, optional
        ``{list: {backend: {metric: value}}}``, flattened into the card.

    Returns
    -------
    dict
        ``title``, ``description``, ``training`` and, with metrics,
        ``metrics``.

    Example
    -------
    >>> teacher_card({"teacher_name": "t", "pretrainer": None,
    ...               "freeze_backbone": False})["description"]
    'A speaker encoder trained from scratch ... (AAM loss), for distillation.'
    """
    if hparams.get("pretrainer") is None:
        origin = "trained from scratch"
    elif hparams.get("freeze_backbone"):
        origin = (
            f"the frozen backbone of `{hparams.get('teacher_source')}` "
            "with a new head trained"
        )
    else:
        origin = f"fine-tuned from `{hparams.get('teacher_source')}`"
    info = {
        "title": f"{hparams.get('teacher_name')}: a speaker encoder (teacher)",
        "description": f"A speaker encoder {origin} on the training speakers "
        "with speechbrain-trkd (AAM loss), for distillation.",
        "training": {
            "initialisation": hparams.get("teacher_source")
            if hparams.get("pretrainer") is not None
            else "random",
            "freeze_backbone": hparams.get("freeze_backbone"),
            "epochs": hparams.get("number_of_epochs"),
            "data": hparams.get("data_folder"),
        },
    }
    if metrics is not None:
        info["metrics"] = card_metrics(metrics)
    return info


def card_metrics(metrics):
    """Flattens verification metrics for a model card.

    Arguments
    ---------
    metrics : dict
        ``{list: {backend: {metric: value}}}``.

    Returns
    -------
    dict
        ``{"<list> <backend> <metric>": value rounded to 4 digits}``.

    Example
    -------
    >>> card_metrics({"O": {"cosine": {"eer": 1.23456}}})
    {'O cosine eer': 1.2346}
    """
    return {
        f"{name} {backend} {metric}": round(value, 4)
        for name, per_backend in metrics.items()
        for backend, values in per_backend.items()
        for metric, value in values.items()
    }
