"""Recipe runs on a small generated corpus, for the recipe tests.

``tests/recipes/VoxCeleb.csv`` (SpeechBrain's ``tests/recipes`` format)
names, for each hparams file of the recipe, its script, the debug flags of
its test and the files the run must leave. ``RecipeRunner`` runs rows as
real command lines in subprocesses, once each per test session; rows that
need a teacher reuse the export folder of the teacher row.
"""

import csv
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from speechbrain_trkd.synthetic import make_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
RECIPE_CSV = REPO / "tests" / "recipes" / "VoxCeleb.csv"
N_TRAIN_SPEAKERS = 6

with open(RECIPE_CSV, newline="", encoding="utf-8") as csv_file:
    RECIPE_ROWS = list(csv.DictReader(csv_file))


def row_id(row):
    """Names a recipe row by its hparams file."""
    return Path(row["Hparam_file"]).stem


class RecipeRunner:
    """Runs recipe rows once each, resolving their placeholders."""

    def __init__(self, root):
        self.root = root
        corpus = make_synthetic_corpus(
            root / "corpus",
            n_train_speakers=N_TRAIN_SPEAKERS,
            n_dev_speakers=4,
            sessions_per_speaker=2,
            utterances_per_session=3,
            duration=(1.0, 2.5),
        )
        self.values = {
            "data_folder": corpus.folder,
            "trials": corpus.trial_file,
            "prep_folder": str(root / "prep"),
            "n_speakers": N_TRAIN_SPEAKERS,
        }
        self.done = {}

    def teacher_export(self, hparams_stem):
        """Runs a teacher row (once) and returns its export folder."""
        row = next(r for r in RECIPE_ROWS if row_id(r) == hparams_stem)
        return str(Path(self.run(row)) / "export")

    def run(
        self,
        row,
        name=None,
        launcher=(sys.executable,),
        extra_flags=(),
        debug=True,
    ):
        """Runs a row (once per name) and returns its output folder.

        ``launcher`` is the command before the script (e.g. torchrun),
        ``extra_flags`` follow the row's own flags, and ``debug=False``
        drops the row's ``--debug*`` flags, so that the run trains its
        whole (tiny) epochs and keeps its checkpoints (SpeechBrain's debug
        mode writes them to a temporary folder).
        """
        name = name or row_id(row)
        if name in self.done:
            return self.done[name]
        flags = row["test_debug_flags"]
        values = dict(self.values, output_folder=str(self.root / name))
        if "{ecapa_teacher}" in flags:
            values["ecapa_teacher"] = self.teacher_export("finetune_teacher")
        if "{resnet_teacher}" in flags:
            values["resnet_teacher"] = self.teacher_export("resnet_teacher")
        command = [
            *launcher,
            str(REPO / row["Script_file"]),
            str(REPO / row["Hparam_file"]),
            *[
                flag
                for flag in shlex.split(flags.format(**values))
                if debug or not flag.startswith("--debug")
            ],
            *extra_flags,
        ]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(
                f"{name} failed ({shlex.join(command)}):\n"
                f"{result.stderr[-4000:]}"
            )
        checks = row["test_debug_checks"].format(**values)
        match = re.fullmatch(r"files_exist=\[(.*)\]", checks)
        assert match, f"unknown check {checks!r} in {RECIPE_CSV}"
        missing = [
            f for f in match.group(1).split(",") if not Path(f).is_file()
        ]
        assert not missing, f"{name} did not write {missing}"
        self.done[name] = values["output_folder"]
        return values["output_folder"]
