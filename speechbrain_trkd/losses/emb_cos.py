"""Embedding-level distillation: one minus the cosine between the student's
and the teacher's embeddings.

Authors
 * speechbrain-trkd developers 2026
"""

import torch.nn.functional as F

from speechbrain_trkd.losses.base import Distiller
from speechbrain_trkd.losses.common import (
    _flatten_scores,
    _no_autocast,
    _working_dtype,
)


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
    >>> import torch
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


class EmbeddingCosine(Distiller):
    """Embedding cosine distillation, :func:`embedding_cosine_loss`; it
    reads the embeddings, not the logits.

    Example
    -------
    >>> import torch
    >>> emb = torch.randn(3, 1, 8)
    >>> loss, stats = EmbeddingCosine()(None, None, None, student_emb=2 * emb,
    ...                                 teacher_emb=emb)
    >>> bool(loss.abs() < 1e-6), list(stats)
    (True, ['kd'])
    """

    name = "emb_cos"
    loss_fn = staticmethod(embedding_cosine_loss)
    uses_embeddings = True

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """The loss on the embeddings, which must be given."""
        if student_emb is None or teacher_emb is None:
            raise ValueError(
                "method 'emb_cos' needs student_emb and teacher_emb"
            )
        loss = self.loss_fn(student_emb, teacher_emb)
        return loss, {"kd": loss.detach()}
