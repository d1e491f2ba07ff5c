"""Speaker-verification scoring backends (the metrics are in
``speechbrain_trkd.metrics``, the trial lists and score files in
``speechbrain_trkd.trials``).

The backends score trials given one embedding per unique utterance
(``embeddings`` [N, D]) and, per trial, the row of its enrolment and of its
test utterance (``enrol_idx``, ``test_idx``, both [T]; see
``speechbrain_trkd.trials.index_utterances``):

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
    "asnorm_scores",
    "cosine_scores",
    "speaker_mean_embeddings",
]

# Floor on the cohort standard deviation, so that a degenerate cohort (all
# top-N scores equal) cannot divide by zero.
_MIN_COHORT_STD = 1e-12


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
