"""A trained speaker encoder written as a SpeechBrain pretrained-model
folder: ``hyperparams.yaml`` from the recipe's architecture template,
the weights, the label encoder and a model card.

Authors
 * speechbrain-trkd developers 2026
"""

import io
import os
import shutil

import ruamel.yaml
import torch
from hyperpyyaml.core import recursive_update

from speechbrain_trkd.pretrained import RECIPE_HPARAMS


def fill_template(template_text, values):
    """Sets top-level values of a HyperPyYAML template, as overrides.

    HyperPyYAML's override merge (``recursive_update``) on ruamel's
    round-trip tree: the written text keeps its ``!ref`` / ``!new`` tags and
    comments. (``resolve_references`` would also resolve every ``!ref``,
    freezing ``pretrained_path`` into the Pretrainer's paths, so that the
    ``pretrained_path`` override the model card documents would not work.)

    Arguments
    ---------
    template_text : str
        The template's text.
    values : dict
        Top-level keys to set, with YAML-serialisable values.

    Returns
    -------
    str
        The filled-in text.

    Example
    -------
    >>> print(fill_template("a: 1  # kept\\nb: !PLACEHOLDER\\nc: !ref <a>\\n",
    ...                     {"b": [1, 2]}), end="")
    a: 1  # kept
    b:
        - 1
        - 2
    c: !ref <a>
    >>> fill_template("a: 1\\n", {"z": 2})
    Traceback (most recent call last):
    ...
    KeyError: "Override 'z' not found in: ['a']"
    """
    yaml = ruamel.yaml.YAML()
    yaml.indent(mapping=4, sequence=6, offset=4)  # the templates' layout
    tree = yaml.load(template_text)
    recursive_update(tree, values, must_match=True)
    text = io.StringIO()
    yaml.dump(tree, text)
    return text.getvalue()


def model_card(info):
    """Writes the text of a Hub model card for an exported encoder.

    Arguments
    ---------
    info : dict
        ``title``, ``description`` and optionally ``parameters`` (count),
        ``metrics`` (a mapping shown as a table) and ``training`` (a mapping
        of training facts).

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
    if "parameters" in info:
        lines += [f"Embedding model: {info['parameters']:,} parameters.", ""]
    for section in ("training", "metrics"):
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
        "`hyperparams.yaml` sets `pretrained_path` to the folder it was "
        "exported to; after uploading, load with "
        "`overrides={'pretrained_path': '<hub id>'}` or edit that line.",
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
        Where to write; created if needed, files replaced atomically.
    card_info : dict
        Passed to ``model_card``; ``parameters`` is filled in.

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
     'hyperparams.yaml', 'label_encoder.txt']
    >>> from speechbrain.inference.speaker import EncoderClassifier
    >>> model = EncoderClassifier.from_hparams(
    ...     source=folder, savedir=os.path.join(tmp, "loaded"))
    >>> model.encode_batch(torch.zeros(1, 16000)).shape
    torch.Size([1, 1, 192])
    """
    export_folder = os.path.abspath(export_folder)
    os.makedirs(export_folder, exist_ok=True)
    if not os.path.isabs(inference_hparams):
        inference_hparams = os.path.join(RECIPE_HPARAMS, inference_hparams)
    with open(inference_hparams, encoding="utf-8") as fin:
        template = fin.read()
    values = dict(inference_values, pretrained_path=export_folder)
    files = {
        "hyperparams.yaml": fill_template(template, values),
        "README.md": model_card(
            dict(
                card_info,
                parameters=sum(p.numel() for p in embedding_model.parameters()),
            )
        ),
    }
    for name, text in files.items():
        atomic_write(os.path.join(export_folder, name), text.encode())
    for name, module in (
        ("embedding_model.ckpt", embedding_model),
        ("classifier.ckpt", classifier),
    ):
        tmp = os.path.join(export_folder, name + ".tmp")
        torch.save(module.state_dict(), tmp)
        os.replace(tmp, os.path.join(export_folder, name))
    tmp = os.path.join(export_folder, "label_encoder.txt.tmp")
    shutil.copyfile(label_encoder_file, tmp)
    os.replace(tmp, os.path.join(export_folder, "label_encoder.txt"))
    return export_folder


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


def student_card(hparams, metrics=None):
    """The model-card facts of a distilled student.

    Arguments
    ---------
    hparams : dict
        The training hyperparameters (``student_name``, ``kd_method``,
        ``teacher_source``, ``number_of_epochs``, ``data_folder``).
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
    ...     {"student_name": "s", "kd_method": "trkd"},
    ...     {"O": {"cosine": {"eer": 3.14159}}})
    >>> card["title"], card["metrics"]
    ('Distilled speaker encoder (s)', {'O cosine eer': 3.1416})
    """
    info = {
        "title": f"Distilled speaker encoder ({hparams.get('student_name')})",
        "description": (
            "A speaker-embedding model trained with speechbrain-trkd, "
            f"KD method `{hparams.get('kd_method')}` from teacher "
            f"`{hparams.get('teacher_source')}`."
        ),
        "training": {
            "kd_method": hparams.get("kd_method"),
            "teacher": hparams.get("teacher_source"),
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
