"""The pictures of speechbrain_trkd.plots, from the recipe's scripts."""

import contextlib
import importlib.util
import io
import logging
import sys

import pytest
import torch
from recipe_runner import TRAIN_TRKD
from test_speaker_verification import (
    RECIPE,
    make_corpus,
    make_tiny_model_folder,
    sv,
    write_all_pairs,
)

from speechbrain_trkd import plots, teacher_loading, training_plots
from speechbrain_trkd.metrics import compute_eer, compute_min_dcf
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason='needs matplotlib (pip install -e ".[plots]")',
)


def assert_png(path):
    """A non-empty PNG that decodes to an RGB(A) image."""
    from matplotlib.image import imread

    assert path.is_file(), f"{path} not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.fixture(scope="module")
def scored_model(tmp_path_factory):
    """A random tiny ECAPA, its trial list and data, ready for sv.main."""
    root = tmp_path_factory.mktemp("scored")
    speakers = make_corpus(root / "corpus", n_speakers=6, utts=4)
    make_tiny_model_folder(root / "model")
    trial_list = root / "tiny.txt"
    write_all_pairs(trial_list, speakers["dv02"] + speakers["dv05"])
    return root, trial_list


def score(scored_model, output_folder, *flags):
    """Runs speaker_verification.py's main on the tiny model."""
    root, trial_list = scored_model
    return sv.main(
        [
            str(RECIPE / "hparams" / "verification.yaml"),
            f"--model_source={root / 'model'}",
            f"--data_folder={root / 'corpus'}",
            f"--output_folder={output_folder}",
            f"--verification_lists=[{trial_list}]",
            "--batch_size=4",
            "--device=cpu",
            *flags,
        ]
    )


@pytest.fixture
def without_matplotlib(monkeypatch):
    """matplotlib made unimportable, the cached answer forgotten."""
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    plots.figure_class.cache_clear()
    yield
    plots.figure_class.cache_clear()


@needs_matplotlib
def test_scored_model_writes_det_and_histograms(scored_model, tmp_path):
    out = tmp_path / "out"
    score(scored_model, out)
    assert (out / "metrics.json").is_file()
    assert_png(out / "det_tiny.png")
    assert_png(out / "scores_tiny_cosine.png")


@needs_matplotlib
def test_write_plots_false_writes_none(scored_model, tmp_path):
    score(scored_model, tmp_path, "--write_plots=False")
    assert not list(tmp_path.glob("*.png"))


def test_det_points_are_scoring_eer_and_min_dcf():
    """The EER point lies on the DET curve where compute_eer puts it; the
    minDCF point is the curve's point of least cost, compute_min_dcf's."""
    gen = torch.Generator().manual_seed(3)
    labels = (torch.rand(3000, generator=gen) < 0.3).long()
    scores = (labels * 1.5 + torch.randn(3000, generator=gen)).round(
        decimals=1
    )  # ties
    points = plots.det_points(scores, labels, p_target=0.05)
    eer = compute_eer(scores, labels)[0]
    assert points.eer == eer
    # The curve against a count of the errors at each threshold.
    thresholds = torch.cat([scores.unique(), torch.tensor([torch.inf])])
    target = labels == 1
    accepted = scores[None, :] >= thresholds[:, None]
    frr = (~accepted & target).sum(1).double() / target.sum()
    far = (accepted & ~target).sum(1).double() / (~target).sum()
    assert points.frr.tolist() == pytest.approx(frr.tolist())
    assert points.far.tolist() == pytest.approx(far.tolist())
    # (eer, eer) is on the segment where the curve crosses FRR = FAR.
    crossing = int((frr >= far).nonzero()[0, 0])
    (x0, y0), (x1, y1) = [(far[i], frr[i]) for i in (crossing - 1, crossing)]
    assert min(x0, x1) <= eer <= max(x0, x1)
    assert min(y0, y1) <= eer <= max(y0, y1)
    cross = (x1 - x0) * (eer - y0) - (y1 - y0) * (eer - x0)
    assert abs(float(cross)) < 1e-12  # collinear
    # The minDCF point: on the curve, at the least normalised cost.
    cost = (0.05 * frr + 0.95 * far) / 0.05
    best = int(cost.argmin())
    assert (points.min_dcf_far, points.min_dcf_frr) == pytest.approx(
        (float(far[best]), float(frr[best]))
    )
    min_dcf, threshold = compute_min_dcf(scores, labels, p_target=0.05)
    assert points.min_dcf == min_dcf == pytest.approx(float(cost[best]))
    assert points.min_dcf_threshold == threshold


@needs_matplotlib
def test_tiny_distillation_run_writes_its_pictures(tmp_path, monkeypatch):
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.0, 2.0),
    )
    out = tmp_path / "run"
    argv = [
        str(RECIPE / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={corpus.folder}",
        f"--output_folder={out}",
        f"--prep_folder={tmp_path / 'prep'}",
        f"--verification_lists=[{corpus.trial_file}]",
        "--split_ratio=[50, 50]",
        "--seg_dur=1.0",
        "--sentence_len=1.0",
        "--out_n_neurons=3",
        "--teacher_n_classes=3",
        "--teacher_channels=16",
        "--student_channels=8",
        "--batch_size=4",
        "--num_workers=0",
        "--number_of_epochs=2",
        "--verification_backends=[cosine]",
        "--noprogressbar",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            # A random teacher with the student's 3 classes: the pictures
            # need a TRKD run, not a good teacher.
            monkeypatch.setattr(
                teacher_loading,
                "load_teacher",
                lambda _, teacher, *a, **k: teacher,
            )
            hparams = run_script(TRAIN_TRKD, argv)["brain"].hparams
    finally:
        torch.set_num_threads(threads)
    for name in (
        "losses.png",
        "confusion_set_size.png",
        "tau.png",
        "det_O.png",
        "scores_O_cosine.png",
    ):
        assert_png(out / name)
    # The tau logged at each epoch's end is the schedule's at its last step.
    schedule = hparams.tau_schedule
    epochs = training_plots.read_train_log(out / "train_log.txt")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for epoch in epochs:
        step = epoch["epoch"] * schedule.steps_per_epoch - 1
        assert epoch["tau"] == pytest.approx(schedule(step), rel=0.01)
        assert epoch["train conf_size"] >= 1


class Records(logging.Handler):
    """Keeps the records it handles (SpeechBrain's logging setup, run by
    the script, replaces the handlers pytest's caplog relies on)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_without_matplotlib_pictures_are_skipped_with_one_line(
    scored_model, tmp_path, without_matplotlib
):
    records = Records()
    logging.getLogger(plots.__name__).addHandler(records)
    try:
        metrics = score(scored_model, tmp_path)
        log = tmp_path / "train_log.txt"
        log.write_text("epoch: 1 - train loss: 1.0\n")
        assert training_plots.write_training_plots(log, tmp_path) == []
    finally:
        logging.getLogger(plots.__name__).removeHandler(records)
    assert (tmp_path / "metrics.json").is_file() and metrics["tiny"]
    assert not list(tmp_path.glob("*.png"))
    messages = [r.getMessage() for r in records.records]
    assert messages == [plots.SKIPPED]
    assert 'pip install -e ".[plots]"' in plots.SKIPPED
