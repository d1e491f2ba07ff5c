"""A changed command never reuses another run's results."""

import contextlib
import io

import pytest
from recipe_runner import REPO, TRAIN_TRKD

from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import run_script

RECIPE = REPO / "recipes" / "VoxCeleb" / "TRKD"


def test_changed_training_settings_are_refused(tmp_path):
    """After a finished run, the same folder with another learning rate or
    TRKD option stops with the differing keys named; another number of
    loader workers resumes."""
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.0, 2.0),
    )
    base = [
        str(RECIPE / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={corpus.folder}",
        f"--output_folder={tmp_path}/run",
        f"--prep_folder={tmp_path}/prep",
        f"--verification_lists=[{corpus.trial_file}]",
        "--split_ratio=[50, 50]",
        "--seg_dur=1.0",
        "--sentence_len=1.0",
        "--out_n_neurons=3",
        "--kd_method=none",
        "--student_channels=8",
        "--batch_size=4",
        "--number_of_epochs=1",
        "--verification_backends=[cosine]",
        "--noprogressbar",
    ]

    def run(*extra):
        with contextlib.redirect_stdout(io.StringIO()):
            return run_script(TRAIN_TRKD, [*base, *extra])["brain"]

    run("--num_workers=0")
    with pytest.raises(ValueError, match=r"lr: 0.001 -> 0.002"):
        run("--num_workers=0", "--lr=0.002")
    with pytest.raises(ValueError, match="kd_method_options"):
        run(
            "--num_workers=0",
            "--kd_method_options={trkd: {lambda_mass: 0.0}}",
        )
    brain = run("--num_workers=1")  # loading only: the same run
    assert brain.metrics is not None


def test_a_finished_run_is_rescored_with_new_scoring_options(tmp_path):
    """Scoring options (backends, plots, trial audio CSVs, scoring batch)
    do not count as other training settings: the finished run is scored
    again under them, without training."""
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.0, 2.0),
    )
    base = [
        str(RECIPE / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={corpus.folder}",
        f"--output_folder={tmp_path}/run",
        f"--prep_folder={tmp_path}/prep",
        f"--verification_lists=[{corpus.trial_file}]",
        "--split_ratio=[50, 50]",
        "--seg_dur=1.0",
        "--sentence_len=1.0",
        "--out_n_neurons=3",
        "--kd_method=none",
        "--student_channels=8",
        "--batch_size=4",
        "--number_of_epochs=1",
        "--num_workers=0",
        "--noprogressbar",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        first = run_script(
            TRAIN_TRKD, [*base, "--verification_backends=[cosine]"]
        )
    log = (tmp_path / "run" / "train_log.txt").read_text()
    audio_csv = tmp_path / "prep" / "test.csv"
    with contextlib.redirect_stdout(io.StringIO()):
        again = run_script(
            TRAIN_TRKD,
            [
                *base,
                "--verification_backends=[cosine, asnorm]",
                "--write_plots=False",
                "--verification_batch_size=1",
                f"--trial_audio_csvs=[{audio_csv}]",
            ],
        )
    assert (tmp_path / "run" / "train_log.txt").read_text() == log
    assert sorted(first["brain"].metrics["O"]) == ["cosine"]
    assert sorted(again["brain"].metrics["O"]) == ["asnorm", "cosine"]
