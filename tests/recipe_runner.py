"""Recipe runs on a small generated corpus, for the recipe tests.

``tests/recipes/VoxCeleb.csv`` (SpeechBrain's ``tests/recipes`` format)
names, for each hparams file of the recipe, its script, the debug flags of
its test on SpeechBrain's sample audio (``tests/samples``) and the files the
run must leave in its output folder. ``RecipeRunner`` runs rows as real
command lines in subprocesses, once each per test session, on a generated
corpus instead: the flags that point at the sample data are replaced by the
corpus's, and a row that loads another row's output
(``tests/tmp/VoxCeleb_row_<NN>/export``, the SpeechBrain runner's output
folders) gets that row's output from this runner.
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
TRAIN_TRKD = REPO / "recipes" / "VoxCeleb" / "TRKD" / "train_trkd.py"
N_TRAIN_SPEAKERS = 6

with open(RECIPE_CSV, newline="", encoding="utf-8") as csv_file:
    RECIPE_ROWS = list(csv.DictReader(csv_file, skipinitialspace=True))
# Flags of the sample data, dropped: the prepared corpus's defaults apply.
SAMPLE_ONLY_FLAGS = (
    "--train_annotation",
    "--valid_annotation",
    "--skip_prep",
    "--trial_audio_csvs",
)
# SpeechBrain's runner names row N's output folder tests/tmp/VoxCeleb_row_N
# (N counts the CSV's lines, the header being line 1).
OTHER_ROW_OUTPUT = re.compile(r"tests/tmp/VoxCeleb_row_(\d+)/(.*)")


def tiny_student_argv(corpus, folder, n_speakers, *extra, prep_folder=None):
    """``train_trkd.py``'s command line for a tiny student without KD on a
    generated corpus (``ecapa_to_small.yaml``, C=8, batch 2, cosine
    scoring only), prepared in ``prep_folder`` (``<folder>/prep``);
    ``extra`` overrides come last."""
    return [
        str(TRAIN_TRKD.parent / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={corpus.folder}",
        f"--output_folder={folder}",
        f"--prep_folder={prep_folder or f'{folder}/prep'}",
        f"--verification_lists=[{corpus.trial_file}]",
        "--split_ratio=[70, 30]",
        "--seg_dur=1.0",
        "--sentence_len=0.8",
        f"--out_n_neurons={n_speakers}",
        "--kd_method=none",
        "--student_channels=8",
        "--batch_size=2",
        "--verification_backends=[cosine]",
        "--write_plots=False",
        "--noprogressbar",
        *extra,
    ]


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

    def corpus_flags(self, flags):
        """The row's flags on the generated corpus instead of the sample
        data (see the module docstring)."""
        values = {
            "--data_folder": self.values["data_folder"],
            "--verification_lists": f"[{self.values['trials']}]",
            "--out_n_neurons": self.values["n_speakers"],
        }
        resolved = []
        prepares_data = False
        for flag in shlex.split(flags):
            key, has_value, value = flag.partition("=")
            if key in SAMPLE_ONLY_FLAGS:
                prepares_data |= key == "--skip_prep"
                continue
            if match := OTHER_ROW_OUTPUT.fullmatch(value):
                other = RECIPE_ROWS[int(match.group(1)) - 2]
                value = str(Path(self.run(other)) / match.group(2))
            resolved.append(
                f"{key}={values.get(key, value)}" if has_value else flag
            )
        if prepares_data:
            resolved.append(f"--prep_folder={self.values['prep_folder']}")
        return resolved

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
        leaves out ``--debug`` (which SpeechBrain's runner adds), so that
        the run trains its whole (tiny) epochs and keeps its checkpoints
        (SpeechBrain's debug mode writes them to a temporary folder).
        """
        name = name or row_id(row)
        if name in self.done:
            return self.done[name]
        output_folder = self.root / name
        command = [
            *launcher,
            str(REPO / row["Script_file"]),
            str(REPO / row["Hparam_file"]),
            *self.corpus_flags(row["test_debug_flags"]),
            f"--output_folder={output_folder}",
            *(["--debug"] if debug else []),
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
        checks = row["test_debug_checks"]
        match = re.fullmatch(r"file_exists=\[(.*)\]", checks)
        assert match, f"unknown check {checks!r} in {RECIPE_CSV}"
        missing = [
            f
            for f in match.group(1).split(",")
            if not (output_folder / f).exists()
        ]
        assert not missing, f"{name} did not write {missing}"
        self.done[name] = str(output_folder)
        return self.done[name]
