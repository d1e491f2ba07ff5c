"""Runs every recipe hparams file for two debug batches on generated data."""

import pytest
from recipe_runner import RECIPE_ROWS, REPO, TRAIN_TRKD, row_id

from speechbrain_trkd.training_run import run_script


def test_every_hparams_file_has_a_row():
    """Adding an hparams file without a test row fails here."""
    hparams_dir = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    on_disk = {p.stem for p in hparams_dir.glob("*.yaml")}
    assert on_disk == {row_id(r) for r in RECIPE_ROWS}


@pytest.mark.parametrize("row", RECIPE_ROWS, ids=row_id)
def test_recipe_debug_run(recipe_runner, row):
    """The row's script runs 2 debug batches and writes its outputs."""
    recipe_runner.run(row)


def test_bf16_distillation(recipe_runner):
    """--precision=bf16 trains the student, teacher included, under autocast."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    recipe_runner.run(
        row, name="ecapa_to_small_bf16", extra_flags=("--precision=bf16",)
    )


def test_batch_of_one_fails_at_hparams_load(tmp_path):
    """Training with batch size 1 stops before any data is touched."""
    hparams_file = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    with pytest.raises(ValueError, match="batch_size=1: a training batch"):
        run_script(
            TRAIN_TRKD,
            [
                str(hparams_file / "ecapa_to_small.yaml"),
                f"--data_folder={tmp_path}/nothing",
                f"--output_folder={tmp_path}/out",
                "--batch_size=1",
            ],
        )
    assert not (tmp_path / "out" / "train_log.txt").exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--kd_weight=abc", "kd_weight='abc': give a finite number"),
        ("--number_of_epochs=0", "number_of_epochs=0: train at least one"),
        ("--lr=-1", "lr=-1: give a finite number >= 0"),
    ],
)
def test_unusable_numbers_fail_at_hparams_load(tmp_path, flag, message):
    """A number the run cannot use stops it before preparation (no folder
    of prepared data, no teacher), naming the key."""
    hparams_file = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    with pytest.raises(ValueError, match=message):
        run_script(
            TRAIN_TRKD,
            [
                str(hparams_file / "ecapa_to_small.yaml"),
                f"--data_folder={tmp_path}/nothing",
                f"--output_folder={tmp_path}/out",
                f"--prep_folder={tmp_path}/prep",
                flag,
            ],
        )
    assert not (tmp_path / "prep").exists()


def test_trial_lists_naming_wav_score_a_flac_corpus(tmp_path):
    """A corpus stored as .flac with trial lists that name .wav trains and
    scores: scoring resolves each trial as the preparation found it (it
    used to fail after training, naming the missing .wav)."""
    import contextlib
    import io

    import soundfile

    from speechbrain_trkd.synthetic import make_synthetic_corpus

    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.0, 2.0),
    )
    for wav in (tmp_path / "corpus" / "wav").rglob("*.wav"):
        samples, rate = soundfile.read(wav)
        soundfile.write(wav.with_suffix(".flac"), samples, rate)
        wav.unlink()
    with contextlib.redirect_stdout(io.StringIO()):
        script = run_script(
            TRAIN_TRKD,
            [
                str(REPO / "recipes/VoxCeleb/TRKD/hparams/ecapa_to_small.yaml"),
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
                "--num_workers=0",
                "--number_of_epochs=1",
                "--verification_backends=[cosine]",
                "--noprogressbar",
            ],
        )
    assert ".wav" in open(corpus.trial_file).read()
    assert sorted(script["brain"].metrics["O"]["cosine"]) == [
        "eer",
        "min_dcf_0.01",
        "min_dcf_0.05",
    ]
