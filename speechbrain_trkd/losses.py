"""Logit and embedding distillation losses for speaker-verification students.

This module holds the Triage Knowledge Distillation loss (TRKD, Kim et al.,
ICASSP 2026, arXiv 2601.14699) together with the baselines it is compared
against: classic KD (Hinton et al., 2015), DKD (Zhao et al., CVPR 2022),
GKD (Zhao et al., AAAI 2023), NKD (Yang et al., ICCV 2023), DIST (Huang et
al., NeurIPS 2022), logit standardisation (Sun et al., CVPR 2024) and an
embedding-level cosine loss. All of them are reachable by name through
:data:`KD_METHODS` and the :class:`DistillationLoss` wrapper, which is what
the distillation Brain and the recipe YAML files use.

Conventions shared by every logit loss:

* logits are ``[B, C]`` or SpeechBrain's ``[B, 1, C]``; targets are ``[B]``
  or ``[B, 1]`` integer class indices;
* half / bfloat16 inputs are upcast and all arithmetic runs in float32 (or
  float64 when given float64), with autocast disabled inside the loss;
* the teacher logits are detached: no gradient ever reaches the teacher;
* probabilities are handled in log space (log-softmax, masked logsumexp),
  masked entries are filled with a large *finite* negative number so that
  neither the values nor the gradients can become NaN, even for logits of
  magnitude 1e4, one-class confusion sets or empty background sets;
* the returned value is a 0-dim tensor, the batch mean of the per-example
  loss.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import inspect
import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "KD_METHODS",
    "DistillationLoss",
    "dist_loss",
    "dkd_loss",
    "embedding_cosine_loss",
    "gkd_loss",
    "kd_loss",
    "nkd_loss",
    "standardize_logits",
    "triage_partition",
    "trkd_loss",
]

# Stand-in for log(0) in masked log-probabilities. It is finite, so that
# exp() gives exactly 0, 0 * (_NEG - _NEG) gives 0 and no gradient path
# ever meets an infinity; it lies far below any real log-probability.
_NEG = -1.0e30


# ---------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------
def _no_autocast(tensor):
    """Returns a context that disables autocast on the device of tensor."""
    device_type = tensor.device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _flatten_scores(tensor, name):
    """Checks a [B, C] or [B, 1, C] score tensor and returns it as [B, C]."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor)}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got {tensor.dtype}"
        )
    if tensor.dim() == 3 and tensor.shape[1] == 1:
        tensor = tensor.squeeze(1)
    if tensor.dim() != 2:
        raise ValueError(
            f"{name} must have shape [B, C] or [B, 1, C], "
            f"got {tuple(tensor.shape)}"
        )
    return tensor


def _working_dtype(*tensors):
    """Float32, or float64 when any input is float64."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _prepare_pair(student, teacher, names=("student_logits", "teacher_logits")):
    """Flattens, shape-checks, upcasts and detaches the teacher."""
    student = _flatten_scores(student, names[0])
    teacher = _flatten_scores(teacher, names[1])
    if student.shape != teacher.shape:
        raise ValueError(
            f"{names[0]} has shape {tuple(student.shape)} but {names[1]} has "
            f"shape {tuple(teacher.shape)} (after flattening [B, 1, C])"
        )
    if student.shape[1] < 2:
        raise ValueError(
            f"{names[0]} must have at least 2 classes, got {student.shape[1]}"
        )
    dtype = _working_dtype(student, teacher)
    return student.to(dtype), teacher.detach().to(dtype)


def _prepare_targets(targets, batch, num_classes):
    """Checks [B] or [B, 1] integer targets and returns them as int64 [B].

    The range check needs the values on the host, so it is only done for CPU
    tensors; on an accelerator an out-of-range target is caught by the
    device-side index check of gather / scatter.
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets)}")
    if targets.dtype.is_floating_point or targets.dtype in (
        torch.bool,
        torch.complex64,
        torch.complex128,
    ):
        raise TypeError(
            f"targets must hold integer class indices, got {targets.dtype}"
        )
    if targets.dim() == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.dim() != 1 or targets.shape[0] != batch:
        raise ValueError(
            f"targets must have shape [{batch}] or [{batch}, 1] to match the "
            f"logits, got {tuple(targets.shape)}"
        )
    targets = targets.long()
    if targets.device.type == "cpu" and batch > 0:
        bad = (targets < 0) | (targets >= num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"targets[{index}] = {int(targets[index])} is not a valid "
                f"class index for logits with {num_classes} classes"
            )
    return targets


def _check_temperature(temperature):
    """Returns the temperature as a positive float."""
    temperature = float(temperature)
    if not temperature > 0.0 or not math.isfinite(temperature):
        raise ValueError(
            f"temperature must be a positive finite number, got {temperature}"
        )
    return temperature


def _check_tau(tau):
    """Returns the triage threshold as a positive float."""
    tau = float(tau)
    if not tau > 0.0 or math.isnan(tau):
        raise ValueError(f"tau must be a positive number, got {tau}")
    return tau


def _target_mask(targets, num_classes):
    """One-hot boolean mask [B, C] of the target classes."""
    return F.one_hot(targets, num_classes).bool()


# ---------------------------------------------------------------------------
# Log-space building blocks
# ---------------------------------------------------------------------------
def _masked_logsumexp(log_p, mask):
    """Log of the summed probability over mask, per row.

    An empty mask gives about ``_NEG`` (standing for log 0) with a zero
    gradient instead of -inf and a NaN gradient.
    """
    return torch.logsumexp(log_p.masked_fill(~mask, _NEG), dim=-1)


def _masked_renormalise(log_p, mask):
    """Log of the distribution restricted to mask and renormalised.

    Entries outside the mask are set to ``_NEG``; a selected branch that is
    not used gets zero gradient from torch.where and holds finite values, so
    no NaN can come back.
    """
    log_mass = _masked_logsumexp(log_p, mask).unsqueeze(-1)
    return torch.where(mask, log_p - log_mass, torch.full_like(log_p, _NEG))


def _masked_kl(log_t, log_s, mask):
    """KL between teacher and student restricted to mask, renormalised.

    Returns 0 for rows whose mask is empty.
    """
    return F.kl_div(
        _masked_renormalise(log_s, mask),
        _masked_renormalise(log_t, mask),
        reduction="none",
        log_target=True,
    ).sum(dim=-1)


def _log_softmax_pair(student, teacher, temperature):
    """Temperature-scaled log-softmax of student and teacher logits."""
    return (
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
    )


# ---------------------------------------------------------------------------
# KD and DKD
# ---------------------------------------------------------------------------
def kd_loss(student_logits, teacher_logits, temperature=4.0):
    """Classic knowledge distillation loss (Hinton et al., 2015).

    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
    Network", NIPS Deep Learning Workshop 2015. With ``p = softmax(z / T)``
    for teacher and student, the per-example loss is
    ``T^2 * KL(p_teacher || p_student)``.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    temperature : float
        Softmax temperature T > 0.

    Returns
    -------
    torch.Tensor
        0-dim tensor, the batch mean of the per-example loss.

    Example
    -------
    >>> teacher = torch.tensor([[3.0, 1.0, 0.0]])
    >>> kd_loss(teacher.clone(), teacher, temperature=2.0)
    tensor(0.)
    >>> student = torch.tensor([[1.0, 1.0, 1.0]], requires_grad=True)
    >>> loss = kd_loss(student, teacher, temperature=1.0)
    >>> round(loss.item(), 4)
    0.5743
    >>> loss.backward()
    >>> student.grad.shape
    torch.Size([1, 3])
    """
    temperature = _check_temperature(temperature)
    with _no_autocast(student_logits):
        student, teacher = _prepare_pair(student_logits, teacher_logits)
        log_s, log_t = _log_softmax_pair(student, teacher, temperature)
        kl = F.kl_div(log_s, log_t, reduction="none", log_target=True)
        return temperature**2 * kl.sum(dim=-1).mean()


def _gather_target(log_p, targets):
    """Picks the target entry of each row: [B, C] -> [B]."""
    return log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _dkd_terms(log_s, log_t, targets, tmask):
    """Per-example TCKD and NCKD of DKD, unscaled: two [B] tensors."""
    rest = ~tmask
    masses_t = torch.stack(
        [_gather_target(log_t, targets), _masked_logsumexp(log_t, rest)],
        dim=-1,
    )
    masses_s = torch.stack(
        [_gather_target(log_s, targets), _masked_logsumexp(log_s, rest)],
        dim=-1,
    )
    tckd = F.kl_div(masses_s, masses_t, reduction="none", log_target=True)
    tckd = tckd.sum(dim=-1)
    nckd = _masked_kl(log_t, log_s, rest)
    return tckd, nckd


def dkd_loss(
    student_logits,
    teacher_logits,
    targets,
    alpha=1.0,
    beta=8.0,
    temperature=4.0,
):
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022).

    Borui Zhao, Quan Cui, Renjie Song, Yiyu Qiu and Jiajun Liang,
    "Decoupled Knowledge Distillation", CVPR 2022. With
    ``p = softmax(z / T)`` and y the target class, the per-example loss is
    ``T^2 * (alpha * TCKD + beta * NCKD)`` where
    ``TCKD = KL([p_y, 1 - p_y]_teacher || [p_y, 1 - p_y]_student)`` and
    ``NCKD = KL(q_teacher || q_student)`` with ``q_j = p_j / (1 - p_y)`` the
    non-target distribution. ``1 - p_y`` is computed as a logsumexp over the
    non-target log-probabilities, never by subtraction.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    targets : torch.Tensor
        Target class indices, [B] or [B, 1], integer.
    alpha : float
        Weight of TCKD.
    beta : float
        Weight of NCKD.
    temperature : float
        Softmax temperature T > 0.

    Returns
    -------
    torch.Tensor
        0-dim tensor, the batch mean of the per-example loss.

    Example
    -------
    >>> student = torch.tensor([[1.0, 0.5, 0.0, -1.0]])
    >>> teacher = torch.tensor([[2.0, 1.0, -1.0, 0.0]])
    >>> targets = torch.tensor([0])
    >>> loss = dkd_loss(student, teacher, targets, temperature=1.0)
    >>> round(loss.item(), 4)
    1.5291
    >>> kd = kd_loss(student, teacher, temperature=1.0)
    >>> bool(kd <= loss)
    True
    """
    temperature = _check_temperature(temperature)
    with _no_autocast(student_logits):
        student, teacher = _prepare_pair(student_logits, teacher_logits)
        targets = _prepare_targets(targets, *student.shape)
        log_s, log_t = _log_softmax_pair(student, teacher, temperature)
        tckd, nckd = _dkd_terms(
            log_s, log_t, targets, _target_mask(targets, student.shape[1])
        )
        return temperature**2 * (alpha * tckd + beta * nckd).mean()


# ---------------------------------------------------------------------------
# TRKD
# ---------------------------------------------------------------------------
def _cumsum_dtype(device):
    """Float64 for the partition's running sum, unless the device lacks it."""
    return torch.float32 if device.type == "mps" else torch.float64


@torch.no_grad()
def _partition_from_log_probs(log_t, tmask, tau):
    """Triage of the teacher's non-target classes into confusion/background.

    The renormalised non-target distribution ``q`` is built in log space
    (``log q_j = log p_j - logsumexp_{k != y} log p_k``). Classes are ranked
    by a stable descending sort of ``log q`` with the target pushed last;
    class at rank r joins the confusion set when the summed ``q`` of ranks
    ``< r`` is below tau. That exclusive running sum is exactly 0 at rank 0,
    so the confusion set always holds at least the top non-target, whatever
    the ties or the round-off; ties are broken by class index.
    """
    rest = ~tmask
    if tau >= 1.0:
        return rest.clone(), torch.zeros_like(rest)
    log_rest = _masked_logsumexp(log_t, rest).unsqueeze(-1)
    key = (log_t - log_rest).masked_fill(tmask, -math.inf)
    sorted_key, order = torch.sort(key, dim=-1, descending=True, stable=True)
    q_sorted = sorted_key.to(_cumsum_dtype(key.device)).exp()
    running = torch.cumsum(q_sorted, dim=-1)
    mass_above = torch.cat(
        [torch.zeros_like(running[:, :1]), running[:, :-1]], dim=-1
    )
    confusion = torch.zeros_like(rest).scatter(-1, order, mass_above < tau)
    confusion &= rest
    return confusion, rest & ~confusion


def triage_partition(teacher_logits, targets, tau, temperature=4.0):
    """Splits the teacher's non-target classes into confusion and background.

    With ``p = softmax(z / T)`` of the teacher and y the target, the
    non-target distribution ``q_j = p_j / (1 - p_y)`` (j != y) is sorted in
    descending order. A class belongs to the confusion set F when the summed
    ``q`` of the classes ranked above it is ``< tau``: F is the shortest
    prefix whose mass reaches tau, the crossing class included, and it is
    never empty. ``tau >= 1`` puts every non-target class in F. The remaining
    non-target classes form the background B. Ties in ``q`` are broken by
    class index (lower index ranks first).

    Arguments
    ---------
    teacher_logits : torch.Tensor
        Teacher logits, [B, C] or [B, 1, C].
    targets : torch.Tensor
        Target class indices, [B] or [B, 1], integer.
    tau : float
        Triage threshold, > 0.
    temperature : float
        Softmax temperature T > 0.

    Returns
    -------
    confusion_mask : torch.Tensor
        Bool [B, C], True for the classes in F.
    background_mask : torch.Tensor
        Bool [B, C], True for the classes in B. The target column is False in
        both masks.

    Example
    -------
    >>> probs = torch.tensor([[0.5, 0.25, 0.15, 0.1]])
    >>> targets = torch.tensor([0])
    >>> conf, back = triage_partition(probs.log(), targets, 0.6, 1.0)
    >>> conf
    tensor([[False,  True,  True, False]])
    >>> back
    tensor([[False, False, False,  True]])
    >>> triage_partition(probs.log(), targets, 0.4, 1.0)[0]
    tensor([[False,  True, False, False]])
    """
    temperature = _check_temperature(temperature)
    tau = _check_tau(tau)
    with _no_autocast(teacher_logits):
        teacher = _flatten_scores(teacher_logits, "teacher_logits").detach()
        teacher = teacher.to(_working_dtype(teacher))
        targets = _prepare_targets(targets, *teacher.shape)
        log_t = F.log_softmax(teacher / temperature, dim=-1)
        return _partition_from_log_probs(
            log_t, _target_mask(targets, teacher.shape[1]), tau
        )


class _TRKDTerms(NamedTuple):
    """Unscaled per-example TRKD terms and the partition they come from."""

    mass: torch.Tensor  # [B] KL of the 3 masses (target, F, B)
    conf: torch.Tensor  # [B] KL of the renormalised F distributions
    background: torch.Tensor | None  # [B] same over B, when requested
    teacher_log_masses: torch.Tensor  # [B, 3] log of teacher (p_y, m_F, m_B)
    confusion_mask: torch.Tensor  # [B, C] bool
    background_mask: torch.Tensor  # [B, C] bool


# The two choices of TRKD's decomposition (the paper's ablation): the
# target-side term and the non-target term.
TARGET_TERMS = ("three_mass", "binary")
NONTARGET_TERMS = ("confusion", "all")


def _check_terms(target_term, nontarget_term):
    """Raises on an unknown target-side or non-target term name."""
    if target_term not in TARGET_TERMS:
        raise ValueError(
            f"target_term must be one of {', '.join(TARGET_TERMS)}, got "
            f"{target_term!r}"
        )
    if nontarget_term not in NONTARGET_TERMS:
        raise ValueError(
            f"nontarget_term must be one of {', '.join(NONTARGET_TERMS)}, "
            f"got {nontarget_term!r}"
        )


def _trkd_terms(
    student_logits,
    teacher_logits,
    targets,
    tau,
    temperature,
    with_background=False,
    target_term="three_mass",
    nontarget_term="confusion",
):
    """Computes the TRKD terms once, for trkd_loss and DistillationLoss.

    Expects autocast to be disabled by the caller. Nothing is scaled by T^2
    or weighted by the lambdas here. ``target_term`` "binary" replaces the
    three masses by DKD's ``[p_y, 1 - p_y]``; ``nontarget_term`` "all"
    replaces the confusion-set KL by DKD's KL over every non-target.
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits)
    targets = _prepare_targets(targets, *student.shape)
    tmask = _target_mask(targets, student.shape[1])
    log_s, log_t = _log_softmax_pair(student, teacher, temperature)
    confusion, background = _partition_from_log_probs(log_t, tmask, tau)
    groups = (
        (confusion, background) if target_term == "three_mass" else (~tmask,)
    )

    def log_masses(log_p):
        return torch.stack(
            [_gather_target(log_p, targets)]
            + [_masked_logsumexp(log_p, group) for group in groups],
            dim=-1,
        )

    masses_t = log_masses(log_t)
    mass = F.kl_div(
        log_masses(log_s), masses_t, reduction="none", log_target=True
    ).sum(dim=-1)
    inside = confusion if nontarget_term == "confusion" else ~tmask
    conf = _masked_kl(log_t, log_s, inside)
    back = _masked_kl(log_t, log_s, background) if with_background else None
    return _TRKDTerms(mass, conf, back, masses_t, confusion, background)


def _trkd_weighted(
    student_logits,
    teacher_logits,
    targets,
    tau,
    temperature,
    lambda_mass,
    lambda_conf,
    target_term="three_mass",
    nontarget_term="confusion",
):
    """TRKD loss plus its two scaled terms and the confusion mask."""
    temperature = _check_temperature(temperature)
    tau = _check_tau(tau)
    _check_terms(target_term, nontarget_term)
    with _no_autocast(student_logits):
        terms = _trkd_terms(
            student_logits,
            teacher_logits,
            targets,
            tau,
            temperature,
            target_term=target_term,
            nontarget_term=nontarget_term,
        )
        scale = temperature**2
        mass_term = scale * lambda_mass * terms.mass.mean()
        conf_term = scale * lambda_conf * terms.conf.mean()
        return mass_term + conf_term, mass_term, conf_term, terms


def trkd_loss(
    student_logits,
    teacher_logits,
    targets,
    tau,
    temperature=4.0,
    lambda_mass=1.0,
    lambda_conf=8.0,
    target_term="three_mass",
    nontarget_term="confusion",
):
    """Triage knowledge distillation loss (Kim et al., ICASSP 2026).

    "Triage Knowledge Distillation", ICASSP 2026, arXiv 2601.14699. With
    ``p = softmax(z / T)`` for teacher and student, the teacher's non-target
    classes are split by :func:`triage_partition` into a confusion set F
    (shortest top prefix of the renormalised non-target distribution whose
    mass reaches tau) and a background B. Both models are then read on that
    teacher partition:

    * masses ``m = [p_y, sum_F p, sum_B p]``;
      ``L_mass = KL(m_teacher || m_student)``;
    * ``L_conf = KL(p_teacher|F || p_student|F)``, the distributions
      restricted to F and renormalised;
    * ``loss = T^2 * (lambda_mass * L_mass + lambda_conf * L_conf)``.

    The background is only distilled through its total mass. At ``tau = 1``
    (B empty) the loss equals :func:`dkd_loss` with
    ``alpha = lambda_mass`` and ``beta = lambda_conf``.

    The paper's ablation swaps each of the two terms for DKD's:
    ``target_term="binary"`` distils ``[p_y, 1 - p_y]`` (DKD's TCKD) instead
    of the three masses (TMKD), and ``nontarget_term="all"`` distils the
    distribution over every non-target (DKD's NCKD) instead of the one
    inside F (CFKD). ``binary`` with ``all`` is DKD at any tau.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    targets : torch.Tensor
        Target class indices, [B] or [B, 1], integer.
    tau : float
        Triage threshold, > 0; ``tau >= 1`` keeps every non-target in F.
    temperature : float
        Softmax temperature T > 0.
    lambda_mass : float
        Weight of the three-mass term.
    lambda_conf : float
        Weight of the confusion-set term.
    target_term : str
        "three_mass" (TMKD, TRKD's) or "binary" (DKD's TCKD).
    nontarget_term : str
        "confusion" (CFKD, TRKD's) or "all" (DKD's NCKD).

    Returns
    -------
    torch.Tensor
        0-dim tensor, the batch mean of the per-example loss.

    Example
    -------
    >>> student = torch.tensor([[1.0, 0.5, 0.0, -1.0]])
    >>> teacher = torch.tensor([[2.0, 1.0, -1.0, 0.0]])
    >>> targets = torch.tensor([0])
    >>> loss = trkd_loss(student, teacher, targets, tau=0.5, temperature=1.0)
    >>> round(loss.item(), 4)
    0.0687
    >>> mixed = trkd_loss(student, teacher, targets, tau=0.5, temperature=1.0,
    ...                   target_term="binary", nontarget_term="all")
    >>> dkd = dkd_loss(student, teacher, targets, 1.0, 8.0, temperature=1.0)
    >>> torch.allclose(mixed, dkd)
    True
    >>> full = trkd_loss(student, teacher, targets, tau=1.0, temperature=1.0)
    >>> dkd = dkd_loss(student, teacher, targets, 1.0, 8.0, temperature=1.0)
    >>> torch.allclose(full, dkd)
    True
    """
    loss, _, _, _ = _trkd_weighted(
        student_logits,
        teacher_logits,
        targets,
        tau,
        temperature,
        lambda_mass,
        lambda_conf,
        target_term,
        nontarget_term,
    )
    return loss


# ---------------------------------------------------------------------------
# Baselines: GKD, NKD, DIST, logit standardisation, embedding cosine
# ---------------------------------------------------------------------------
def gkd_loss(
    student_logits,
    teacher_logits,
    targets,
    alpha=1.0,
    beta=8.0,
    lamda=0.0,
    hcm_n=10000,
    select_by="student",
    temperature=4.0,
):
    """Grouped knowledge distillation (Zhao et al., AAAI 2023).

    Weisong Zhao, Xiangyu Zhu, Kaiwen Guo, Xiao-Yu Zhang and Zhen Lei,
    "Grouped Knowledge Distillation for Deep Face Recognition", AAAI 2023.
    The classes are split into a primary group P and a secondary group S;
    with ``p = softmax(z / T)`` the per-example loss is
    ``T^2 * (alpha * Binary-KD + beta * Primary-KD + lamda * Secondary-KD)``
    where ``Binary-KD = KL([m_P, m_S]_teacher || [m_P, m_S]_student)`` on the
    group masses, and Primary-KD / Secondary-KD are the KL divergences of the
    distributions restricted to P / S and renormalised. GKD proper drops
    Secondary-KD (``lamda = 0``).

    How the primary group is picked follows the official code
    (github.com/WisonZ/GKD, ``distillation/gkd.py``): the target logit is
    overwritten by a huge value, the raw logits are sorted in descending
    order and the first ``hcm_n`` classes form P. So P always contains the
    target plus the ``hcm_n - 1`` highest-scoring non-target classes, ranked
    by raw logits (same order as p at any T). The ``GKD`` module used for
    training there calls ``gkd_loss_student_base``, which ranks the
    *student's* logits; the file's ``gkd_loss`` ranks the teacher's instead.
    ``select_by`` chooses between the two, defaulting to the one trained
    with. The defaults ``alpha=1, beta=8, lamda=0, T=4, hcm_n=10000`` are
    the official ones; hcm_n was set there for 85,742 training identities,
    so scale it to the number of speakers (``hcm_n >= C`` makes P all
    classes, Binary-KD zero and the loss ``beta`` times :func:`kd_loss`).
    The ranking is a stable sort, ties going to the lower class index. (The
    repository's ``gkd_adaptive.py`` also sizes P per batch from a
    cumulative-probability rate; that variant is not implemented here.)

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    targets : torch.Tensor
        Target class indices, [B] or [B, 1], integer.
    alpha : float
        Weight of Binary-KD.
    beta : float
        Weight of Primary-KD.
    lamda : float
        Weight of Secondary-KD (0 in GKD).
    hcm_n : int
        Size of the primary group, target included, >= 1.
    select_by : str
        "student" or "teacher": whose logits rank the classes.
    temperature : float
        Softmax temperature T > 0.

    Returns
    -------
    torch.Tensor
        0-dim tensor, the batch mean of the per-example loss.

    Example
    -------
    >>> student = torch.tensor([[1.0, 0.5, 0.0, -1.0]])
    >>> teacher = torch.tensor([[2.0, 1.0, -1.0, 0.0]])
    >>> targets = torch.tensor([0])
    >>> loss = gkd_loss(student, teacher, targets, hcm_n=2, temperature=1.0)
    >>> round(loss.item(), 4)
    0.2563
    >>> everything = gkd_loss(student, teacher, targets, beta=1.0)
    >>> torch.allclose(everything, kd_loss(student, teacher))
    True
    """
    temperature = _check_temperature(temperature)
    if isinstance(hcm_n, bool) or int(hcm_n) != hcm_n or hcm_n < 1:
        raise ValueError(f"hcm_n must be an integer >= 1, got {hcm_n!r}")
    if select_by not in ("student", "teacher"):
        raise ValueError(
            f"select_by must be 'student' or 'teacher', got {select_by!r}"
        )
    with _no_autocast(student_logits):
        student, teacher = _prepare_pair(student_logits, teacher_logits)
        targets = _prepare_targets(targets, *student.shape)
        num_classes = student.shape[1]
        tmask = _target_mask(targets, num_classes)
        ranking = student if select_by == "student" else teacher
        key = ranking.detach().masked_fill(tmask, math.inf)
        order = torch.sort(key, dim=-1, descending=True, stable=True)[1]
        top = order[:, : min(int(hcm_n), num_classes)]
        primary = torch.zeros_like(tmask).scatter(-1, top, True)
        secondary = ~primary
        log_s, log_t = _log_softmax_pair(student, teacher, temperature)

        def group_masses(log_p):
            return torch.stack(
                [
                    _masked_logsumexp(log_p, primary),
                    _masked_logsumexp(log_p, secondary),
                ],
                dim=-1,
            )

        binary = F.kl_div(
            group_masses(log_s),
            group_masses(log_t),
            reduction="none",
            log_target=True,
        ).sum(dim=-1)
        per_example = alpha * binary + beta * _masked_kl(log_t, log_s, primary)
        if lamda != 0:
            per_example = per_example + lamda * _masked_kl(
                log_t, log_s, secondary
            )
        return temperature**2 * per_example.mean()


def nkd_loss(
    student_logits, teacher_logits, targets, temperature=1.0, gamma=1.5
):
    """Normalized knowledge distillation (Yang et al., ICCV 2023).

    Zhendong Yang, Ailing Zeng, Zhe Li, Tianke Zhang, Chun Yuan and Yu Li,
    "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
    Approach with Normalized Loss and Customized Soft Labels", ICCV 2023.
    With ``p = softmax(z)`` (no temperature) for the target part and the
    non-target distribution ``q_j = softmax(z / T)_j / (1 - softmax(z /
    T)_y)`` (j != y), the per-example loss is
    ``-p_y^teacher * log p_y^student
    - gamma * T^2 * sum_{j != y} q_j^teacher * log q_j^student``.
    As in the official code (github.com/yzd-v/cls_KD,
    ``mmcls/distillation/losses/nkd.py``) both parts are cross-entropies,
    not KL divergences, and the defaults are ``T = 1``, ``gamma = 1.5``.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    targets : torch.Tensor
        Target class indices, [B] or [B, 1], integer.
    temperature : float
        Temperature T > 0 of the non-target part.
    gamma : float
        Weight of the non-target part.

    Returns
    -------
    torch.Tensor
        0-dim tensor, the batch mean of the per-example loss.

    Example
    -------
    >>> student = torch.tensor([[1.0, 0.5, 0.0, -1.0]])
    >>> teacher = torch.tensor([[2.0, 1.0, -1.0, 0.0]])
    >>> targets = torch.tensor([0])
    >>> round(nkd_loss(student, teacher, targets).item(), 4)
    2.0051
    """
    temperature = _check_temperature(temperature)
    with _no_autocast(student_logits):
        student, teacher = _prepare_pair(student_logits, teacher_logits)
        targets = _prepare_targets(targets, *student.shape)
        tmask = _target_mask(targets, student.shape[1])
        log_s1 = _gather_target(F.log_softmax(student, dim=-1), targets)
        log_t1 = _gather_target(F.log_softmax(teacher, dim=-1), targets)
        target_part = -log_t1.exp() * log_s1
        log_s, log_t = _log_softmax_pair(student, teacher, temperature)
        rest = ~tmask
        # At the target both are _NEG: exp gives 0 and the product is 0.
        log_q_t = _masked_renormalise(log_t, rest)
        log_q_s = _masked_renormalise(log_s, rest)
        cross = -(log_q_t.exp() * log_q_s).sum(-1)
        per_example = target_part + gamma * temperature**2 * cross
        return per_example.mean()


def _pearson_rows(a, b, eps=1e-8):
    """Pearson correlation of matching rows, as in the DIST code."""
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    norms = torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(
        b, dim=-1
    )
    return (a * b).sum(-1) / (norms + eps)


def dist_loss(
    student_logits, teacher_logits, beta=1.0, gamma=1.0, temperature=1.0
):
    """DIST relational distillation (Huang et al., NeurIPS 2022).

    Tao Huang, Shan You, Fei Wang, Chen Qian and Chang Xu, "Knowledge
    Distillation from A Stronger Teacher", NeurIPS 2022. With
    ``Y = softmax(Z / T)`` ([B, C]) for teacher and student and
    ``rho(u, v)`` the Pearson correlation,
    ``inter = 1 - mean_b rho(Y_s[b, :], Y_t[b, :])`` (inter-class relation,
    per example across classes) and
    ``intra = 1 - mean_c rho(Y_s[:, c], Y_t[:, c])`` (intra-class relation,
    per class across the batch); the loss is
    ``T^2 * (beta * inter + gamma * intra)``. It is a batch-level loss, not
    a mean of per-example terms, and with a batch of one the intra-class
    correlation is undefined and taken as 0. Defaults ``beta = gamma = 1``,
    ``T = 1`` and the Pearson ``eps = 1e-8`` (``rho = u.v / (|u||v| +
    eps)`` after centring) follow the official code
    (github.com/hunto/image_classification_sota,
    ``lib/models/losses/dist_kd.py``).

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, [B, C] or [B, 1, C].
    teacher_logits : torch.Tensor
        Teacher logits, same shape (detached inside).
    beta : float
        Weight of the inter-class relation.
    gamma : float
        Weight of the intra-class relation.
    temperature : float
        Softmax temperature T > 0.

    Returns
    -------
    torch.Tensor
        0-dim tensor.

    Example
    -------
    >>> teacher = torch.tensor([[2.0, 1.0, -1.0], [0.0, 1.0, 3.0]])
    >>> bool(dist_loss(teacher.clone(), teacher) < 1e-5)
    True
    >>> round(dist_loss(-teacher, teacher).item(), 4)
    3.8076
    """
    temperature = _check_temperature(temperature)
    with _no_autocast(student_logits):
        student, teacher = _prepare_pair(student_logits, teacher_logits)
        y_s = F.softmax(student / temperature, dim=-1)
        y_t = F.softmax(teacher / temperature, dim=-1)
        inter = 1.0 - _pearson_rows(y_s, y_t).mean()
        intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()
        return temperature**2 * (beta * inter + gamma * intra)


def standardize_logits(logits, eps=1e-7):
    """Per-example z-score of logits over classes (Sun et al., CVPR 2024).

    Shangquan Sun, Wenqi Ren, Jingzhi Li, Rui Wang and Xiaochun Cao, "Logit
    Standardization in Knowledge Distillation", CVPR 2024. Each logit
    vector is mapped to ``(z - mean(z)) / (eps + std(z))`` over the class
    dimension (the last one), with the unbiased standard deviation as in the
    official code. Applied to both teacher and student before a softmax KD
    loss, it lets the student match the teacher's logit *relations* rather
    than their scale. Half / bfloat16 inputs are upcast to float32.

    Arguments
    ---------
    logits : torch.Tensor
        Logits, [..., C] with C >= 2 (e.g. [B, C] or [B, 1, C]).
    eps : float
        Added to the standard deviation.

    Returns
    -------
    torch.Tensor
        Standardised logits, same shape, float32 (float64 for float64 input).

    Example
    -------
    >>> z = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    >>> out = standardize_logits(z)
    >>> torch.allclose(out, torch.tensor([[-1.0, 0.0, 1.0]]).expand(2, 3))
    True
    >>> standardize_logits(z.unsqueeze(1)).shape
    torch.Size([2, 1, 3])
    """
    if (
        not isinstance(logits, torch.Tensor)
        or not logits.dtype.is_floating_point
    ):
        raise TypeError("logits must be a floating-point torch.Tensor")
    if logits.dim() == 0 or logits.shape[-1] < 2:
        raise ValueError(
            "logits must have at least 2 classes in the last dimension, "
            f"got shape {tuple(logits.shape)}"
        )
    with _no_autocast(logits):
        z = logits.to(_working_dtype(logits))
        mean = z.mean(dim=-1, keepdim=True)
        std = z.std(dim=-1, keepdim=True)
        return (z - mean) / (eps + std)


def embedding_cosine_loss(student_emb, teacher_emb):
    """Embedding-level cosine distillation loss.

    The batch mean of ``1 - cos(e_student, e_teacher)``: the student
    embedding is pulled towards the direction of the teacher's, which is what
    cosine scoring of speaker verification looks at. Both embeddings must
    have the same dimension (add a projection to the student otherwise).

    Arguments
    ---------
    student_emb : torch.Tensor
        Student embeddings, [B, D] or [B, 1, D].
    teacher_emb : torch.Tensor
        Teacher embeddings, same shape (detached inside).

    Returns
    -------
    torch.Tensor
        0-dim tensor in [0, 2].

    Example
    -------
    >>> teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> embedding_cosine_loss(3.0 * teacher, teacher)
    tensor(0.)
    >>> embedding_cosine_loss(torch.tensor([[0.0, 1.0], [0.0, -1.0]]), teacher)
    tensor(1.5000)
    """
    names = ("student_emb", "teacher_emb")
    with _no_autocast(student_emb):
        student = _flatten_scores(student_emb, names[0])
        teacher = _flatten_scores(teacher_emb, names[1])
        if student.shape != teacher.shape:
            raise ValueError(
                f"student_emb has shape {tuple(student.shape)} but "
                f"teacher_emb has shape {tuple(teacher.shape)}"
            )
        dtype = _working_dtype(student, teacher)
        cos = F.cosine_similarity(
            student.to(dtype), teacher.detach().to(dtype), dim=-1, eps=1e-8
        )
        return (1.0 - cos).mean()


# ---------------------------------------------------------------------------
# Registry and wrapper
# ---------------------------------------------------------------------------
KD_METHODS = {
    "kd": kd_loss,
    "dkd": dkd_loss,
    "trkd": trkd_loss,
    "gkd": gkd_loss,
    "nkd": nkd_loss,
    "dist": dist_loss,
    "emb_cos": embedding_cosine_loss,
}

# Methods whose inputs may be logit-standardised (Sun et al., CVPR 2024).
_STANDARDIZABLE = ("kd", "dkd", "trkd")

# Arguments the wrapper supplies itself; they cannot be given as options.
_DATA_ARGS = (
    "student_logits",
    "teacher_logits",
    "targets",
    "tau",
    "temperature",
    "student_emb",
    "teacher_emb",
)


class DistillationLoss(torch.nn.Module):
    """Distillation loss selected by name, as used by the recipe YAML.

    Wraps the functions of :data:`KD_METHODS` ("kd", "dkd", "trkd", "gkd",
    "nkd", "dist", "emb_cos"), or "none" for no distillation, behind one
    call that also returns detached statistics for logging.

    Arguments
    ---------
    method : str
        Name in :data:`KD_METHODS`, or "none".
    temperature : float
        Temperature given to every method that takes one.
    standardize : bool
        Apply :func:`standardize_logits` to both logits first (only for
        "kd", "dkd" and "trkd").
    **options
        Hyperparameters of the selected loss function, e.g. ``alpha`` and
        ``beta`` for "dkd", ``lambda_mass`` and ``lambda_conf`` for "trkd",
        ``hcm_n`` for "gkd". Checked against its signature here. The special
        option ``method_options`` may hold a mapping from method names to
        such option dicts (as in the recipe YAML, so that switching
        ``method`` switches the options too); only the entry of the selected
        method is used, and an option may not be given both ways.

    Example
    -------
    >>> criterion = DistillationLoss("trkd", temperature=2.0, lambda_conf=4.0)
    >>> criterion.uses_tau
    True
    >>> student = torch.randn(4, 1, 10, requires_grad=True)
    >>> teacher = torch.randn(4, 1, 10)
    >>> targets = torch.tensor([[1], [2], [3], [4]])
    >>> loss, stats = criterion(student, teacher, targets, tau=0.5)
    >>> sorted(stats)
    ['conf_size', 'kd', 'kd_conf', 'kd_mass']
    >>> torch.allclose(loss, stats["kd_mass"] + stats["kd_conf"])
    True
    >>> loss.backward()
    >>> DistillationLoss("none")(student, teacher, targets)
    (tensor(0.), {})
    >>> per_method = {"dkd": {"beta": 2.0}, "trkd": {"lambda_conf": 3.0}}
    >>> DistillationLoss("dkd", method_options=per_method).options
    {'alpha': 1.0, 'beta': 2.0}
    """

    def __init__(
        self, method="trkd", temperature=4.0, standardize=False, **options
    ):
        super().__init__()
        if method != "none" and method not in KD_METHODS:
            known = ", ".join(["none", *KD_METHODS])
            raise ValueError(
                f"unknown distillation method {method!r}; known: {known}"
            )
        if standardize and method not in _STANDARDIZABLE:
            raise ValueError(
                f"standardize=True applies to {', '.join(_STANDARDIZABLE)} "
                f"only, not to method {method!r}"
            )
        self.method = method
        self.temperature = _check_temperature(temperature)
        self.standardize = bool(standardize)
        self.uses_tau = method == "trkd"
        self.loss_fn = KD_METHODS.get(method)
        params = (
            inspect.signature(self.loss_fn).parameters if self.loss_fn else {}
        )
        tunable = {
            name: p.default
            for name, p in params.items()
            if name not in _DATA_ARGS
        }
        options = {**self._options_for(method, options), **options}
        for name in options:
            if name not in tunable:
                allowed = ", ".join(tunable) or "none"
                raise TypeError(
                    f"DistillationLoss got an unexpected option {name!r} for "
                    f"method {method!r}; its options are: {allowed}"
                )
        self.options = {**tunable, **options}
        self._takes_targets = "targets" in params
        self._takes_temperature = "temperature" in params

    @staticmethod
    def _options_for(method, options):
        """Pops ``method_options`` from options; returns the method's entry.

        Arguments
        ---------
        method : str
            The selected method.
        options : dict
            Keyword options given to the constructor; ``method_options`` is
            removed from it.

        Returns
        -------
        dict
            The options listed for ``method`` (empty when none are).

        Example
        -------
        >>> given = {"method_options": {"kd": {}, "dkd": {"alpha": 0.5}}}
        >>> DistillationLoss._options_for("dkd", given), given
        ({'alpha': 0.5}, {})
        """
        per_method = options.pop("method_options", None)
        if per_method is None:
            return {}
        if not isinstance(per_method, Mapping):
            raise TypeError(
                "method_options must map method names to option dicts, got "
                f"{type(per_method).__name__}"
            )
        for name, entry in per_method.items():
            if name != "none" and name not in KD_METHODS:
                known = ", ".join(["none", *KD_METHODS])
                raise ValueError(
                    f"method_options has an entry for unknown method "
                    f"{name!r}; known: {known}"
                )
            if entry is not None and not isinstance(entry, Mapping):
                raise TypeError(
                    f"method_options[{name!r}] must be a dict of options, "
                    f"got {type(entry).__name__}"
                )
        chosen = dict(per_method.get(method) or {})
        for name in chosen:
            if name in options:
                raise TypeError(
                    f"option {name!r} for method {method!r} is given both in "
                    "method_options and as a keyword"
                )
        return chosen

    def extra_repr(self):
        """Summary shown by print(module).

        Returns
        -------
        str
            Method, temperature, standardisation and options.

        Example
        -------
        >>> DistillationLoss("dkd", beta=2.0).extra_repr()
        "method='dkd', temperature=4.0, standardize=False, alpha=1.0, beta=2.0"
        """
        parts = [
            f"method={self.method!r}",
            f"temperature={self.temperature}",
            f"standardize={self.standardize}",
        ]
        parts += [f"{name}={value!r}" for name, value in self.options.items()]
        return ", ".join(parts)

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """Computes the selected distillation loss and its statistics.

        Arguments
        ---------
        student_logits : torch.Tensor
            Student logits, [B, C] or [B, 1, C].
        teacher_logits : torch.Tensor
            Teacher logits, same shape (never receives gradient).
        targets : torch.Tensor
            Target class indices, [B] or [B, 1].
        tau : float
            Triage threshold, used by "trkd" only.
        student_emb : torch.Tensor, optional
            Student embeddings [B, D] or [B, 1, D], needed by "emb_cos".
        teacher_emb : torch.Tensor, optional
            Teacher embeddings, same shape, needed by "emb_cos".

        Returns
        -------
        loss : torch.Tensor
            0-dim loss; a float32 zero for "none".
        stats : dict
            Detached 0-dim tensors: "kd" (the loss) for every method but
            "none"; for "trkd" also "kd_mass" and "kd_conf" (the two
            T^2-scaled, lambda-weighted terms) and "conf_size" (mean size
            of the confusion set over the batch).

        Example
        -------
        >>> criterion = DistillationLoss("dkd", temperature=2.0, beta=4.0)
        >>> student, teacher = torch.randn(3, 1, 6), torch.randn(3, 1, 6)
        >>> targets = torch.tensor([0, 5, 2])
        >>> loss, stats = criterion(student, teacher, targets)
        >>> expected = dkd_loss(student, teacher, targets, beta=4.0,
        ...                     temperature=2.0)
        >>> torch.allclose(loss, expected), list(stats)
        (True, ['kd'])
        >>> emb = torch.randn(3, 1, 8)
        >>> loss, _ = DistillationLoss("emb_cos")(
        ...     student, teacher, targets, student_emb=2.0 * emb,
        ...     teacher_emb=emb)
        >>> bool(loss.abs() < 1e-6)
        True
        """
        if self.method == "none":
            device = (
                student_logits.device
                if isinstance(student_logits, torch.Tensor)
                else None
            )
            return torch.zeros((), dtype=torch.float32, device=device), {}
        if self.method == "emb_cos":
            if student_emb is None or teacher_emb is None:
                raise ValueError(
                    "method 'emb_cos' needs student_emb and teacher_emb"
                )
            loss = self.loss_fn(student_emb, teacher_emb)
            return loss, {"kd": loss.detach()}
        if self.standardize:
            student_logits = standardize_logits(student_logits)
            teacher_logits = standardize_logits(teacher_logits.detach())
        if self.method == "trkd":
            loss, mass_term, conf_term, terms = _trkd_weighted(
                student_logits,
                teacher_logits,
                targets,
                tau,
                self.temperature,
                self.options["lambda_mass"],
                self.options["lambda_conf"],
                self.options["target_term"],
                self.options["nontarget_term"],
            )
            stats = {
                "kd": loss.detach(),
                "kd_mass": mass_term.detach(),
                "kd_conf": conf_term.detach(),
                "conf_size": terms.confusion_mask.sum(-1).float().mean(),
            }
            return loss, stats
        kwargs = dict(self.options)
        if self._takes_targets:
            kwargs["targets"] = targets
        if self._takes_temperature:
            kwargs["temperature"] = self.temperature
        loss = self.loss_fn(student_logits, teacher_logits, **kwargs)
        return loss, {"kd": loss.detach()}
