"""The confusion-set measurement of benchmarks/confusion_sets.py."""

import csv
import sys

import pytest
import torch
from recipe_runner import REPO

from speechbrain_trkd.losses import triage_partition
from speechbrain_trkd.synthetic import make_synthetic_corpus

sys.path.insert(0, str(REPO / "benchmarks"))
import confusion_sets  # noqa: E402

SHARED = REPO.parent / "shared"
OPENSPK = SHARED / "data" / "openspk"
TEACHER = SHARED / "models" / "ecapa-openspk"


def test_training_crops_leave_out_trial_speakers(tmp_path):
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=3,
        n_dev_speakers=2,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(1.0, 1.5),
    )
    crops = confusion_sets.training_crops(corpus.folder, 50, 0.5, seed=1)
    speakers = {speaker for speaker, _ in crops}
    assert speakers == set(corpus.train_speakers)
    assert len(crops) == 6  # at most one crop per file
    assert all(wav.shape == (8000,) for _, wav in crops)


def test_statistics_match_the_partition():
    """Sizes are the partition's; the background share is m_B / (1 - p_y)."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 40, generator=gen)
    targets = torch.randint(0, 40, (50,), generator=gen)
    rows = confusion_sets.triage_statistics(
        logits, targets, taus=(0.3,), temperatures=(2.0,)
    )
    confusion, background = triage_partition(logits, targets, 0.3, 2.0)
    sizes = confusion.sum(-1).double()
    assert rows[0]["size_p50"] == pytest.approx(sizes.median().item(), abs=0.5)
    p = torch.softmax(logits.double() / 2.0, -1)
    share = (p * background).sum(-1) / (1 - p[torch.arange(50), targets])
    assert rows[0]["background_share_p50"] == pytest.approx(
        share.median().item(), abs=0.02
    )
    assert rows[0]["background_share_p90"] <= 0.7 + 1e-9


@pytest.mark.skipif(
    not (OPENSPK.is_dir() and TEACHER.is_dir()),
    reason="needs ../shared/data/openspk and ../shared/models/ecapa-openspk",
)
def test_real_teacher_on_real_speech(tmp_path):
    """A few crops through the in-domain teacher: the set grows with tau."""
    table = confusion_sets.main(
        [
            "--teacher",
            str(TEACHER),
            "--targets",
            "labels",
            "--data_folder",
            str(OPENSPK),
            "--output_folder",
            str(tmp_path),
            "--crops",
            "6",
        ]
    )
    with open(tmp_path / "confusion_sets.csv", newline="") as fin:
        assert len(list(csv.DictReader(fin))) == len(table) == 16
    for temperature in (1.0, 4.0):
        medians = [
            r["size_p50"] for r in table if r["temperature"] == temperature
        ]
        assert medians == sorted(medians) and medians[-1] > medians[0]
