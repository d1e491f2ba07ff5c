"""Logit standardisation (Sun et al., CVPR 2024), applied before KD, DKD or
TRKD.

Authors
 * speechbrain-trkd developers 2026
"""

import torch

from speechbrain_trkd.losses.common import (
    _no_autocast,
    _working_dtype,
)


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
