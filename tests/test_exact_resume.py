"""A run stopped by SIGTERM and resumed ends as an uninterrupted one."""

import contextlib
import io
import os
import signal

import pytest
import speechbrain as sb
import torch
from recipe_runner import TRAIN_TRKD, tiny_student_argv

from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import run_script


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Five speakers, three of them training."""
    return make_synthetic_corpus(
        tmp_path_factory.mktemp("corpus"),
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=4,
        duration=(1.5, 2.5),
    )


def train(corpus, folder, workers):
    """Two epochs of a small student (the default augmentation on, so that
    crops, augmentation and their torch draws all count); its scores and
    its final weights."""
    argv = tiny_student_argv(
        corpus, folder, 3, "--number_of_epochs=2", f"--num_workers={workers}"
    )
    with contextlib.redirect_stdout(io.StringIO()):
        brain = run_script(TRAIN_TRKD, argv)["brain"]
    weights = brain.modules.embedding_model.state_dict()
    return brain.metrics, {k: v.clone() for k, v in weights.items()}


def sigterm_at(monkeypatch, stage, epoch, step):
    """Sends this process a SIGTERM once the run reaches ``step`` of
    ``stage`` (``TRAIN``: after that batch, ``"last"`` the epoch's last;
    ``VALID``: as it starts)."""
    fit_batch = DistillationBrain.fit_batch
    on_stage_start = DistillationBrain.on_stage_start

    def kill_once(brain):
        if brain.epoch_counter.current == epoch:
            monkeypatch.undo()
            os.kill(os.getpid(), signal.SIGTERM)

    def fit_batch_then_kill(brain, batch):
        loss = fit_batch(brain, batch)
        last = step == "last" and brain.step == brain.steps_per_epoch
        if stage == sb.Stage.TRAIN and (brain.step == step or last):
            kill_once(brain)
        return loss

    def start_then_kill(brain, this_stage, this_epoch=None):
        on_stage_start(brain, this_stage, this_epoch)
        if this_stage == stage == sb.Stage.VALID:
            kill_once(brain)

    monkeypatch.setattr(DistillationBrain, "fit_batch", fit_batch_then_kill)
    monkeypatch.setattr(DistillationBrain, "on_stage_start", start_then_kill)


@pytest.mark.parametrize(
    "stage, epoch, step, workers",
    [
        (sb.Stage.TRAIN, 2, 3, 0),
        (sb.Stage.TRAIN, 1, "last", 0),
        (sb.Stage.VALID, 1, 0, 0),
        (sb.Stage.VALID, 1, 0, 1),
    ],
    ids=[
        "mid_epoch",
        "at_the_epochs_last_batch",
        "epoch_end",
        "epoch_end_with_a_loader_worker",
    ],
)
def test_a_resumed_run_ends_as_an_uninterrupted_one(
    corpus, tmp_path, monkeypatch, stage, epoch, step, workers
):
    """SIGTERM in epoch 2 (after its third batch), or after epoch 1's last
    batch, saves an intra-epoch checkpoint and exits with 143 (resumed, the
    last-batch case trains on no batch before the next epoch); SIGTERM
    during epoch 1's validation
    exits after the epoch's checkpoint. The same command then resumes, and
    the final weights and EER equal those of an uninterrupted run (at an
    epoch's end with a loader worker too)."""
    metrics, weights = train(corpus, tmp_path / "whole", workers)
    sigterm_at(monkeypatch, stage, epoch, step)

    def unhandled(signum, frame):
        raise AssertionError("the run did not handle SIGTERM")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(SystemExit) as stopped:
            train(corpus, tmp_path / "stopped", workers)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 143
    saved = [
        name
        for name in os.listdir(tmp_path / "stopped" / "save")
        if name.startswith("CKPT")
    ]
    assert saved, "no checkpoint was saved before the exit"
    resumed_metrics, resumed_weights = train(
        corpus, tmp_path / "stopped", workers
    )
    assert resumed_metrics == metrics
    for key, value in weights.items():
        assert torch.equal(resumed_weights[key], value), key
