"""Decoupled knowledge distillation (DKD; Zhao et al., CVPR 2022): the
target-class term and the non-target term, weighted apart.

Authors
 * speechbrain-trkd developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _check_temperature,
    _gather_target,
    _log_softmax_pair,
    _masked_kl,
    _masked_logsumexp,
    _no_autocast,
    _prepare_pair,
    _prepare_targets,
    _target_mask,
)


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
    >>> from speechbrain_trkd.losses.kd import kd_loss
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


class DKD(Distiller):
    """DKD, :func:`dkd_loss` (options ``alpha``, ``beta``).

    Example
    -------
    >>> DKD(beta=2.0).options
    {'alpha': 1.0, 'beta': 2.0}
    """

    name = "dkd"
    loss_fn = staticmethod(dkd_loss)
    standardizable = True
