"""Triage knowledge distillation (TRKD; Kim et al., ICASSP 2026): the
teacher's non-target classes cut at cumulative mass tau into a confusion
set and a background; the three masses and the distribution inside the
confusion set are distilled.

Authors
 * speechbrain-trkd developers 2026
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _check_tau,
    _check_temperature,
    _flatten_scores,
    _gather_target,
    _log_softmax_pair,
    _masked_kl,
    _masked_logsumexp,
    _no_autocast,
    _prepare_pair,
    _prepare_targets,
    _target_mask,
    _working_dtype,
)


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
    >>> from speechbrain_trkd.losses.dkd import dkd_loss
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


class TRKD(Distiller):
    """TRKD, :func:`trkd_loss`, with the curriculum's tau or a fixed one.

    Arguments
    ---------
    temperature : float
        Softmax temperature.
    fixed_tau : float, optional
        A constant cutoff instead of the curriculum's (then ``uses_tau`` is
        False).
    **options
        ``lambda_mass``, ``lambda_conf``, ``target_term``,
        ``nontarget_term``.

    Example
    -------
    >>> method = TRKD(temperature=2.0, lambda_conf=4.0)
    >>> student, teacher = torch.randn(4, 10), torch.randn(4, 10)
    >>> targets = torch.tensor([1, 2, 3, 4])
    >>> loss, stats = method(student, teacher, targets, tau=0.5)
    >>> sorted(stats)
    ['conf_size', 'kd', 'kd_conf', 'kd_mass']
    >>> fixed = TRKD(temperature=2.0, lambda_conf=4.0, fixed_tau=0.5)
    >>> fixed.uses_tau, bool(fixed(student, teacher, targets, tau=0.9)[0]
    ...                       == loss)
    (False, True)
    """

    name = "trkd"
    loss_fn = staticmethod(trkd_loss)
    uses_tau = True
    standardizable = True

    def __init__(self, temperature=4.0, fixed_tau=None, **options):
        super().__init__(temperature, **options)
        self.fixed_tau = None if fixed_tau is None else _check_tau(fixed_tau)
        self.uses_tau = self.fixed_tau is None

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """The loss, its two weighted terms and the mean confusion-set
        size."""
        loss, mass_term, conf_term, terms = _trkd_weighted(
            student_logits,
            teacher_logits,
            targets,
            tau if self.fixed_tau is None else self.fixed_tau,
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
