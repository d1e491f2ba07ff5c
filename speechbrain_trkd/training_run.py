"""Opening a training run of the recipe: the command line, the hparams,
the checks that must pass before any data or model is touched, the output
folder's lock and the refusal of a folder trained with other settings.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import json
import math
import os
import runpy
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.pretrained import sizes_in_weights
from speechbrain_trkd.run_identity import check_same_run, resolved_settings
from speechbrain_trkd.run_lock import RunLock

logger = get_logger(__name__)


@contextlib.contextmanager
def training_run(argv):
    """Opens a training run of the recipe: hparams, run options, lock.

    Parses the command line, loads the hparams, takes the output folder's
    lock (one run per folder, see ``RunLock``) and refuses a folder trained
    with other settings (``check_same_run``); the run happens inside the
    ``with`` block, which first creates the experiment directory (from the
    script, so that SpeechBrain saves a copy of that script).

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --key=value ...]``, SpeechBrain style.

    Yields
    ------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options.
    hparams_file : str
        The hparams file, for ``sb.create_experiment_directory``.
    overrides : str
        The command-line overrides, likewise.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> import os
    >>> from speechbrain_trkd.pretrained import RECIPE_HPARAMS
    >>> hparams_file = os.path.join(RECIPE_HPARAMS, "ecapa_to_small.yaml")
    >>> argv = [hparams_file, f"--data_folder={tmp}",
    ...         f"--output_folder={tmp}/run"]
    >>> with training_run(argv) as (hparams, run_opts, _, overrides):
    ...     hparams["kd_method"], sorted(os.listdir(f"{tmp}/run"))
    ('trkd', ['run.lock', 'save'])
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Pretrained weights drive CPU activations into denormal floats, which
    # made the ECAPA-1024 teacher 3.7x slower on CPU (21 s -> 5.7 s per 32
    # crops of 2 s); flushing them to zero changes no result.
    torch.set_flush_denormal(True)
    sb.utils.distributed.ddp_init_group(run_opts)
    # Before the objects are built: a tau schedule of 0 epochs would fail
    # there with a message that names no key.
    overrides = with_teacher_sizes(hparams_file, overrides)
    check_run_numbers(resolved_settings(hparams_file, overrides))
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    batch_size = hparams["train_dataloader_options"].get("batch_size", 1)
    if batch_size < 2:
        raise ValueError(
            f"batch_size={batch_size}: a training batch needs at least 2 "
            "examples for the models' batch normalisation; pass "
            "--batch_size=2 or more"
        )
    lock = (
        RunLock(hparams["output_folder"])
        if if_main_process()
        else contextlib.nullcontext()
    )
    with lock:
        if if_main_process():
            check_same_run(hparams["output_folder"], hparams_file, overrides)
        yield hparams, run_opts, hparams_file, overrides


# The hparams that size a teacher, and the size of its weights each must be.
TEACHER_SIZE_KEYS = {
    "teacher_channels": "channels",
    "teacher_resnet_channels": "resnet_channels",
    "teacher_block_sizes": "block_sizes",
    "teacher_emb_dim": "emb_dim",
    "teacher_n_classes": "n_classes",
}


def with_teacher_sizes(hparams_file, overrides):
    r"""The overrides, with the sizes of a local teacher read from its
    weights (``sizes_in_weights``), so that ``--teacher_source=<folder>``
    needs no size flag; a size flag that disagrees with the weights is
    refused, naming the flag and the value the weights hold. A Hub teacher
    is sized by the hparams file (its defaults are the Hub model's).

    Arguments
    ---------
    hparams_file : str
        The hparams file.
    overrides : str
        The command line's overrides, as ``sb.parse_arguments`` gives them.

    Returns
    -------
    str
        ``overrides``, plus a line for each size the hparams would get wrong.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> folder = tempfile.mkdtemp()
    >>> ecapa = ECAPA_TDNN(24, channels=[8, 8, 8, 8, 24], lin_neurons=16)
    >>> torch.save(ecapa.state_dict(), f"{folder}/embedding_model.ckpt")
    >>> head = Classifier(16, out_neurons=3)
    >>> torch.save(head.state_dict(), f"{folder}/classifier.ckpt")
    >>> hparams = f"{folder}/h.yaml"
    >>> with open(hparams, "w") as f:
    ...     _ = f.write("teacher_source: hub/id\nteacher_channels: 1024\n")
    >>> with_teacher_sizes(hparams, "lr: 0.1")
    'lr: 0.1'
    >>> with_teacher_sizes(hparams, f"teacher_source: {folder}")
    'teacher_source: ...\nteacher_channels: 8'
    >>> with_teacher_sizes(hparams, f"teacher_source: {folder}\n"
    ...                             "teacher_channels: 16")
    Traceback (most recent call last):
    ...
    ValueError: --teacher_channels=16, but the teacher's weights ... hold 8: ...
    """
    settings = resolved_settings(hparams_file, overrides)
    source = settings.get("teacher_source")
    if not isinstance(source, str) or not os.path.isfile(
        os.path.join(source, "embedding_model.ckpt")
    ):
        return overrides
    held = sizes_in_weights(source)
    given = YAML(typ="rt").load(overrides or "") or {}
    added = []
    for key, size in TEACHER_SIZE_KEYS.items():
        if key not in settings or size not in held:
            continue
        if settings[key] == held[size]:
            continue
        if key in given:
            raise ValueError(
                f"--{key}={settings[key]}, but the teacher's weights "
                f"{os.path.join(source, 'embedding_model.ckpt')} hold "
                f"{held[size]}: leave the flag out (a local teacher's sizes "
                f"are read from its weights) or pass --{key}={held[size]}"
            )
        added.append(f"{key}: {json.dumps(held[size])}")
    if added:
        logger.info("The teacher's sizes, from its weights: %s", added)
    return "\n".join([overrides, *added]) if overrides else "\n".join(added)


def check_run_numbers(hparams):
    """Raises, before any data or model is touched, on a number the run
    cannot use, naming the key and what would work.

    Example
    -------
    >>> check_run_numbers({"number_of_epochs": 2, "kd_weight": 0.1})
    >>> check_run_numbers({"number_of_epochs": 2, "kd_weight": "abc"})
    Traceback (most recent call last):
    ...
    ValueError: kd_weight='abc': give a finite number >= 0, e.g. ...
    >>> check_run_numbers({"number_of_epochs": 0})
    Traceback (most recent call last):
    ...
    ValueError: number_of_epochs=0: train at least one epoch ...
    """
    for key in ("kd_weight", "kd_warmup_epochs", "lr", "lr_final"):
        value = hparams.get(key, 0.0)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{key}={value!r}: give a finite number >= 0, e.g. --{key}=0.1"
            )
    epochs = hparams["number_of_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"number_of_epochs={epochs!r}: train at least one epoch "
            "(--number_of_epochs=1 or more)"
        )


def command_line(hparams_file, overrides, run_opts=None):
    """Builds the argument list of a recipe script.

    Arguments
    ---------
    hparams_file : str
        The hparams file.
    overrides : dict
        Hyperparameters to override, as ``--key=value`` (non-strings in
        JSON, which YAML reads back).
    run_opts : dict, optional
        SpeechBrain run options; True flags are passed bare.

    Returns
    -------
    list of str

    Example
    -------
    >>> command_line("a.yaml", {"lr": 0.1, "x": None}, {"debug": True})
    ['a.yaml', '--lr=0.1', '--x=null', '--debug']
    """
    args = [hparams_file]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"--{key}={text}")
    for key, value in (run_opts or {}).items():
        args.append(f"--{key}" if value is True else f"--{key}={value}")
    return args


def run_script(script, argv):
    r"""Runs a recipe script in this process, as ``python script *argv``
    would (``runpy``, as ``__main__``), and returns its global names
    (``brain``, ``hparams``, ...), for the demo, the benchmark and the
    tests.

    Arguments
    ---------
    script : str or os.PathLike
        The script.
    argv : list of str
        Its command line.

    Returns
    -------
    dict
        The script's globals after it ran.

    Example
    -------
    >>> import os, tempfile
    >>> script = os.path.join(tempfile.mkdtemp(), "echo.py")
    >>> with open(script, "w") as fout:
    ...     _ = fout.write("import sys\nif __name__ == '__main__':\n"
    ...                    "    args = sys.argv[1:]\n")
    >>> run_script(script, ["a.yaml", "--lr=0.1"])["args"]
    ['a.yaml', '--lr=0.1']
    """
    # As ``python script`` does: the script's folder first on the path (for
    # its data preparation module) and the script as argv[0].
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        return runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
