"""A changed command never reuses another run's results."""

import contextlib
import io

import pytest
from recipe_runner import REPO, TRAIN_TRKD

from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import run_script

RECIPE = REPO / "recipes" / "VoxCeleb" / "TRKD"


def small_run(tmp_path):
    """A corpus of 3 training and 2 dev speakers, and the command line of a
    1-epoch student on it, without trial lists, backends or workers."""
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.0, 2.0),
    )
    return corpus, [
        str(RECIPE / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={corpus.folder}",
        f"--output_folder={tmp_path}/run",
        f"--prep_folder={tmp_path}/prep",
        "--split_ratio=[50, 50]",
        "--seg_dur=1.0",
        "--sentence_len=1.0",
        "--out_n_neurons=3",
        "--kd_method=none",
        "--student_channels=8",
        "--batch_size=4",
        "--number_of_epochs=1",
        "--noprogressbar",
    ]


def run(argv):
    """The recipe's globals after ``train_trkd.py *argv``, output hidden."""
    with contextlib.redirect_stdout(io.StringIO()):
        return run_script(TRAIN_TRKD, argv)


def test_changed_training_settings_are_refused(tmp_path):
    """After a finished run, the same folder with another learning rate or
    TRKD option stops with the differing keys named; another number of
    loader workers, with the corpus read from a decoded copy, resumes."""
    corpus, base = small_run(tmp_path)
    base += [
        f"--verification_lists=[{corpus.trial_file}]",
        "--verification_backends=[cosine]",
    ]
    run([*base, "--num_workers=0"])
    with pytest.raises(ValueError, match=r"lr: 0.001 -> 0.002"):
        run([*base, "--num_workers=0", "--lr=0.002"])
    with pytest.raises(ValueError, match="kd_method_options"):
        run(
            [
                *base,
                "--num_workers=0",
                "--kd_method_options={trkd: {lambda_mass: 0.0}}",
            ]
        )
    brain = run(  # loading only
        [*base, "--num_workers=1", f"--audio_cache={tmp_path}/decoded"]
    )["brain"]
    assert brain.metrics is not None


def test_a_finished_run_is_rescored_with_new_scoring_options(tmp_path):
    """Scoring options (backends, plots, trial audio CSVs, scoring batch,
    a further trial list of speakers already out of training) do not count
    as other training settings: the finished run is scored again under
    them, without training."""
    corpus, base = small_run(tmp_path)
    base.append("--num_workers=0")
    first = run(
        [
            *base,
            f"--verification_lists=[{corpus.trial_file}]",
            "--verification_backends=[cosine]",
        ]
    )
    log = (tmp_path / "run" / "train_log.txt").read_text()
    audio_csv = tmp_path / "prep" / "test.csv"
    hard_list = tmp_path / "H.txt"
    hard_list.write_text("".join(open(corpus.trial_file).readlines()[::2]))
    again = run(
        [
            *base,
            f"--verification_lists=[{corpus.trial_file}, {hard_list}]",
            "--verification_backends=[cosine, asnorm]",
            "--write_plots=False",
            "--verification_batch_size=1",
            f"--trial_audio_csvs=[{audio_csv}]",
        ]
    )
    assert (tmp_path / "run" / "train_log.txt").read_text() == log
    assert sorted(first["brain"].metrics["O"]) == ["cosine"]
    assert sorted(again["brain"].metrics["O"]) == ["asnorm", "cosine"]
    assert sorted(again["brain"].metrics["H"]) == ["asnorm", "cosine"]


def test_a_trial_list_that_moves_training_speakers_is_refused(tmp_path):
    """A further trial list naming a training speaker would train on other
    segments: the finished run is refused, naming the segment file, before
    any training."""
    corpus, base = small_run(tmp_path)
    base += ["--num_workers=0", "--verification_backends=[cosine]"]
    run([*base, f"--verification_lists=[{corpus.trial_file}]"])
    log = (tmp_path / "run" / "train_log.txt").read_text()
    train_speaker = corpus.train_speakers[0]
    dev_speaker = corpus.dev_speakers[0]
    other_list = tmp_path / "train_speaker.txt"
    other_list.write_text(
        f"1 {train_speaker}/ses01/00001.wav {train_speaker}/ses02/00001.wav\n"
        f"0 {train_speaker}/ses01/00001.wav {dev_speaker}/ses01/00001.wav\n"
    )
    lists = f"--verification_lists=[{corpus.trial_file}, {other_list}]"
    with pytest.raises(ValueError, match=r"train.csv differs from the segm"):
        run([*base, lists])
    assert (tmp_path / "run" / "train_log.txt").read_text() == log
