"""Classic knowledge distillation (Hinton et al., 2015).

Authors
 * speechbrain-trkd developers 2026
"""

import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _check_temperature,
    _log_softmax_pair,
    _no_autocast,
    _prepare_pair,
)


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
    >>> import torch
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


class KD(Distiller):
    """Classic KD, :func:`kd_loss`.

    Example
    -------
    >>> KD(temperature=2.0).options
    {}
    """

    name = "kd"
    loss_fn = staticmethod(kd_loss)
    standardizable = True
