"""Logit and embedding distillation losses for speaker-verification students.

The Triage Knowledge Distillation loss (TRKD, Kim et al., ICASSP 2026,
arXiv 2601.14699) and the baselines it is compared against, one file each:
classic KD (``kd``, Hinton et al., 2015), DKD (``dkd``, Zhao et al., CVPR
2022), GKD (``gkd``, Zhao et al., AAAI 2023), NKD (``nkd``, Yang et al.,
ICCV 2023), DIST (``dist``, Huang et al., NeurIPS 2022), logit
standardisation (``standardize``, Sun et al., CVPR 2024) and an
embedding-level cosine loss (``emb_cos``). Each file holds the reference
loss function and a small :class:`~speechbrain_trkd.losses.base.Distiller`
class; ``registry`` maps names to classes (``DISTILLERS``), names the
paper's ablation rows and a fixed-tau TRKD (``CONFIGURATIONS``), and holds
the :class:`DistillationLoss` wrapper that the distillation Brain and the
recipe YAML files use.

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

from speechbrain_trkd.losses.dist import dist_loss
from speechbrain_trkd.losses.dkd import dkd_loss
from speechbrain_trkd.losses.emb_cos import embedding_cosine_loss
from speechbrain_trkd.losses.gkd import gkd_loss
from speechbrain_trkd.losses.kd import kd_loss
from speechbrain_trkd.losses.nkd import nkd_loss
from speechbrain_trkd.losses.registry import (
    CONFIGURATIONS,
    DISTILLERS,
    KD_METHODS,
    DistillationLoss,
)
from speechbrain_trkd.losses.standardize import standardize_logits
from speechbrain_trkd.losses.trkd import triage_partition, trkd_loss

__all__ = [
    "CONFIGURATIONS",
    "DISTILLERS",
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
