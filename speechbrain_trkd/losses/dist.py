"""DIST (Huang et al., NeurIPS 2022): inter- and intra-class correlation of
the softened predictions.

Authors
 * speechbrain-trkd developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _check_temperature,
    _no_autocast,
    _prepare_pair,
)


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


class DIST(Distiller):
    """DIST, :func:`dist_loss`.

    Example
    -------
    >>> DIST().options
    {'beta': 1.0, 'gamma': 1.0}
    """

    name = "dist"
    loss_fn = staticmethod(dist_loss)
