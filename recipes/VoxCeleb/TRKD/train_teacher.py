#!/usr/bin/env python3
"""Train or adapt a teacher and save it as a pretrained-model folder.

Two uses, one script:

* A new corpus (e.g. openspk): its training speakers are not in the Hub
  teacher's label encoder, so a new AAM head is fine-tuned for them on top of
  the pretrained ECAPA-TDNN, with the backbone frozen (default) or trained at
  a lower learning rate (``--freeze_backbone=False --backbone_lr_scale=0.1``)::

    python train_teacher.py hparams/finetune_teacher.yaml \\
        --data_folder=../shared/data/openspk \\
        --teacher_source=../shared/models/spkrec-ecapa-voxceleb

* A teacher of another family trained from scratch (a ResNet), for the
  ResNet-to-ECAPA direction::

    python train_teacher.py hparams/resnet_teacher.yaml --data_folder=...

The result (``export_folder``: hyperparams.yaml, embedding_model.ckpt,
classifier.ckpt, label_encoder.txt, README.md) is a teacher that
``train_trkd.py`` loads through the same ``Pretrainer`` path as the Hub
model: ``--teacher_source=<export_folder> --teacher_n_classes=<speakers>``.
The teacher's EER on the verification lists is reported and saved.

Authors
 * speechbrain-trkd developers 2026
"""

import os
import sys

import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_trkd.brain import DistillationBrain

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_student import export_model  # noqa: E402
from speaker_verification import load_collected  # noqa: E402
from train_trkd import run_training  # noqa: E402


class TeacherBrain(DistillationBrain):
    """Trains a speaker encoder with its AAM loss alone (no KD).

    With ``freeze_backbone`` the pretrained embedding model is neither
    updated nor allowed to move its batch-norm statistics; otherwise it is
    trained at ``backbone_lr_scale`` times the head's learning rate.

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain_trkd.losses import DistillationLoss
    >>> modules = {
    ...     "compute_features": Fbank(n_mels=80),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "embedding_model": ECAPA_TDNN(
    ...         80, channels=[8, 8, 8, 8, 24], lin_neurons=16),
    ...     "classifier": Classifier(16, out_neurons=4),
    ... }
    >>> hparams = {
    ...     "kd_loss": DistillationLoss("none"), "kd_weight": 0.0,
    ...     "compute_cost": torch.nn.Identity(),
    ...     "freeze_backbone": False, "backbone_lr_scale": 0.1,
    ... }
    >>> brain = TeacherBrain(
    ...     modules, lambda groups: torch.optim.Adam(groups, lr=1e-2),
    ...     hparams, run_opts={"device": "cpu"})
    >>> brain.init_optimizers()
    >>> [round(group["lr"], 6) for group in brain.optimizer.param_groups]
    [0.01, 0.001]
    """

    def init_optimizers(self):
        """Gives the backbone and the head their own parameter groups."""
        backbone = self.modules.embedding_model
        frozen = self.hparams.freeze_backbone
        backbone.requires_grad_(not frozen)
        groups = [{"params": list(self.modules.classifier.parameters())}]
        if not frozen:
            groups.append(
                {
                    "params": list(backbone.parameters()),
                    "lr_scale": self.hparams.backbone_lr_scale,
                }
            )
        self.optimizer = self.opt_class(groups)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def compute_forward(self, batch, stage):
        """Keeps a frozen backbone in eval mode (fit calls train() on
        every module each epoch), then runs the usual forward; with a
        teacher cache, the head reads the backbone's cached embeddings."""
        if hasattr(batch, "teacher_emb"):
            if not self.hparams.freeze_backbone:
                raise ValueError(
                    "teacher_cache holds a frozen backbone's embeddings: it "
                    "cannot fine-tune the backbone (--freeze_backbone=False)"
                )
            embeddings = batch.teacher_emb.data.to(self.device).unsqueeze(1)
            return {
                "cosine": self.modules.classifier(embeddings),
                "embeddings": embeddings,
                "lens": torch.ones(embeddings.shape[0], device=self.device),
            }
        if self.hparams.freeze_backbone:
            self.modules.embedding_model.eval()
        return super().compute_forward(batch, stage)


def backbone_embedder(hparams, device):
    """The frozen pretrained backbone, for ``cache_teacher_outputs``.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``backbone_pretrainer``,
        ``compute_features``, ``mean_var_norm``, ``embedding_model``,
        ``emb_dim``, ``freeze_backbone``).
    device : str
        Where the backbone runs.

    Returns
    -------
    embed_fn : callable
        Waveforms to embeddings, in eval mode, without gradients.
    teacher_files : list of str
        The collected backbone weights.
    emb_dim : int
        The embedding size.

    Example
    -------
    >>> backbone_embedder({"freeze_backbone": False}, "cpu")
    Traceback (most recent call last):
    ...
    ValueError: teacher_cache needs a frozen backbone ...
    """
    if not hparams["freeze_backbone"]:
        raise ValueError(
            "teacher_cache needs a frozen backbone (--freeze_backbone=True): "
            "the cache holds its embeddings, which fine-tuning would change"
        )
    pretrainer = hparams.get("backbone_pretrainer")
    if pretrainer is None:
        raise ValueError(
            "teacher_cache needs a pretrained backbone (backbone_pretrainer)"
        )
    pretrainer.collect_files()
    load_collected(pretrainer, hparams.get("teacher_sha256"))
    features = hparams["compute_features"].to(device)
    norm = hparams["mean_var_norm"].to(device)
    backbone = hparams["embedding_model"].to(device).eval()

    def embed(wavs, lens):
        return backbone(norm(features(wavs), lens), lens)

    files = [
        os.path.join(pretrainer.collect_in, f"{name}.ckpt")
        for name in pretrainer.loadables
    ]
    return embed, files, hparams["emb_dim"]


def main(argv):
    """Trains the teacher, exports it and reports its EER."""

    def load_backbone(hparams, label_encoder):
        pretrainer = hparams.get("backbone_pretrainer")
        if pretrainer is not None:
            run_on_main(pretrainer.collect_files)
            load_collected(pretrainer, hparams.get("teacher_sha256"))

    brain, hparams = run_training(
        TeacherBrain,
        argv,
        load_backbone,
        cache_embedder=backbone_embedder,
        cached_only=True,
    )
    if brain.metrics is None:  # not the main process
        return brain
    card_metrics = {
        f"{name} {backend} {metric}": round(value, 4)
        for name, per_backend in brain.metrics.items()
        for backend, values in per_backend.items()
        for metric, value in values.items()
    }
    export_model(
        hparams["embedding_model"],
        hparams["classifier"],
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["inference_hparams"],
        hparams["inference_overrides"],
        hparams["export_folder"],
        {
            "title": f"Teacher ({hparams['teacher_name']})",
            "description": hparams["teacher_description"],
            "training": {
                "data": hparams["data_folder"],
                "epochs": hparams["number_of_epochs"],
                "freeze_backbone": hparams["freeze_backbone"],
            },
            "metrics": card_metrics,
        },
    )
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
