"""The ``Brain`` of a speaker encoder trained with its own AAM loss.

``SpeakerBrain`` trains ``compute_features``, ``mean_var_norm``,
``embedding_model`` and ``classifier`` on labelled waveforms (optionally
augmented), keeps the checkpoint with the lowest validation error, and can
freeze the pretrained backbone (or train it at a fraction of the head's
learning rate). It is the teacher's Brain, and the base of
``DistillationBrain``, which adds only what distillation needs.

Authors
 * speechbrain-trkd developers 2026
"""

import json

import speechbrain as sb
import torch
from speechbrain.nnet.losses import classification_error
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.metric_stats import MetricStats

from speechbrain_trkd.robust_brain import RobustBrain

STUDENT_MODULES = (
    "compute_features",
    "mean_var_norm",
    "embedding_model",
    "classifier",
)


@register_checkpoint_hooks
class EpochAverages:
    """Running sums of per-step statistics, averaged at the end of an epoch.

    Values are added as (detached) tensors and stay on their device, so no
    step forces a host-device synchronisation; ``averages`` converts once.
    It is a checkpoint recoverable, so an epoch resumed from an intra-epoch
    checkpoint still averages over all of its steps.

    Example
    -------
    >>> averages = EpochAverages()
    >>> averages.add({"kd": torch.tensor(1.0), "conf_size": torch.tensor(4.0)})
    >>> averages.add({"kd": torch.tensor(3.0)})
    >>> averages.averages()
    {'kd': 2.0, 'conf_size': 4.0}
    >>> averages.reset()
    >>> averages.averages()
    {}
    """

    def __init__(self):
        self.sums = {}
        self.counts = {}

    def reset(self):
        """Forgets all statistics (start of an epoch).

        Example
        -------
        >>> averages = EpochAverages()
        >>> averages.add({"kd": torch.tensor(1.0)})
        >>> averages.reset()
        >>> averages.counts
        {}
        """
        self.sums = {}
        self.counts = {}

    def add(self, stats):
        """Adds one step's statistics.

        Arguments
        ---------
        stats : dict
            Name to 0-dim tensor (or float); tensors are detached.

        Example
        -------
        >>> averages = EpochAverages()
        >>> averages.add({"loss": torch.tensor(2.0, requires_grad=True)})
        >>> averages.sums["loss"].requires_grad
        False
        """
        for name, value in stats.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(
                        f"statistic {name!r} must be a scalar, got shape "
                        f"{tuple(value.shape)}"
                    )
                value = value.detach().float().reshape(())
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def averages(self):
        """Returns the mean of every statistic as Python floats.

        Returns
        -------
        dict
            Name to average over the steps that reported it.

        Example
        -------
        >>> averages = EpochAverages()
        >>> averages.add({"tau": 0.5})
        >>> averages.averages()
        {'tau': 0.5}
        """
        if not self.sums:
            return {}
        names = list(self.sums)
        device = next(
            (v.device for v in self.sums.values() if torch.is_tensor(v)),
            torch.device("cpu"),
        )
        totals = torch.stack(
            [
                torch.as_tensor(
                    self.sums[n], dtype=torch.float32, device=device
                )
                for n in names
            ]
        )
        counts = torch.tensor(
            [self.counts[n] for n in names], dtype=torch.float32, device=device
        )
        return dict(zip(names, (totals / counts).tolist(), strict=True))

    @mark_as_saver
    def save(self, path):
        """Writes the running sums and counts to ``path`` (JSON).

        Arguments
        ---------
        path : str or pathlib.Path
            File to write.

        Example
        -------
        >>> import os, tempfile
        >>> averages = EpochAverages()
        >>> averages.add({"kd": torch.tensor(1.5)})
        >>> path = os.path.join(tempfile.mkdtemp(), "stats.json")
        >>> averages.save(path)
        >>> restored = EpochAverages()
        >>> restored.load(path)
        >>> restored.averages()
        {'kd': 1.5}
        """
        sums = {name: float(value) for name, value in self.sums.items()}
        with open(path, "w", encoding="utf-8") as fout:
            json.dump({"sums": sums, "counts": self.counts}, fout)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores running sums and counts written by ``save``.

        Arguments
        ---------
        path : str or pathlib.Path
            File to read.
        end_of_epoch : bool
            Unused: a new epoch resets the sums anyway.

        Example
        -------
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "stats.json")
        >>> EpochAverages().save(path)
        >>> EpochAverages().load(path)
        """
        del end_of_epoch
        with open(path, encoding="utf-8") as fin:
            saved = json.load(fin)
        try:
            sums = {str(k): float(v) for k, v in saved["sums"].items()}
            counts = {str(k): int(v) for k, v in saved["counts"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(
                f"{path}: not a statistics file written by EpochAverages"
            ) from err
        if set(sums) != set(counts):
            raise ValueError(f"{path}: statistics and counts do not match")
        self.sums = sums
        self.counts = counts


class SpeakerBrain(RobustBrain):
    """Trains a speaker encoder with its AAM loss.

    Batches carry ``id``, ``sig`` and ``spk_id_encoded`` (or, for a head on
    a frozen backbone, the backbone's cached embeddings ``teacher_emb``).
    The train log holds, per epoch, the loss and the statistics averaged
    over the epoch's steps; validation reports the loss and the
    classification error rate, and the checkpoint with the lowest
    ``ErrorRate`` is kept.

    Arguments
    ---------
    modules : dict of torch.nn.Module
        ``compute_features``, ``mean_var_norm``, ``embedding_model`` and
        ``classifier`` (more are allowed).
    opt_class : callable
        Called with the parameters (or parameter groups) to build the
        optimizer.
    hparams, run_opts, checkpointer
        As for ``speechbrain.core.Brain``.
    compute_cost : callable
        ``compute_cost(cosine, targets, lens)``, e.g. AAM softmax.
    wav_augment : speechbrain.augment.augmenter.Augmenter, optional
        Applied to training batches.
    freeze_backbone : bool
        Keep the embedding model as it is (no update, batch-norm statistics
        fixed in eval mode).
    backbone_lr_scale : float, optional
        The backbone's learning rate over the head's, in its own parameter
        group; None (and no frozen backbone): one group for everything.
    **schedules
        ``lr_annealing``, ``lr_step_schedule``, ``lr_warmup_epochs`` and
        ``train_logger`` of ``RobustBrain``.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.processing.features import InputNormalization
    >>> modules = {
    ...     "compute_features": Fbank(n_mels=80),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "embedding_model": ECAPA_TDNN(
    ...         80, channels=[8, 8, 8, 8, 24], lin_neurons=16),
    ...     "classifier": Classifier(16, out_neurons=4),
    ... }
    >>> brain = SpeakerBrain(
    ...     modules, lambda groups: torch.optim.Adam(groups, lr=1e-2),
    ...     run_opts={"device": "cpu"}, compute_cost=torch.nn.Identity(),
    ...     freeze_backbone=False, backbone_lr_scale=0.1)
    >>> brain.init_optimizers()
    >>> [round(group["lr"], 6) for group in brain.optimizer.param_groups]
    [0.01, 0.001]
    """

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
        *,
        compute_cost,
        wav_augment=None,
        freeze_backbone=False,
        backbone_lr_scale=None,
        **schedules,
    ):
        super().__init__(
            modules, opt_class, hparams, run_opts, checkpointer, **schedules
        )
        self.compute_cost = compute_cost
        self.wav_augment = wav_augment
        self.freeze_backbone = bool(freeze_backbone)
        self.backbone_lr_scale = (
            None if backbone_lr_scale is None else float(backbone_lr_scale)
        )
        self._check_modules()
        self.train_stats = None
        self.epoch_averages = EpochAverages()
        if self.checkpointer is not None:
            # The name of the first releases, so that their runs resume.
            self.checkpointer.add_recoverable(
                "kd_epoch_averages", self.epoch_averages, optional_load=True
            )

    def _check_modules(self):
        """Raises if a model module is missing."""
        missing = [name for name in STUDENT_MODULES if name not in self.modules]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the student modules "
                f"{', '.join(STUDENT_MODULES)}; missing: {', '.join(missing)}"
            )

    def init_optimizers(self):
        """One parameter group (SpeechBrain's), or, with a frozen backbone
        or a ``backbone_lr_scale``, the head in one group and the backbone
        (when trained) in another at that fraction of the rate."""
        if not self.freeze_backbone and self.backbone_lr_scale is None:
            super().init_optimizers()
            return
        backbone = self.modules.embedding_model
        frozen = self.freeze_backbone
        backbone.requires_grad_(not frozen)
        groups = [{"params": list(self.modules.classifier.parameters())}]
        if not frozen:
            groups.append(
                {
                    "params": list(backbone.parameters()),
                    "lr_scale": self.backbone_lr_scale,
                }
            )
        self.optimizer = self.opt_class(groups)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def _augmented_signal(self, batch, stage):
        """The batch's waveforms and lengths, augmented in training."""
        wavs, lens = batch.sig
        augment = self.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            wavs, lens = augment(wavs, lens)
        return wavs, lens

    def _model_outputs(self, wavs, lens):
        """``cosine`` [B, 1, C], ``embeddings`` [B, 1, D] and ``lens``."""
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        embeddings = self.modules.embedding_model(feats, lens)
        cosine = self.modules.classifier(embeddings)
        return {"cosine": cosine, "embeddings": embeddings, "lens": lens}

    def compute_forward(self, batch, stage):
        """The model on the batch; with cached backbone embeddings
        (``teacher_emb``), the head alone.

        Arguments
        ---------
        batch : PaddedBatch
            See the class.
        stage : speechbrain.Stage
            TRAIN applies ``wav_augment``.

        Returns
        -------
        dict
            ``cosine``, ``embeddings`` and ``lens``.
        """
        if hasattr(batch, "teacher_emb"):
            if not self.freeze_backbone:
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
        if self.freeze_backbone:  # fit calls train() on every module
            self.modules.embedding_model.eval()
        batch = batch.to(self.device)
        return self._model_outputs(*self._augmented_signal(batch, stage))

    def compute_objectives(self, predictions, batch, stage):
        """The AAM loss (plus ``_training_loss``'s terms in training).

        Arguments
        ---------
        predictions : dict
            Output of ``compute_forward``.
        batch : PaddedBatch
            With ``spk_id_encoded`` ([B, 1] class indices).
        stage : speechbrain.Stage
            The current stage.

        Returns
        -------
        torch.Tensor
        """
        targets, _ = batch.spk_id_encoded
        targets = targets.to(self.device)
        augment = self.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            targets = augment.replicate_labels(targets)
        cosine = predictions["cosine"]
        student_loss = self.compute_cost(cosine, targets, predictions["lens"])
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(
                batch.id, cosine, targets, reduction="batch"
            )
            return student_loss
        loss, stats = self._training_loss(student_loss, predictions, targets)
        if not torch.isfinite(loss):
            self._nonfinite_ids = list(getattr(batch, "id", []))
            return loss
        self.epoch_averages.add(stats)
        return loss

    def _training_loss(self, student_loss, predictions, targets):
        """The training loss and its logged statistics: the AAM loss."""
        return student_loss, {"student_loss": student_loss}

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-epoch statistics.

        A training stage entered with ``self.step > 0`` resumes an epoch
        from an intra-epoch checkpoint: its restored sums are kept.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage starting.
        epoch : int, optional
            The epoch number.
        """
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            if self.step == 0:
                self.epoch_averages.reset()
        else:
            self.error_metrics = MetricStats(metric=classification_error)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the epoch, anneals the learning rate and saves checkpoints.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage ending.
        stage_loss : float
            Average loss of the stage.
        epoch : int, optional
            The epoch number.
        """
        super().on_stage_end(stage, stage_loss, epoch)
        if stage == sb.Stage.TRAIN:
            averages = self.epoch_averages.averages()
            self.train_stats = {"loss": stage_loss}
            self.train_stats.update(averages)
            if not self._valid_follows:
                self._end_epoch(epoch, valid_stats=None)
            return
        stats = {
            "loss": stage_loss,
            "ErrorRate": self.error_metrics.summarize("average"),
        }
        if stage == sb.Stage.VALID:
            self._end_epoch(epoch, valid_stats=stats)
            return
        logger = self.train_logger
        if logger is not None:
            counter = self.epoch_counter
            meta = {"Epoch loaded": getattr(counter, "current", None)}
            logger.log_stats(stats_meta=meta, test_stats=stats)

    def _end_epoch(self, epoch, valid_stats):
        """Per-epoch learning-rate update, log line and checkpoint."""
        meta = {"epoch": epoch}
        self._anneal_learning_rate(epoch, meta)
        meta.update(self._epoch_meta())
        logger = self.train_logger
        if logger is not None:
            logger.log_stats(
                stats_meta=meta,
                train_stats=self.train_stats,
                valid_stats=valid_stats,
            )
        if self.checkpointer is None:
            return
        if valid_stats is not None:
            self.checkpointer.save_and_keep_only(
                meta={"ErrorRate": valid_stats["ErrorRate"]},
                min_keys=["ErrorRate"],
            )
        else:
            self.checkpointer.save_and_keep_only(
                meta={"train_loss": self.train_stats["loss"]}
            )

    def _epoch_meta(self):
        """Entries of the epoch's log line besides the epoch and the rate."""
        return {}
