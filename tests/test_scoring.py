"""Tests of speechbrain_trkd.scoring: metrics, trial I/O and backends."""

import math
import statistics
import time

import numpy
import pytest
import torch
from speechbrain.processing.PLDA_LDA import (
    Ndx,
    StatObject_SB,
    fast_PLDA_scoring,
)

from speechbrain_trkd.metrics import compute_eer, compute_min_dcf
from speechbrain_trkd.scoring import (
    PLDABackend,
    asnorm_scores,
    cosine_scores,
    speaker_mean_embeddings,
)
from speechbrain_trkd.trials import (
    index_utterances,
    read_scores,
    read_trials,
    write_scores,
)

# ---------------------------------------------------------------------------
# Brute-force references: one threshold at a time, plain Python.
# ---------------------------------------------------------------------------


def brute_force_rates(scores, labels):
    """(threshold, FRR, FAR) for every distinct score and +inf."""
    scores = [float(s) for s in scores]
    labels = [int(y) for y in labels]
    targets = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    nontargets = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    points = []
    for threshold in sorted(set(scores)) + [math.inf]:
        frr = sum(s < threshold for s in targets) / len(targets)
        far = sum(s >= threshold for s in nontargets) / len(nontargets)
        points.append((threshold, frr, far))
    return points


def brute_force_eer(scores, labels):
    """EER by the documented rule: FAR = FRR on the crossing segment."""
    points = brute_force_rates(scores, labels)
    for i in range(1, len(points)):
        _, frr0, far0 = points[i - 1]
        _, frr1, far1 = points[i]
        if frr1 >= far1:
            # Solve frr0 + a (frr1 - frr0) = far0 + a (far1 - far0) for a.
            a = (far0 - frr0) / ((frr1 - frr0) - (far1 - far0))
            return frr0 + a * (frr1 - frr0)
    raise AssertionError("no crossing found")


def brute_force_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Minimum normalised DCF over every threshold, plain Python."""
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    return min(
        (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / norm
        for _, frr, far in brute_force_rates(scores, labels)
    )


def random_trials(seed, n=300, tie_step=None):
    """Gaussian target/non-target scores, optionally rounded to create ties."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=gen) < 0.3).long()
    labels[0], labels[1] = 1, 0
    scores = torch.randn(n, generator=gen, dtype=torch.float64) + labels
    if tie_step is not None:
        scores = torch.round(scores / tie_step) * tie_step
    return scores, labels


# ---------------------------------------------------------------------------
# EER and minDCF
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tie_step", [None, 0.5, 0.1])
def test_eer_min_dcf_match_brute_force(seed, tie_step):
    scores, labels = random_trials(seed, tie_step=tie_step)
    eer, threshold = compute_eer(scores, labels)
    assert eer == pytest.approx(brute_force_eer(scores, labels), abs=1e-12)
    assert threshold in set(scores.tolist()) | {math.inf}
    for p_target in (0.01, 0.05, 0.5):
        min_dcf, dcf_threshold = compute_min_dcf(scores, labels, p_target)
        reference = brute_force_min_dcf(scores, labels, p_target)
        assert min_dcf == pytest.approx(reference, abs=1e-12)
        # The returned threshold reaches the minimum.
        target = scores[labels == 1]
        nontarget = scores[labels == 0]
        frr = float((target < dcf_threshold).double().mean())
        far = float((nontarget >= dcf_threshold).double().mean())
        norm = min(p_target, 1 - p_target)
        cost = (p_target * frr + (1 - p_target) * far) / norm
        assert cost == pytest.approx(min_dcf, abs=1e-12)


def test_min_dcf_costs_match_brute_force():
    scores, labels = random_trials(11, tie_step=0.2)
    got = compute_min_dcf(scores, labels, 0.05, c_miss=10.0, c_fa=0.5)[0]
    want = brute_force_min_dcf(scores, labels, 0.05, c_miss=10.0, c_fa=0.5)
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_eer_between_convention_free_bounds(seed):
    """min over thresholds of max(FAR, FRR) >= EER >= max of min(FAR, FRR).

    Many small random lists of heavily tied integer scores.
    """
    rng = numpy.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(2, 41))
        scores = rng.integers(-4, 5, size=n).astype(float).tolist()
        labels = rng.integers(0, 2, size=n).tolist()
        labels[0], labels[-1] = 1, 0
        points = brute_force_rates(scores, labels)
        upper = min(max(frr, far) for _, frr, far in points)
        lower = max(min(frr, far) for _, frr, far in points)
        eer = compute_eer(scores, labels)[0]
        assert lower - 1e-12 <= eer <= upper + 1e-12
        assert eer == pytest.approx(brute_force_eer(scores, labels), abs=1e-12)


def test_perfect_separation_gives_zero():
    scores = torch.tensor([0.9, 0.7, 0.65, 0.2, 0.1, -0.3])
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0
    assert threshold == pytest.approx(0.65)
    assert compute_min_dcf(scores, labels, 0.01)[0] == 0.0


def test_inverted_scores_give_one():
    scores = torch.tensor([0.9, 0.7, 0.65, 0.2, 0.1, -0.3])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert compute_eer(scores, labels)[0] == 1.0
    # Normalised: no threshold beats the best trivial system.
    for p_target in (0.01, 0.05, 0.5):
        assert compute_min_dcf(scores, labels, p_target)[0] == 1.0


def test_all_scores_tied_gives_half():
    scores = torch.zeros(10)
    labels = torch.tensor([1, 0] * 5)
    assert compute_eer(scores, labels)[0] == 0.5


def test_eer_hand_case_interpolates():
    # Sorted: 0.1 T, 0.2 N, 0.3 T, 0.4 N (2 targets, 2 non-targets).
    # Operating points (t: FRR, FAR): 0.1: 0, 1; 0.2: 1/2, 1; 0.3: 1/2, 1/2.
    # First FRR >= FAR at t = 0.3, exactly equal: EER = 1/2.
    assert compute_eer([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])[0] == 0.5
    # 3 targets, 1 non-target, sorted 0.1 T, 0.2 T, 0.3 N, 0.4 T:
    # t=0.2: FRR 1/3, FAR 1; t=0.3: FRR 2/3, FAR 1; t=0.4: FRR 2/3, FAR 0.
    # Segment (FAR 1, FRR 2/3) -> (FAR 0, FRR 2/3) crosses FAR = FRR at 2/3.
    eer = compute_eer([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 1])[0]
    assert eer == pytest.approx(2 / 3)


def test_ties_are_not_split():
    # A target and a non-target share 0.5: no threshold separates them.
    scores = [0.9, 0.5, 0.5, 0.1]
    labels = [1, 1, 0, 0]
    assert compute_eer(scores, labels)[0] == pytest.approx(0.25)
    # A threshold between the two tied trials would reach 0 cost.
    assert compute_min_dcf(scores, labels, 0.5)[0] == pytest.approx(0.5)


def test_metrics_accept_numpy_lists_and_bool_labels():
    scores, labels = random_trials(3)
    want = compute_eer(scores, labels)
    assert compute_eer(scores.numpy(), labels.numpy()) == want
    assert compute_eer(scores.tolist(), labels.bool().tolist()) == want
    assert compute_eer(scores.float(), labels.bool())[0] == pytest.approx(
        want[0]
    )


def test_metric_errors():
    with pytest.raises(ValueError, match="empty"):
        compute_eer([], [])
    with pytest.raises(ValueError, match="all 3 trials are target"):
        compute_eer([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="all 2 trials are non-target"):
        compute_min_dcf([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="NaN.*index 1"):
        compute_eer([0.1, float("nan"), 0.3], [1, 0, 1])
    with pytest.raises(ValueError, match="index 2 has label 2"):
        compute_eer([0.1, 0.2, 0.3], [1, 0, 2])
    with pytest.raises(ValueError, match="differ in length"):
        compute_eer([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="one-dimensional"):
        compute_eer(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf([0.1, 0.2], [1, 0], p_target=1.0)
    with pytest.raises(ValueError, match="positive"):
        compute_min_dcf([0.1, 0.2], [1, 0], c_fa=0.0)


def test_metrics_speed_on_600k_trials():
    """EER + minDCF of a Vox1-E/H-sized list in well under a second.

    Timed as the CPU time of one thread, so that other processes sharing
    the machine do not make the test flaky.
    """
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(600_000, generator=gen) < 0.5).long()
    scores = torch.randn(600_000, generator=gen) + 2.0 * labels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        compute_eer(scores[:1000], labels[:1000])  # warm-up
        start = time.process_time()
        eer, _ = compute_eer(scores, labels)
        compute_min_dcf(scores, labels, 0.01)
        elapsed = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    # Two unit Gaussians 2 apart: EER = Phi(-1).
    assert eer == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), abs=3e-3)
    assert elapsed < 0.75, f"EER + minDCF on 600k trials took {elapsed:.2f} s"


# ---------------------------------------------------------------------------
# Trial lists and score files
# ---------------------------------------------------------------------------


def test_read_trials(tmp_path):
    path = tmp_path / "O.txt"
    path.write_text("1 a/x/1.wav a/y/2.wav\n\n0 a/x/1.wav b/z/3.wav\n")
    trials = read_trials(path)
    assert trials.labels.tolist() == [1, 0]
    assert trials.labels.dtype == torch.int64
    assert trials.enrol == ["a/x/1.wav", "a/x/1.wav"]
    assert trials.test == ["a/y/2.wav", "b/z/3.wav"]


@pytest.mark.parametrize(
    "bad_line", ["1 a/x/1.wav", "2 a/x/1.wav b/1.wav", "1 a b c", "x a b"]
)
def test_read_trials_malformed_line_names_file_and_line(tmp_path, bad_line):
    path = tmp_path / "H.txt"
    path.write_text(f"1 a/x/1.wav a/y/2.wav\n{bad_line}\n")
    with pytest.raises(ValueError, match=r"H\.txt, line 2"):
        read_trials(path)


def test_read_trials_empty_file(tmp_path):
    path = tmp_path / "E.txt"
    path.write_text("\n")
    with pytest.raises(ValueError, match=r"E\.txt: .*no trials"):
        read_trials(path)


def test_write_scores_round_trip(tmp_path):
    path = tmp_path / "out" / "scores.txt"
    write_scores(path, ["e1", "e2"], ["t1", "t2"], [1, 0], [0.5, -1.25])
    lines = path.read_text().splitlines()
    assert lines == ["e1 t1 1 0.500000", "e2 t2 0 -1.250000"]
    with pytest.raises(ValueError, match="lengths 2, 2, 1 and 2"):
        write_scores(path, ["e1", "e2"], ["t1", "t2"], [1], [0.5, 0.1])
    trials, scores = read_scores(path)
    assert (trials.enrol, trials.test) == (["e1", "e2"], ["t1", "t2"])
    assert trials.labels.tolist() == [1, 0]
    assert scores.tolist() == [0.5, -1.25]


@pytest.mark.parametrize(
    "bad_line", ["e t 1", "e t 2 0.5", "e t 1 high", "e t 1 0.5 x"]
)
def test_read_scores_malformed_line_names_file_and_line(tmp_path, bad_line):
    path = tmp_path / "O_cosine.txt"
    path.write_text(f"e t 1 0.5\n{bad_line}\n")
    with pytest.raises(ValueError, match=r"O_cosine\.txt, line 2"):
        read_scores(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no trials"):
        read_scores(path)


def test_index_utterances():
    utts, (first, second) = index_utterances(["b", "a", "b"], ["c", "b", "a"])
    assert utts == ["b", "a", "c"]
    assert [utts[i] for i in first] == ["b", "a", "b"]
    assert [utts[i] for i in second] == ["c", "b", "a"]


# ---------------------------------------------------------------------------
# Cosine and AS-norm
# ---------------------------------------------------------------------------


def plain_cosine(a, b):
    """Cosine similarity of two vectors, written out."""
    a, b = a.tolist(), b.tolist()
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm_a = math.sqrt(sum(x * x for x in a))
    norm_b = math.sqrt(sum(y * y for y in b))
    return dot / (norm_a * norm_b)


def random_embeddings(seed, n=12, dim=5, n_trials=30):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    enrol = torch.randint(0, n, (n_trials,), generator=gen)
    test = torch.randint(0, n, (n_trials,), generator=gen)
    return emb, enrol, test


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_cosine_scores_match_reference(batch_size):
    emb, enrol, test = random_embeddings(0)
    got = cosine_scores(emb, enrol, test, batch_size=batch_size)
    want = [
        plain_cosine(emb[e], emb[t]) for e, t in zip(enrol, test, strict=True)
    ]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_cosine_scores_errors():
    emb, enrol, test = random_embeddings(0)
    with pytest.raises(IndexError, match="test_idx"):
        cosine_scores(emb, enrol, test + 100)
    with pytest.raises(ValueError, match="equal length"):
        cosine_scores(emb, enrol, test[:-1])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        cosine_scores(emb[0], enrol, test)
    assert cosine_scores(emb, enrol[:0], test[:0]).numel() == 0


def plain_asnorm(emb, enrol, test, cohort, top_n):
    """AS-norm trial by trial, written out with Python lists."""

    def stats(vector):
        cohort_scores = sorted(
            (plain_cosine(vector, c) for c in cohort), reverse=True
        )[:top_n]
        return statistics.mean(cohort_scores), statistics.stdev(cohort_scores)

    out = []
    for e, t in zip(enrol.tolist(), test.tolist(), strict=True):
        raw = plain_cosine(emb[e], emb[t])
        mean_e, std_e = stats(emb[e])
        mean_t, std_t = stats(emb[t])
        out.append(0.5 * ((raw - mean_e) / std_e + (raw - mean_t) / std_t))
    return out


@pytest.mark.parametrize("top_n,batch_size", [(3, 2), (5, 100), (50, 4)])
def test_asnorm_matches_reference(top_n, batch_size):
    emb, enrol, test = random_embeddings(1)
    cohort = torch.randn(9, 5, generator=torch.Generator().manual_seed(2))
    cohort = cohort.double()
    got = asnorm_scores(
        emb, enrol, test, cohort, top_n=top_n, batch_size=batch_size
    )
    # top_n above the cohort size uses the whole cohort.
    want = plain_asnorm(emb, enrol, test, cohort, min(top_n, 9))
    assert got.tolist() == pytest.approx(want, abs=1e-10)


def test_asnorm_errors():
    emb, enrol, test = random_embeddings(1)
    with pytest.raises(ValueError, match="top_n"):
        asnorm_scores(emb, enrol, test, torch.randn(4, 5), top_n=1)
    with pytest.raises(ValueError, match="at least 2"):
        asnorm_scores(emb, enrol, test, torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"cohort must be \[S, 5\]"):
        asnorm_scores(emb, enrol, test, torch.randn(4, 3))


def test_speaker_mean_embeddings_matches_reference():
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    speakers = ["s2", "s1", "s2", "s3", "s1", "s1", "s3", "s2", "s2", "s1"]
    for normalize in (False, True):
        means, names = speaker_mean_embeddings(emb, speakers, normalize)
        assert names == ["s1", "s2", "s3"]
        for row, name in enumerate(names):
            members = [
                emb[i] / emb[i].norm() if normalize else emb[i]
                for i, spk in enumerate(speakers)
                if spk == name
            ]
            want = sum(members) / len(members)
            assert means[row].tolist() == pytest.approx(want.tolist())
    with pytest.raises(ValueError, match="3 speaker ids given for 10"):
        speaker_mean_embeddings(emb, ["a", "b", "c"])


# ---------------------------------------------------------------------------
# PLDA
# ---------------------------------------------------------------------------


def gaussian_speakers(seed, n_speakers, per_speaker, dim=16, spread=2.0):
    """Speakers as Gaussian clusters: centre ~ N(0, spread^2), noise N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(n_speakers, dim, generator=gen)
    noise = torch.randn(n_speakers * per_speaker, dim, generator=gen)
    emb = centres.repeat_interleave(per_speaker, 0) + noise
    speakers = [f"spk{i // per_speaker}" for i in range(emb.shape[0])]
    return emb, speakers


def all_pair_trials(speakers):
    pairs = [
        (i, j)
        for i in range(len(speakers))
        for j in range(i + 1, len(speakers))
    ]
    enrol = torch.tensor([i for i, _ in pairs])
    test = torch.tensor([j for _, j in pairs])
    labels = torch.tensor([int(speakers[i] == speakers[j]) for i, j in pairs])
    return enrol, test, labels


def test_plda_separates_gaussian_speakers_and_keeps_trial_order():
    train, train_spk = gaussian_speakers(0, n_speakers=40, per_speaker=8)
    backend = PLDABackend(rank_f=10, nb_iter=5).fit(train, train_spk)
    emb, spk = gaussian_speakers(1, n_speakers=12, per_speaker=4)
    enrol, test, labels = all_pair_trials(spk)

    scores = backend.score(emb, enrol, test, batch_size=50)
    assert scores.shape == labels.shape
    assert compute_eer(scores, labels)[0] < 0.2

    # Output order follows the trial order, whatever the blocking.
    perm = torch.randperm(enrol.numel(), generator=torch.Generator())
    shuffled = backend.score(emb, enrol[perm], test[perm], batch_size=7)
    assert torch.allclose(shuffled, scores[perm], atol=1e-9)

    # Same scores as one fast_PLDA_scoring call on the full matrix.
    vectors = backend._prepare(emb)
    names = numpy.array([f"u{i}" for i in range(len(spk))], dtype=object)
    none = numpy.array([None] * len(spk))
    stat = StatObject_SB(
        modelset=names,
        segset=names,
        start=none,
        stop=none,
        stat0=numpy.ones((len(spk), 1)),
        stat1=vectors,
    )
    ndx = Ndx()
    ndx.modelset, ndx.segset = names, names
    ndx.trialmask = numpy.ones((len(spk), len(spk)), dtype=bool)
    full = fast_PLDA_scoring(
        stat,
        stat,
        ndx,
        backend.plda.mean,
        backend.plda.F,
        backend.plda.Sigma,
        check_missing=False,
    ).scoremat
    want = torch.from_numpy(full)[enrol, test]
    assert torch.allclose(scores, want, atol=1e-9)


def test_plda_without_length_norm_also_separates():
    train, train_spk = gaussian_speakers(2, n_speakers=40, per_speaker=8)
    backend = PLDABackend(rank_f=10, nb_iter=5, length_norm=False)
    backend.fit(train, train_spk)
    emb, spk = gaussian_speakers(3, n_speakers=12, per_speaker=4)
    enrol, test, labels = all_pair_trials(spk)
    assert compute_eer(backend.score(emb, enrol, test), labels)[0] < 0.2


def test_plda_errors():
    train, train_spk = gaussian_speakers(0, n_speakers=4, per_speaker=3)
    with pytest.raises(ValueError, match="more training embeddings"):
        PLDABackend(rank_f=4).fit(train, train_spk)
    with pytest.raises(ValueError, match="exceeds the embedding dimension"):
        PLDABackend(rank_f=17).fit(train, train_spk)
    with pytest.raises(RuntimeError, match="before fit"):
        PLDABackend().score(train, [0], [1])
    train, train_spk = gaussian_speakers(0, n_speakers=5, per_speaker=5)
    with pytest.raises(ValueError, match="2\\+ speakers"):
        PLDABackend(rank_f=4).fit(train, ["one"] * len(train_spk))
    backend = PLDABackend(rank_f=4, nb_iter=2).fit(train, train_spk)
    with pytest.raises(ValueError, match="dimension 8, the PLDA"):
        backend.score(train[:, :8], [0], [1])


def test_trial_lists_that_contradict_themselves(tmp_path, caplog):
    """A pair labelled both ways names both lines; repeated pairs (in
    either order) and an utterance against itself are warned about."""
    from speechbrain_trkd.trials import read_trials

    path = tmp_path / "trials.txt"
    path.write_text("1 a/1.wav b/2.wav\n0 a/1.wav c/3.wav\n0 b/2.wav a/1.wav\n")
    with pytest.raises(ValueError, match="lines 1 and 3 give the pair"):
        read_trials(path)
    path.write_text(
        "1 a/1.wav b/2.wav\n1 b/2.wav a/1.wav\n1 a/1.wav b/2.wav\n"
        "1 c/3.wav c/3.wav\n0 a/1.wav c/3.wav\n"
    )
    with caplog.at_level("WARNING"):
        trials = read_trials(path)
    assert len(trials.labels) == 5  # kept as written
    assert "repeat an earlier pair: 2 (first at line 2)" in caplog.text
    assert "an utterance with itself: 1 (first at line 4)" in caplog.text
