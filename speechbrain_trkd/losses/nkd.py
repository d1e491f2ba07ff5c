"""Normalized knowledge distillation (NKD; Yang et al., ICCV 2023).

Authors
 * speechbrain-trkd developers 2026
"""

import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _check_temperature,
    _gather_target,
    _log_softmax_pair,
    _masked_renormalise,
    _no_autocast,
    _prepare_pair,
    _prepare_targets,
    _target_mask,
)


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
    >>> import torch
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


class NKD(Distiller):
    """NKD, :func:`nkd_loss`.

    Example
    -------
    >>> NKD().options
    {'gamma': 1.5}
    """

    name = "nkd"
    loss_fn = staticmethod(nkd_loss)
