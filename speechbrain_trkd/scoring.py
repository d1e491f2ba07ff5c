"""Speaker-verification scoring: error metrics, trial I/O and backends.

The metrics (:func:`compute_eer`, :func:`compute_min_dcf`) sweep every
decision threshold of a trial list with a single sort of the scores, so they
take well under a second on the 580k-trial VoxCeleb1-E/H lists.

The backends score trials given one embedding per unique utterance
(``embeddings`` [N, D]) and, per trial, the row of its enrolment and of its
test utterance (``enrol_idx``, ``test_idx``, both [T]; see
:func:`index_utterances`):

* :func:`cosine_scores`: cosine similarity;
* :func:`asnorm_scores`: adaptive symmetric score normalisation of the cosine
  score against a speaker-level cohort (:func:`speaker_mean_embeddings`);
* :class:`PLDABackend`: a PLDA model trained with
  ``speechbrain.processing.PLDA_LDA``.

Decision convention used throughout: a trial is accepted when its score is
greater than or equal to the threshold.

Authors
 * speechbrain-trkd developers 2026
"""

import logging
import math
import os
from typing import NamedTuple

import numpy
import torch
import torch.nn.functional as F
from speechbrain.processing.PLDA_LDA import (
    PLDA,
    Ndx,
    StatObject_SB,
    fast_PLDA_scoring,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PLDABackend",
    "Trials",
    "asnorm_scores",
    "compute_eer",
    "compute_min_dcf",
    "cosine_scores",
    "det_curve",
    "index_utterances",
    "read_scores",
    "read_trials",
    "speaker_mean_embeddings",
    "write_scores",
]

# Floor on the cohort standard deviation, so that a degenerate cohort (all
# top-N scores equal) cannot divide by zero.
_MIN_COHORT_STD = 1e-12


# ---------------------------------------------------------------------------
# Error metrics
# ---------------------------------------------------------------------------


def _as_1d_tensor(values, name):
    """Converts a sequence, array or tensor to a 1-D CPU tensor."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().cpu()
    else:
        tensor = torch.as_tensor(numpy.asarray(values))
    if tensor.ndim != 1:
        raise ValueError(
            f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}"
        )
    return tensor


def _check_scores_labels(scores, labels):
    """Validates trial scores and labels; returns float64 and bool tensors."""
    scores = _as_1d_tensor(scores, "scores")
    labels = _as_1d_tensor(labels, "labels")
    if scores.numel() != labels.numel():
        raise ValueError(
            f"scores and labels differ in length: {scores.numel()} scores, "
            f"{labels.numel()} labels"
        )
    if scores.numel() == 0:
        raise ValueError("no trials: scores and labels are empty")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"scores must be real numbers, got {scores.dtype}")
    scores = scores.to(torch.float64)
    nan = torch.isnan(scores)
    if nan.any():
        first = int(nan.nonzero()[0, 0])
        raise ValueError(
            f"scores contain {int(nan.sum())} NaN value(s), the first at "
            f"trial index {first}"
        )
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            "labels must be 1 (target) or 0 (non-target); trial index "
            f"{first} has label {labels[first].item()!r}"
        )
    labels = labels == 1
    n_target = int(labels.sum())
    if n_target == 0 or n_target == labels.numel():
        kind = "target" if n_target else "non-target"
        raise ValueError(
            f"both target and non-target trials are needed; all "
            f"{labels.numel()} trials are {kind}"
        )
    return scores, labels


def _operating_points(scores, labels):
    """Miss and false-alarm rates at every distinct decision threshold.

    One stable sort of the scores; the counts below each threshold come from
    cumulative sums taken at the first position of each group of tied scores,
    so tied scores are never split by a threshold.

    Arguments
    ---------
    scores : torch.Tensor
        Float64 scores [T] without NaN.
    labels : torch.Tensor
        Bool labels [T] (True = target), both classes present.

    Returns
    -------
    thresholds : torch.Tensor
        The distinct scores in increasing order, then ``+inf`` (reject all).
    frr : torch.Tensor
        False-rejection rate at each threshold (non-decreasing).
    far : torch.Tensor
        False-acceptance rate at each threshold (non-increasing).
    """
    sorted_scores, order = torch.sort(scores, stable=True)
    sorted_target = labels[order].to(torch.int64)
    n_trials = sorted_scores.numel()
    n_target = int(sorted_target.sum())
    n_nontarget = n_trials - n_target

    group_start = torch.ones(n_trials, dtype=torch.bool)
    group_start[1:] = sorted_scores[1:] != sorted_scores[:-1]
    starts = group_start.nonzero().squeeze(1)

    # Targets strictly below position k of the sorted list.
    targets_before = torch.cumsum(sorted_target, 0) - sorted_target
    targets_below = torch.cat(
        [targets_before[starts], torch.tensor([n_target])]
    )
    trials_below = torch.cat([starts, torch.tensor([n_trials])])
    nontargets_below = trials_below - targets_below

    frr = targets_below.to(torch.float64) / n_target
    far = (n_nontarget - nontargets_below).to(torch.float64) / n_nontarget
    thresholds = torch.cat(
        [sorted_scores[starts], torch.tensor([math.inf], dtype=torch.float64)]
    )
    return thresholds, frr, far


# Kept over SpeechBrain's EER / minDCF (benchmarks/scoring_speed.py): on 580k
# trials its EER took 1384 s to our 0.075 s (18,509x); its minDCF would need
# about 2.7 TB there, and at 16k trials it is 5,078x slower than ours.
def compute_eer(scores, labels):
    """Equal error rate of a list of verification trials.

    Every distinct score is a candidate threshold (accept when
    ``score >= threshold``), plus ``+inf`` (reject everything); tied scores
    are therefore always on the same side of the threshold. Along these
    operating points the false-rejection rate (FRR) never decreases and the
    false-acceptance rate (FAR) never increases. The EER is where the two
    cross: with ``i`` the first operating point where FRR >= FAR, it is the
    intersection of the line FRR = FAR with the straight segment joining the
    operating points ``i - 1`` and ``i`` in the (FAR, FRR) plane. It lies
    between the two points' rates, and never exceeds
    ``min over thresholds of max(FAR, FRR)``.

    Arguments
    ---------
    scores : torch.Tensor or array-like
        One score per trial [T]; higher means "same speaker".
    labels : torch.Tensor or array-like
        One label per trial [T]: 1 for target, 0 for non-target.

    Returns
    -------
    eer : float
        The equal error rate as a fraction in [0, 1] (not a percentage).
    threshold : float
        The threshold of whichever of the two operating points is nearer the
        crossing (the lower one when exactly midway). It can be ``inf`` only
        when the reject-all point is nearest.

    Example
    -------
    >>> scores = torch.tensor([0.9, 0.8, 0.3, 0.4, 0.1, 0.2])
    >>> labels = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> eer, threshold = compute_eer(scores, labels)
    >>> round(eer, 4), round(threshold, 4)
    (0.3333, 0.4)
    >>> compute_eer([0.9, 0.8, 0.1], [1, 1, 0])
    (0.0, 0.8)
    """
    scores, labels = _check_scores_labels(scores, labels)
    thresholds, frr, far = _operating_points(scores, labels)
    gap = frr - far  # non-decreasing, from -1 (accept all) to 1 (reject all)
    crossing = int(torch.searchsorted(gap, torch.zeros(1, dtype=gap.dtype)))
    before, after = gap[crossing - 1], gap[crossing]
    weight = before / (before - after)
    eer = frr[crossing - 1] + weight * (frr[crossing] - frr[crossing - 1])
    nearest = crossing if weight > 0.5 else crossing - 1
    return float(eer), float(thresholds[nearest])


def det_curve(scores, labels):
    """Miss and false-alarm rates at every decision threshold (DET curve).

    The operating points :func:`compute_eer` and :func:`compute_min_dcf`
    sweep: every distinct score (accept when ``score >= threshold``), then
    ``+inf`` (reject everything).

    Arguments
    ---------
    scores : torch.Tensor or array-like
        One score per trial [T]; higher means "same speaker".
    labels : torch.Tensor or array-like
        One label per trial [T]: 1 for target, 0 for non-target.

    Returns
    -------
    thresholds : torch.Tensor
        The distinct scores in increasing order, then ``+inf`` (float64).
    frr : torch.Tensor
        False-rejection (miss) rate at each threshold, non-decreasing.
    far : torch.Tensor
        False-acceptance rate at each threshold, non-increasing.

    Example
    -------
    >>> thresholds, frr, far = det_curve([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    >>> thresholds.tolist(), frr.tolist(), far.tolist()
    ([0.1, 0.4, 0.9, inf], [0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 0.0, 0.0])
    """
    scores, labels = _check_scores_labels(scores, labels)
    return _operating_points(scores, labels)


def compute_min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost of a list of verification trials.

    The detection cost at a threshold is
    ``c_miss * p_target * FRR + c_fa * (1 - p_target) * FAR``; it is divided
    by ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the
    better of the two trivial systems (accept all / reject all), and
    minimised over the same thresholds as :func:`compute_eer` (every distinct
    score with ``score >= threshold`` accepted, plus ``+inf``).

    Arguments
    ---------
    scores : torch.Tensor or array-like
        One score per trial [T]; higher means "same speaker".
    labels : torch.Tensor or array-like
        One label per trial [T]: 1 for target, 0 for non-target.
    p_target : float
        Prior probability of a target trial, in (0, 1).
    c_miss : float
        Cost of a missed target (positive).
    c_fa : float
        Cost of a false acceptance (positive).

    Returns
    -------
    min_dcf : float
        The normalised minimum detection cost (at most 1).
    threshold : float
        The threshold reaching it (the lowest one on a tie); ``inf`` when
        rejecting everything is best.

    Example
    -------
    >>> scores = torch.tensor([0.9, 0.8, 0.3, 0.4, 0.1, 0.2])
    >>> labels = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> min_dcf, threshold = compute_min_dcf(scores, labels, p_target=0.5)
    >>> round(min_dcf, 4), round(threshold, 4)
    (0.3333, 0.3)
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(
            f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}"
        )
    scores, labels = _check_scores_labels(scores, labels)
    thresholds, frr, far = _operating_points(scores, labels)
    miss_weight = c_miss * p_target
    fa_weight = c_fa * (1.0 - p_target)
    dcf = (miss_weight * frr + fa_weight * far) / min(miss_weight, fa_weight)
    best = int(torch.argmin(dcf))
    return float(dcf[best]), float(thresholds[best])


# ---------------------------------------------------------------------------
# Trial lists
# ---------------------------------------------------------------------------


class Trials(NamedTuple):
    """A verification trial list, as read by :func:`read_trials`.

    Attributes
    ----------
    labels : torch.Tensor
        Int64 labels [T]: 1 for target, 0 for non-target.
    enrol : list of str
        Enrolment utterance of each trial (path relative to ``wav/``).
    test : list of str
        Test utterance of each trial (path relative to ``wav/``).

    Example
    -------
    >>> trials = Trials(torch.tensor([1, 0]), ["a/1.wav"] * 2, ["a/2", "b/1"])
    >>> len(trials.enrol)
    2
    """

    labels: torch.Tensor
    enrol: list
    test: list


def read_trials(path):
    """Reads a VoxCeleb-format trial list (lines ``label enrol test``).

    Blank lines are skipped. The label must be ``1`` (target) or ``0``
    (non-target); the two utterances are kept as written (VoxCeleb gives them
    relative to the ``wav/`` folder).

    Arguments
    ---------
    path : str or os.PathLike
        The trial list file.

    Returns
    -------
    Trials
        Labels (int64 tensor), enrolment and test utterance lists.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "O.txt")
    ...     with open(path, "w") as f:
    ...         _ = f.write("1 s1/a/1.wav s1/b/2.wav\\n")
    ...         _ = f.write("0 s1/a/1.wav s2/c/1.wav\\n")
    ...     trials = read_trials(path)
    >>> trials.labels.tolist(), trials.test
    ([1, 0], ['s1/b/2.wav', 's2/c/1.wav'])
    """
    labels, enrol, test = [], [], []
    seen = {}  # unordered pair -> (label, line number)
    repeats, self_trials = [], []
    with open(path, encoding="utf-8") as trial_file:
        for line_number, line in enumerate(trial_file, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise ValueError(
                    f"{path}, line {line_number}: expected 'label enrol test' "
                    f"with label 0 or 1, got {line.strip()!r}"
                )
            label, pair = int(fields[0]), frozenset(fields[1:])
            if pair in seen:
                first_label, first_line = seen[pair]
                if first_label != label:
                    raise ValueError(
                        f"{path}: lines {first_line} and {line_number} give "
                        f"the pair {fields[1]} / {fields[2]} the labels "
                        f"{first_label} and {label}: keep the right one"
                    )
                repeats.append(line_number)
            seen.setdefault(pair, (label, line_number))
            if fields[1] == fields[2]:
                self_trials.append(line_number)
            labels.append(label)
            enrol.append(fields[1])
            test.append(fields[2])
    if not labels:
        raise ValueError(f"{path}: the trial list holds no trials")
    _warn_odd_trials(path, repeats, self_trials)
    return Trials(torch.tensor(labels, dtype=torch.int64), enrol, test)


def _warn_odd_trials(path, repeats, self_trials):
    """Warns about repeated trials and trials of an utterance with itself:
    each still counts in the EER as written."""
    if repeats:
        logger.warning(
            "%s: trials that repeat an earlier pair: %d (first at line %d); "
            "each copy counts in the EER",
            path,
            len(repeats),
            repeats[0],
        )
    if self_trials:
        logger.warning(
            "%s: trials of an utterance with itself: %d (first at line %d); "
            "they score a perfect match",
            path,
            len(self_trials),
            self_trials[0],
        )


def write_scores(path, enrol_ids, test_ids, labels, scores):
    """Writes trial scores as lines ``enrol test label score``.

    Arguments
    ---------
    path : str or os.PathLike
        Output file; its folder is created when missing.
    enrol_ids : list of str
        Enrolment utterance of each trial.
    test_ids : list of str
        Test utterance of each trial.
    labels : torch.Tensor or array-like
        Label of each trial (1 target, 0 non-target).
    scores : torch.Tensor or array-like
        Score of each trial.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "scores.txt")
    ...     write_scores(path, ["a/1"], ["b/2"], [1], torch.tensor([0.25]))
    ...     print(open(path).read().strip())
    a/1 b/2 1 0.250000
    """
    labels = _as_1d_tensor(labels, "labels").tolist()
    scores = _as_1d_tensor(scores, "scores").tolist()
    lengths = {len(enrol_ids), len(test_ids), len(labels), len(scores)}
    if len(lengths) != 1:
        raise ValueError(
            f"cannot write {path}: enrol_ids, test_ids, labels and scores "
            f"have lengths {len(enrol_ids)}, {len(test_ids)}, {len(labels)} "
            f"and {len(scores)}"
        )
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    lines = (
        f"{e} {t} {int(y)} {s:.6f}\n"
        for e, t, y, s in zip(enrol_ids, test_ids, labels, scores, strict=True)
    )
    with open(path, "w", encoding="utf-8") as score_file:
        score_file.writelines(lines)


def read_scores(path):
    """Reads a score file written by :func:`write_scores`.

    Arguments
    ---------
    path : str or os.PathLike
        Lines ``enrol test label score``.

    Returns
    -------
    trials : Trials
        Labels (int64 tensor), enrolment and test utterances.
    scores : torch.Tensor
        Float64 score of each trial [T].

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "scores.txt")
    ...     write_scores(path, ["a/1", "a/1"], ["b/2", "c/3"], [1, 0],
    ...                  torch.tensor([0.5, -0.25]))
    ...     trials, scores = read_scores(path)
    >>> trials.labels.tolist(), trials.test, scores.tolist()
    ([1, 0], ['b/2', 'c/3'], [0.5, -0.25])
    """
    labels, enrol, test, scores = [], [], [], []
    with open(path, encoding="utf-8") as score_file:
        for line_number, line in enumerate(score_file, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 4 or fields[2] not in ("0", "1"):
                    raise ValueError
                score = float(fields[3])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_number}: expected 'enrol test label "
                    f"score' with label 0 or 1, got {line.strip()!r}"
                ) from None
            enrol.append(fields[0])
            test.append(fields[1])
            labels.append(int(fields[2]))
            scores.append(score)
    if not labels:
        raise ValueError(f"{path}: the score file holds no trials")
    trials = Trials(torch.tensor(labels, dtype=torch.int64), enrol, test)
    return trials, torch.tensor(scores, dtype=torch.float64)


def index_utterances(*id_lists):
    """Maps utterance ids to rows of a table of unique utterances.

    Trials name utterances; embeddings are computed once per unique
    utterance. This gives the unique utterances (in order of first
    appearance across the lists) and, for each input list, the row of each
    of its entries.

    Arguments
    ---------
    *id_lists : list of str
        One or more lists of utterance ids (e.g. the enrolment and the test
        side of a trial list).

    Returns
    -------
    utterances : list of str
        The unique ids, in order of first appearance.
    indices : list of torch.Tensor
        One int64 tensor per input list, indexing ``utterances``.

    Example
    -------
    >>> utts, (enrol_idx, test_idx) = index_utterances(
    ...     ["a", "a", "b"], ["b", "c", "a"]
    ... )
    >>> utts, enrol_idx.tolist(), test_idx.tolist()
    (['a', 'b', 'c'], [0, 0, 1], [1, 2, 0])
    """
    row_of = {}
    indices = []
    for ids in id_lists:
        rows = [row_of.setdefault(utt, len(row_of)) for utt in ids]
        indices.append(torch.tensor(rows, dtype=torch.int64))
    return list(row_of), indices


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


def _check_trial_indices(embeddings, enrol_idx, test_idx):
    """Validates [N, D] embeddings and the [T] trial index tensors."""
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}"
        )
    enrol_idx = torch.as_tensor(enrol_idx, dtype=torch.int64)
    test_idx = torch.as_tensor(test_idx, dtype=torch.int64)
    if enrol_idx.shape != test_idx.shape or enrol_idx.ndim != 1:
        raise ValueError(
            "enrol_idx and test_idx must be 1-D of equal length, got shapes "
            f"{tuple(enrol_idx.shape)} and {tuple(test_idx.shape)}"
        )
    n_rows = embeddings.shape[0]
    for name, idx in (("enrol_idx", enrol_idx), ("test_idx", test_idx)):
        if idx.numel() and (idx.min() < 0 or idx.max() >= n_rows):
            raise IndexError(
                f"{name} holds rows outside [0, {n_rows}) of the embeddings"
            )
    device = embeddings.device
    return enrol_idx.to(device), test_idx.to(device)


def _check_batch_size(batch_size):
    """Rejects non-positive batch sizes."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return int(batch_size)


def cosine_scores(embeddings, enrol_idx, test_idx, batch_size=65536):
    """Cosine similarity of each trial's enrolment and test embeddings.

    Arguments
    ---------
    embeddings : torch.Tensor
        One embedding per unique utterance [N, D].
    enrol_idx : torch.Tensor
        Row of each trial's enrolment utterance [T] (int64).
    test_idx : torch.Tensor
        Row of each trial's test utterance [T] (int64).
    batch_size : int
        Trials scored at once (bounds the gathered [batch, D] pairs).

    Returns
    -------
    torch.Tensor
        One score per trial [T], in trial order.

    Example
    -------
    >>> emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    >>> cosine_scores(emb, torch.tensor([0, 0]), torch.tensor([1, 2]))
    tensor([1., 0.])
    """
    enrol_idx, test_idx = _check_trial_indices(embeddings, enrol_idx, test_idx)
    batch_size = _check_batch_size(batch_size)
    unit = F.normalize(embeddings, dim=1)
    scores = [
        (
            unit[enrol_idx[i : i + batch_size]]
            * unit[test_idx[i : i + batch_size]]
        ).sum(dim=1)
        for i in range(0, enrol_idx.numel(), batch_size)
    ]
    if not scores:
        return embeddings.new_zeros(0)
    return torch.cat(scores)


def speaker_mean_embeddings(embeddings, speaker_ids, normalize=True):
    """Averages the embeddings of each speaker (a speaker-level cohort).

    Arguments
    ---------
    embeddings : torch.Tensor
        Utterance embeddings [N, D].
    speaker_ids : list of str
        The speaker of each embedding (length N).
    normalize : bool
        If True, each utterance embedding is scaled to unit length before
        averaging, so that every utterance weighs the same in the mean
        direction (the mean itself is not re-normalised; cosine scoring
        ignores its length).

    Returns
    -------
    means : torch.Tensor
        One mean embedding per speaker [S, D].
    speakers : list of str
        The speaker of each row of ``means``, sorted.

    Example
    -------
    >>> emb = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> means, spk = speaker_mean_embeddings(emb, ["b", "b", "a"], False)
    >>> spk, means.tolist()
    (['a', 'b'], [[0.0, 2.0], [2.0, 0.0]])
    """
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}"
        )
    if len(speaker_ids) != embeddings.shape[0]:
        raise ValueError(
            f"{len(speaker_ids)} speaker ids given for "
            f"{embeddings.shape[0]} embeddings"
        )
    if not len(speaker_ids):
        raise ValueError("no embeddings to average: speaker_ids is empty")
    speakers = sorted(set(speaker_ids))
    row_of = {spk: row for row, spk in enumerate(speakers)}
    rows = torch.tensor(
        [row_of[spk] for spk in speaker_ids], device=embeddings.device
    )
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    sums = embeddings.new_zeros(len(speakers), embeddings.shape[1])
    sums.index_add_(0, rows, embeddings)
    counts = torch.bincount(rows, minlength=len(speakers))
    return sums / counts.unsqueeze(1).to(sums.dtype), speakers


def _cohort_statistics(unit_embeddings, unit_cohort, top_n, batch_size):
    """Mean and std of each embedding's top-N cosine scores to the cohort."""
    means, stds = [], []
    for start in range(0, unit_embeddings.shape[0], batch_size):
        block = unit_embeddings[start : start + batch_size] @ unit_cohort.T
        top = torch.topk(block, top_n, dim=1, sorted=False).values
        means.append(top.mean(dim=1))
        stds.append(top.std(dim=1).clamp_min(_MIN_COHORT_STD))
    return torch.cat(means), torch.cat(stds)


def asnorm_scores(
    embeddings, enrol_idx, test_idx, cohort, top_n=300, batch_size=4096
):
    """Cosine scores normalised with adaptive symmetric normalisation.

    AS-norm (Cumani et al., 2011; Matejka et al., 2017): for each utterance
    ``u`` of a trial, its cosine scores against every cohort entry are
    computed and the ``top_n`` highest kept; their mean ``mu_u`` and
    standard deviation ``sigma_u`` (unbiased, N - 1 denominator) normalise
    the raw cosine score ``s``::

        s_norm = ((s - mu_enrol) / sigma_enrol + (s - mu_test) / sigma_test) / 2

    The cohort statistics are computed once per unique utterance that
    appears in a trial, ``batch_size`` utterances at a time with
    ``torch.topk`` (memory ``batch_size * n_cohort``).

    Arguments
    ---------
    embeddings : torch.Tensor
        One embedding per unique utterance [N, D].
    enrol_idx : torch.Tensor
        Row of each trial's enrolment utterance [T] (int64).
    test_idx : torch.Tensor
        Row of each trial's test utterance [T] (int64).
    cohort : torch.Tensor
        Cohort embeddings [S, D], e.g. one mean per training speaker from
        :func:`speaker_mean_embeddings`.
    top_n : int
        Number of highest cohort scores used per utterance (at least 2);
        a ``top_n`` above the cohort size uses the whole cohort.
    batch_size : int
        Utterances whose cohort scores are computed at once.

    Returns
    -------
    torch.Tensor
        One normalised score per trial [T], in trial order.

    Example
    -------
    >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> cohort = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]])
    >>> scores = asnorm_scores(emb, [0, 0], [1, 2], cohort, top_n=2)
    >>> scores.shape
    torch.Size([2])
    >>> bool(scores[0] > scores[1])
    True
    """
    enrol_idx, test_idx = _check_trial_indices(embeddings, enrol_idx, test_idx)
    batch_size = _check_batch_size(batch_size)
    if cohort.ndim != 2 or cohort.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"cohort must be [S, {embeddings.shape[1]}], got shape "
            f"{tuple(cohort.shape)}"
        )
    if cohort.shape[0] < 2:
        raise ValueError(
            f"AS-norm needs a cohort of at least 2 entries, got "
            f"{cohort.shape[0]}"
        )
    if top_n < 2:
        raise ValueError(f"top_n must be at least 2, got {top_n}")
    top_n = min(int(top_n), cohort.shape[0])

    unit = F.normalize(embeddings, dim=1)
    unit_cohort = F.normalize(cohort.to(unit), dim=1)
    used, inverse = torch.unique(
        torch.cat([enrol_idx, test_idx]), return_inverse=True
    )
    mean, std = _cohort_statistics(unit[used], unit_cohort, top_n, batch_size)
    n_trials = enrol_idx.numel()
    enrol_rows, test_rows = inverse[:n_trials], inverse[n_trials:]

    raw = cosine_scores(unit, enrol_idx, test_idx)
    enrol_norm = (raw - mean[enrol_rows]) / std[enrol_rows]
    test_norm = (raw - mean[test_rows]) / std[test_rows]
    return 0.5 * (enrol_norm + test_norm)


def _object_array(strings):
    """A numpy object array of strings, as PLDA_LDA expects for ids."""
    array = numpy.empty(len(strings), dtype=object)
    array[:] = list(strings)
    return array


def _stat_object(ids, vectors):
    """Packs float64 vectors [N, D] and their ids in a StatObject_SB."""
    ids = _object_array(ids)
    no_bounds = numpy.array([None] * len(ids))
    return StatObject_SB(
        modelset=ids,
        segset=ids,
        start=no_bounds,
        stop=no_bounds,
        stat0=numpy.ones((len(ids), 1)),
        stat1=vectors,
    )


class PLDABackend:
    """PLDA scoring of embeddings with ``speechbrain.processing.PLDA_LDA``.

    :meth:`fit` trains SpeechBrain's simplified PLDA (eigenvoice matrix of
    rank ``rank_f`` plus a full residual covariance, trained by EM) on
    training-speaker embeddings; :meth:`score` computes the PLDA
    log-likelihood ratio of each trial with ``fast_PLDA_scoring``.

    With ``length_norm`` (Garcia-Romero and Espy-Wilson, 2011) every
    embedding is first centred on the training mean and scaled to unit
    length, which makes the embeddings closer to the Gaussian assumption of
    PLDA.

    Arguments
    ---------
    rank_f : int
        Rank of the speaker (eigenvoice) subspace; at most the embedding
        dimension.
    nb_iter : int
        EM iterations.
    scaling_factor : float
        Statistic scaling passed to SpeechBrain's PLDA and scorer.
    length_norm : bool
        Centre on the training mean and L2-normalise before PLDA.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> centres = 3.0 * torch.randn(8, 4, generator=gen)
    >>> noise = torch.randn(48, 4, generator=gen)
    >>> train = centres.repeat_interleave(6, 0) + noise
    >>> spk = [f"spk{i // 6}" for i in range(48)]
    >>> backend = PLDABackend(rank_f=3).fit(train, spk)
    >>> emb = torch.stack([centres[0], centres[0] + 0.1, centres[1]])
    >>> scores = backend.score(emb, torch.tensor([0, 0]), torch.tensor([1, 2]))
    >>> bool(scores[0] > scores[1])
    True
    """

    def __init__(
        self, rank_f=100, nb_iter=10, scaling_factor=1.0, length_norm=True
    ):
        if rank_f < 1 or nb_iter < 1:
            raise ValueError(
                f"rank_f and nb_iter must be positive, got {rank_f} and "
                f"{nb_iter}"
            )
        self.rank_f = int(rank_f)
        self.nb_iter = int(nb_iter)
        self.scaling_factor = float(scaling_factor)
        self.length_norm = bool(length_norm)
        self.center = None
        self.plda = None

    def _prepare(self, embeddings):
        """Float64 numpy vectors after the optional length normalisation."""
        vectors = embeddings.detach().to("cpu", torch.float64)
        if self.length_norm:
            vectors = F.normalize(vectors - self.center, dim=1)
        return vectors.numpy()

    def fit(self, embeddings, speaker_ids):
        """Trains the PLDA model on training-speaker embeddings.

        Arguments
        ---------
        embeddings : torch.Tensor
            Training embeddings [N, D]; N must exceed D so that the
            covariance estimates are invertible.
        speaker_ids : list of str
            The speaker of each embedding (at least 2 speakers).

        Returns
        -------
        PLDABackend
            ``self``, trained.

        Example
        -------
        >>> gen = torch.Generator().manual_seed(0)
        >>> train = torch.randn(40, 3, generator=gen)
        >>> spk = [str(i % 5) for i in range(40)]
        >>> backend = PLDABackend(rank_f=2).fit(train, spk)
        >>> backend.plda.F.shape
        (3, 2)
        """
        if embeddings.ndim != 2:
            raise ValueError(
                "PLDA training embeddings must be [N, D], got shape "
                f"{tuple(embeddings.shape)}"
            )
        n_vectors, dim = embeddings.shape
        if len(speaker_ids) != n_vectors:
            raise ValueError(
                f"{len(speaker_ids)} speaker ids given for {n_vectors} "
                "PLDA training embeddings"
            )
        if self.rank_f > dim:
            raise ValueError(
                f"rank_f={self.rank_f} exceeds the embedding dimension {dim}"
            )
        if n_vectors <= dim:
            raise ValueError(
                f"PLDA needs more training embeddings than dimensions: got "
                f"{n_vectors} embeddings of dimension {dim}"
            )
        if len(set(speaker_ids)) < 2:
            raise ValueError("PLDA needs training embeddings of 2+ speakers")
        self.center = embeddings.detach().to("cpu", torch.float64).mean(0)
        vectors = self._prepare(embeddings)
        stats = _stat_object([str(spk) for spk in speaker_ids], vectors)
        stats.segset = _object_array([f"utt{i}" for i in range(n_vectors)])
        self.plda = PLDA(
            rank_f=self.rank_f,
            nb_iter=self.nb_iter,
            scaling_factor=self.scaling_factor,
        )
        self.plda.plda(stats)
        return self

    def score(self, embeddings, enrol_idx, test_idx, batch_size=2048):
        """PLDA log-likelihood ratio of each trial.

        Trials are sorted by enrolment utterance and scored ``batch_size``
        at a time: each call of ``fast_PLDA_scoring`` fills the matrix of the
        batch's unique enrolment by unique test utterances (at most
        ``batch_size`` squared entries), from which the batch's trials are
        gathered.

        Arguments
        ---------
        embeddings : torch.Tensor
            One embedding per unique utterance [N, D].
        enrol_idx : torch.Tensor
            Row of each trial's enrolment utterance [T] (int64).
        test_idx : torch.Tensor
            Row of each trial's test utterance [T] (int64).
        batch_size : int
            Trials scored per call of ``fast_PLDA_scoring``.

        Returns
        -------
        torch.Tensor
            One float64 score per trial [T] (CPU), in trial order.

        Example
        -------
        >>> gen = torch.Generator().manual_seed(0)
        >>> train = torch.randn(40, 3, generator=gen)
        >>> spk = [str(i % 5) for i in range(40)]
        >>> backend = PLDABackend(rank_f=2).fit(train, spk)
        >>> backend.score(train[:4], [0, 1], [2, 3]).shape
        torch.Size([2])
        """
        if self.plda is None:
            raise RuntimeError("PLDABackend.score called before fit")
        enrol_idx, test_idx = _check_trial_indices(
            embeddings, enrol_idx, test_idx
        )
        batch_size = _check_batch_size(batch_size)
        if embeddings.shape[1] != self.center.numel():
            raise ValueError(
                f"embeddings have dimension {embeddings.shape[1]}, the PLDA "
                f"model was trained on dimension {self.center.numel()}"
            )
        vectors = self._prepare(embeddings)
        enrol_idx, test_idx = enrol_idx.cpu(), test_idx.cpu()
        order = torch.argsort(enrol_idx, stable=True)
        scores = torch.empty(enrol_idx.numel(), dtype=torch.float64)
        for start in range(0, order.numel(), batch_size):
            trials = order[start : start + batch_size]
            scores[trials] = self._score_block(
                vectors, enrol_idx[trials], test_idx[trials]
            )
        return scores

    def _score_block(self, vectors, enrol_idx, test_idx):
        """Scores one block of trials with a single fast_PLDA_scoring call."""
        enrol_rows, enrol_pos = torch.unique(enrol_idx, return_inverse=True)
        test_rows, test_pos = torch.unique(test_idx, return_inverse=True)
        enrol_names = [f"e{row}" for row in enrol_rows.tolist()]
        test_names = [f"t{row}" for row in test_rows.tolist()]
        enrol = _stat_object(enrol_names, vectors[enrol_rows.numpy()])
        test = _stat_object(test_names, vectors[test_rows.numpy()])
        ndx = Ndx()
        ndx.modelset = _object_array(enrol_names)
        ndx.segset = _object_array(test_names)
        ndx.trialmask = numpy.ones((len(enrol_names), len(test_names)), bool)
        result = fast_PLDA_scoring(
            enrol,
            test,
            ndx,
            self.plda.mean,
            self.plda.F,
            self.plda.Sigma,
            scaling_factor=self.scaling_factor,
            check_missing=False,
        )
        matrix = torch.from_numpy(numpy.asarray(result.scoremat))
        return matrix[enrol_pos, test_pos]
