"""A run resumes only what was trained with the same settings.

SpeechBrain resumes from the checkpoints of the output folder whatever the
command line says, so a changed command pointed at a finished run's folder
re-scores the old model under the new settings' name (a comparison table
built that way is silently wrong), and a changed architecture crashes on a
size mismatch. ``check_same_run`` compares the hyperparameters a run would
save (the hparams file with the overrides resolved, as SpeechBrain writes
``hyperparams.yaml``) with the ones the folder already holds, and refuses a
folder with training state when any key that shapes training differs.
``run_command_line`` applies the same rule to the scripts that read a
finished run.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import hashlib
import json
import logging
import os

import speechbrain as sb
from hyperpyyaml import resolve_references
from ruamel.yaml import YAML

logger = logging.getLogger(__name__)

# Keys that do not shape what is trained: data loading, checkpoint timing
# and the scoring after training.
NOT_TRAINING_KEYS = (
    "num_workers",
    "noprogressbar",
    "ckpt_interval_minutes",
    "skip_prep",
    # Where the audio is read from: the files, or their decoded copy.
    "audio_cache",
    # The trial lists: the speakers they keep out of training shape the
    # training segments, which ``check_same_segments`` compares instead.
    "verification_lists",
    "verification_backends",
    "verification_batch_size",
    "verification_max_chunk_seconds",
    "asnorm_top_n",
    "cohort_utterances_per_speaker",
    "trial_audio_csvs",
    "write_plots",
    # The scoring's keyword arguments (they hold the keys above).
    "scoring_options",
    # Names, for folders and model cards.
    "student_name",
    "teacher_name",
)


def _strip(node, ignored):
    """The node as plain Python data, ignored keys dropped at any depth."""
    if isinstance(node, dict):
        return {
            str(key): _strip(value, ignored)
            for key, value in node.items()
            if key not in ignored
        }
    if isinstance(node, list):
        return [_strip(value, ignored) for value in node]
    tag = getattr(getattr(node, "tag", None), "value", None)
    value = getattr(node, "value", node)
    return f"{tag} {value}" if tag else value


def _settings(yaml_text, ignored):
    """Top-level settings of a resolved hparams text, as plain data."""
    loaded = YAML(typ="rt").load(yaml_text) or {}
    return {
        str(key): _strip(value, ignored)
        for key, value in loaded.items()
        if key not in ignored
    }


def changed_settings(saved_text, new_text, ignored=NOT_TRAINING_KEYS):
    """The top-level keys whose values differ between two hparams texts.

    Arguments
    ---------
    saved_text, new_text : str
        Resolved hparams (as in a run's ``hyperparams.yaml``).
    ignored : sequence of str
        Keys that do not count, at any depth.

    Returns
    -------
    dict
        ``{key: (saved value, new value)}``; a missing key is None.

    Example
    -------
    >>> old = "lr: 0.001\\nopts: {batch_size: 8, num_workers: 4}\\n"
    >>> new = "lr: 0.002\\nopts: {batch_size: 8, num_workers: 0}\\n"
    >>> changed_settings(old, new)
    {'lr': (0.001, 0.002)}
    """
    saved = _settings(saved_text, ignored)
    new = _settings(new_text, ignored)
    return {
        key: (saved.get(key), new.get(key))
        for key in sorted(set(saved) | set(new))
        if saved.get(key) != new.get(key)
    }


def _has_training_state(folder):
    """Whether a run folder holds checkpoints, a train log or metrics."""
    save = os.path.join(folder, "save")
    checkpoints = os.path.isdir(save) and any(
        name.startswith("CKPT") for name in os.listdir(save)
    )
    return checkpoints or any(
        os.path.isfile(os.path.join(folder, name))
        for name in ("train_log.txt", "metrics.json")
    )


def resolved_settings(hparams_file, overrides):
    """The top-level settings of an hparams file with its overrides, as
    plain data, without building any object (so before an object's own
    checks can fail on them).

    Example
    -------
    >>> import tempfile
    >>> hparams = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> with open(hparams, "w") as f:
    ...     _ = f.write("lr: 0.001\\nepochs: 2\\nlr2: !ref <lr>\\n")
    >>> resolved_settings(hparams, "epochs: 0")
    {'lr': 0.001, 'epochs': 0, 'lr2': 0.001}
    """
    with open(hparams_file, encoding="utf-8") as fin:
        return _settings(resolve_references(fin, overrides).getvalue(), ())


def check_same_run(output_folder, hparams_file, overrides):
    """Raises if ``output_folder`` holds a run trained with other settings.

    Arguments
    ---------
    output_folder : str
        The run's folder.
    hparams_file : str
        The hparams file of this run.
    overrides : str or dict
        Its overrides, as given to ``load_hyperpyyaml``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> hparams = os.path.join(folder, "h.yaml")
    >>> with open(hparams, "w") as f:
    ...     _ = f.write("lr: 0.001\\nnum_workers: 4\\n")
    >>> with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
    ...     _ = f.write("lr: 0.001\\nnum_workers: 4\\n")
    >>> with open(os.path.join(folder, "train_log.txt"), "w") as f:
    ...     _ = f.write("epoch: 1\\n")
    >>> check_same_run(folder, hparams, "num_workers: 0")
    >>> check_same_run(folder, hparams, "lr: 0.01")
    Traceback (most recent call last):
    ...
    ValueError: ... was trained with other settings: lr: 0.001 -> 0.01. ...
    """
    if not _has_training_state(output_folder):
        return
    changes = changes_since_run(output_folder, hparams_file, overrides)
    if changes:
        raise ValueError(
            f"{output_folder} was trained with other settings: "
            f"{listed_changes(changes)}. Resuming would reuse that run: give "
            "this run another --output_folder (or delete the folder to start "
            "it again)"
        )


def changes_since_run(
    output_folder, hparams_file, overrides, ignored=NOT_TRAINING_KEYS
):
    """The settings of an hparams file with overrides that differ from the
    ones a run folder saved (``{}`` when it saved none).

    Arguments
    ---------
    output_folder : str
        The run's folder (its ``hyperparams.yaml``).
    hparams_file : str
        An hparams file.
    overrides : str or dict
        Its overrides.
    ignored : sequence of str
        Keys that do not count.

    Returns
    -------
    dict
        ``{key: (the run's value, this value)}``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> hparams = os.path.join(folder, "h.yaml")
    >>> with open(hparams, "w") as f:
    ...     _ = f.write("channels: 512\\n")
    >>> changes_since_run(folder, hparams, "")
    {}
    >>> with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
    ...     _ = f.write("channels: 128\\n")
    >>> changes_since_run(folder, hparams, "")
    {'channels': (128, 512)}
    """
    saved_path = os.path.join(output_folder, "hyperparams.yaml")
    if not os.path.isfile(saved_path):
        return {}
    with open(hparams_file, encoding="utf-8") as fin:
        new_text = resolve_references(fin, overrides).getvalue()
    with open(saved_path, encoding="utf-8") as fin:
        saved_text = fin.read()
    return changed_settings(saved_text, new_text, ignored)


def listed_changes(changes):
    """Changed settings in words, for the messages.

    Example
    -------
    >>> listed_changes({"lr": (0.1, 0.2), "seed": (1, 2)})
    'lr: 0.1 -> 0.2; seed: 1 -> 2'
    """
    return "; ".join(
        f"{key}: {old} -> {new}" for key, (old, new) in changes.items()
    )


SEGMENTS_RECORD = "training_segments.json"
SEGMENT_KEYS = ("ID", "start", "stop", "spk_id")


def run_command_line(argv):
    """The command line of a script that reads a finished run (e.g.
    ``export_student.py``): a run folder is replaced by the
    ``hyperparams.yaml`` it saved (every setting of the run, so no override
    is repeated); a recipe hparams file whose settings differ from the
    run's is refused, naming the keys.

    Arguments
    ---------
    argv : list of str
        ``[run folder or hparams file, --key=value ...]``.

    Returns
    -------
    list of str
        The command line for ``speechbrain.parse_arguments``.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with open(os.path.join(run, "hyperparams.yaml"), "w") as fout:
    ...     _ = fout.write(f"output_folder: {run}\\nchannels: 128\\n")
    >>> run_command_line([run]) == [os.path.join(run, "hyperparams.yaml")]
    True
    >>> recipe = os.path.join(tempfile.mkdtemp(), "recipe.yaml")
    >>> with open(recipe, "w") as fout:
    ...     _ = fout.write("output_folder: x\\nchannels: 512\\n")
    >>> run_command_line([recipe, f"--output_folder={run}"])
    Traceback (most recent call last):
    ...
    ValueError: ... was trained with other settings: channels: 128 -> 512...
    """
    if not argv:
        raise ValueError("give the run folder to export (or its hparams)")
    first, rest = argv[0], list(argv[1:])
    if os.path.isdir(first):
        saved = os.path.join(first, "hyperparams.yaml")
        if not os.path.isfile(saved):
            raise FileNotFoundError(
                f"{first} holds no hyperparams.yaml: give the output folder "
                "of a training run"
            )
        return [saved, *rest]
    _, _, overrides = sb.parse_arguments([first, *rest])
    output_folder = resolved_settings(first, overrides)["output_folder"]
    changes = changes_since_run(
        output_folder, first, overrides, (*NOT_TRAINING_KEYS, "export_folder")
    )
    if changes:
        raise ValueError(
            f"{output_folder} was trained with other settings: "
            f"{listed_changes(changes)}. Export it from its folder alone: "
            f"export_student.py {output_folder}"
        )
    return [first, *rest]


def _segments_identity(csv_path):
    """The rows of a segment CSV and the sha256 of what defines them (id,
    start, stop, speaker): not the audio paths, so that a corpus moved or
    mounted elsewhere is the same data."""
    with open(csv_path, newline="", encoding="utf-8") as fin:
        rows = [
            "\t".join(row.get(key) or "" for key in SEGMENT_KEYS)
            for row in csv.DictReader(fin)
        ]
    digest = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
    return {"rows": len(rows), "sha256": digest}


def check_same_segments(output_folder, annotation_files):
    """Raises if a run folder with training state trained on other segments.

    The first call records each annotation file's rows and the sha256 of
    their ids, bounds and speakers in ``training_segments.json`` (not the
    audio paths: a moved corpus is the same data); a later one compares
    them. So a new trial list whose speakers are already out of training
    rescores a finished run, while one that moves speakers out of the
    training data is refused.

    Arguments
    ---------
    output_folder : str
        The run's folder.
    annotation_files : list of str
        The training and validation segment CSVs, as prepared for this run.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> train = os.path.join(folder, "train.csv")
    >>> with open(train, "w") as f:
    ...     _ = f.write("ID,spk_id\\na,s1\\nb,s2\\n")
    >>> check_same_segments(folder, [train])
    >>> with open(os.path.join(folder, "train_log.txt"), "w") as f:
    ...     _ = f.write("epoch: 1\\n")
    >>> check_same_segments(folder, [train])
    >>> with open(train, "w") as f:  # the audio moved: the same segments
    ...     _ = f.write("ID,wav,spk_id\\na,/new/a.wav,s1\\nb,/new/b.wav,s2\\n")
    >>> check_same_segments(folder, [train])
    >>> with open(train, "w") as f:
    ...     _ = f.write("ID,spk_id\\na,s1\\n")
    >>> check_same_segments(folder, [train])
    Traceback (most recent call last):
    ...
    ValueError: ...train.csv differs from ... trained on (2 segments -> 1): ...
    """
    record_path = os.path.join(output_folder, SEGMENTS_RECORD)
    now = {
        os.path.basename(path): _segments_identity(path)
        for path in annotation_files
    }
    if os.path.isfile(record_path) and _has_training_state(output_folder):
        with open(record_path, encoding="utf-8") as fin:
            saved = json.load(fin)
        for path in annotation_files:
            old = saved.get(os.path.basename(path))
            new = now[os.path.basename(path)]
            if old is not None and old != new:
                raise ValueError(
                    f"{path} differs from the segments this run trained on "
                    f"({old['rows']} segments -> {new['rows']}): the "
                    "verification lists or the preparation's settings change "
                    "the speakers that train. Give this run another "
                    "--output_folder (or delete the folder to start it again)"
                )
        return
    if _has_training_state(output_folder):
        logger.warning(
            "%s trained before its segments were recorded: recording them "
            "now; a change of the trial lists since it trained cannot be "
            "seen",
            output_folder,
        )
    os.makedirs(output_folder, exist_ok=True)
    with open(record_path, "w", encoding="utf-8") as fout:
        json.dump(now, fout, indent=1)
