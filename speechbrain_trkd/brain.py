"""A SpeechBrain ``Brain`` that distils a frozen teacher into a student.

The student (``compute_features``, ``mean_var_norm``, ``embedding_model``,
``classifier`` in ``modules``) is trained with its own speaker-classification
loss (``compute_cost``, typically AAM softmax) plus ``kd_weight`` times a
distillation term (``kd_loss``, a ``DistillationLoss``) between student and
teacher logits; each collaborator is a constructor argument, so the recipe
script names every hyperparameter it uses. The teacher (``teacher``, a
``FrozenTeacher``) sees the same augmented batch and
stays outside the optimizer, the checkpoints and the DDP wrapping.

Logits for distillation are the classifiers' cosine scores times ``kd_scale``
(30, the usual AAM scale), optionally with the additive angular margin
``kd_margin`` at the target class of both models. The TRKD cutoff tau follows
``tau_schedule`` as a function of the optimizer step count, which
SpeechBrain checkpoints, so that a resumed run continues the curve exactly.

Authors
 * speechbrain-trkd developers 2026
"""

import math

import speechbrain as sb
import torch

from speechbrain_trkd.robust_brain import non_negative
from speechbrain_trkd.speaker_brain import SpeakerBrain
from speechbrain_trkd.teacher import FrozenTeacher


def cosine_logits(cosine, targets, scale=30.0, margin=0.0):
    """Turns cosine scores into logits for distillation.

    With ``margin > 0`` the score of the target class becomes
    ``cos(theta + margin)`` (the additive angular margin, ``theta + margin``
    capped at pi); every score is then multiplied by ``scale``. Computed in
    float32 whatever the input precision.

    Arguments
    ---------
    cosine : torch.Tensor
        Cosine scores, [B, 1, C] (or [B, C]).
    targets : torch.Tensor
        Target classes, [B, 1] or [B]; only used when ``margin > 0``.
    scale : float
        Multiplier of the scores (the AAM scale, 30 by default).
    margin : float
        Additive angular margin in radians at the target class.

    Returns
    -------
    torch.Tensor
        Logits, same shape as ``cosine``, float32.

    Example
    -------
    >>> cosine = torch.tensor([[[0.5, 0.0]], [[1.0, 0.2]]])
    >>> cosine_logits(cosine, torch.tensor([[0], [1]]), scale=10.0).tolist()
    [[[5.0, 0.0]], [[10.0, 2.0]]]
    >>> logits = cosine_logits(cosine, torch.tensor([[0], [1]]), 1.0, 0.5)
    >>> round(logits[0, 0, 0].item(), 4)  # cos(acos(0.5) + 0.5)
    0.0236
    """
    logits = cosine.float()
    if margin > 0:
        index = targets.reshape(targets.shape[0], *[1] * (logits.dim() - 1))
        index = index.long()
        target_cos = logits.gather(-1, index).clamp(-1 + 1e-7, 1 - 1e-7)
        angle = (torch.acos(target_cos) + margin).clamp(max=math.pi)
        logits = logits.scatter(-1, index, torch.cos(angle))
    return logits * scale


class DistillationBrain(SpeakerBrain):
    """Trains a student speaker model with a frozen teacher's guidance.

    A ``SpeakerBrain`` (AAM training, checkpoints, logs) with the teacher,
    the KD term, its weight and warm-up, and the tau curriculum added.

    Its collaborators are keyword arguments (SpeechBrain's ``hparams`` is
    still accepted; its ``epoch_counter``, if any, labels the results of a
    test stage run without ``fit``).
    Batches carry ``id``, ``sig`` and ``spk_id_encoded``. With
    ``DistillationLoss("none")`` the teacher is neither needed nor run (plain
    AAM training); with ``kd_weight=0`` it still runs and its KD statistics
    are logged, but they do not reach the gradient.

    The train log holds, per epoch, tau (the value used at the last step),
    the total loss, the student loss and the distillation statistics
    (``kd``, and for TRKD ``kd_mass``, ``kd_conf`` and ``conf_size``, the
    mean confusion-set size), averaged over the epoch's steps. Validation
    reports the student loss and the classification error rate, and keeps
    the checkpoint with the lowest ``ErrorRate``.

    Arguments
    ---------
    modules : dict of torch.nn.Module
        The student: ``compute_features``, ``mean_var_norm``,
        ``embedding_model`` and ``classifier`` (more are allowed). Must not
        contain the teacher or share parameters or buffers with it.
    opt_class : callable
        Called with the student's parameters to build the optimizer.
    hparams : dict
        See above.
    run_opts : dict
        SpeechBrain run options (device, precision, distributed, ...).
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        Must not hold the teacher.
    compute_cost : callable
        The student loss, ``compute_cost(cosine, targets, lens)``.
    kd_loss : speechbrain_trkd.losses.DistillationLoss
        The distillation term; may instead be ``modules["kd_loss"]`` when
        it has trainable parameters.
    kd_weight : float
        Weight of the distillation term (>= 0).
    teacher : speechbrain_trkd.teacher.FrozenTeacher, optional
        Its output aligned to the student's classes; needed unless the
        method is "none".
    tau_schedule : callable, optional
        ``tau_schedule(step)``, the TRKD cutoff (1.0 without one).
    kd_scale : float
        KD logits = ``kd_scale`` * cosine (30, the AAM scale).
    kd_margin : float
        Additive angular margin (radians) at the target of the KD logits.
    kd_warmup_epochs : float
        The KD weight ramps linearly from 0 to ``kd_weight`` over that many
        epochs of optimizer steps (0: off).
    wav_augment : speechbrain.augment.augmenter.Augmenter, optional
        Applied to training batches (student and teacher alike).
    lr_annealing, lr_step_schedule, lr_warmup_epochs, train_logger
        As for ``speechbrain_trkd.robust_brain.RobustBrain``.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.nnet.losses import (
    ...     AdditiveAngularMargin,
    ...     LogSoftmaxWrapper,
    ... )
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain_trkd.losses import DistillationLoss
    >>> from speechbrain_trkd.schedules import ExponentialTauSchedule
    >>> def speaker_model(channels, n_classes):
    ...     return {
    ...         "compute_features": Fbank(n_mels=20),
    ...         "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...         "embedding_model": ECAPA_TDNN(
    ...             20, channels=[channels] * 4 + [3 * channels],
    ...             lin_neurons=16,
    ...         ),
    ...         "classifier": Classifier(16, out_neurons=n_classes),
    ...     }
    >>> teacher = FrozenTeacher(**speaker_model(16, 5))
    >>> teacher.set_class_index([4, 0, 2])  # teacher classes of the student's
    >>> data = {
    ...     f"utt{i}": {"seed": i, "spk": i % 3} for i in range(6)
    ... }
    >>> dataset = DynamicItemDataset(data)
    >>> @sb.utils.data_pipeline.takes("seed")
    ... @sb.utils.data_pipeline.provides("sig")
    ... def make_signal(seed):
    ...     generator = torch.Generator().manual_seed(seed)
    ...     return torch.randn(4000, generator=generator)
    >>> @sb.utils.data_pipeline.takes("spk")
    ... @sb.utils.data_pipeline.provides("spk_id_encoded")
    ... def encode(spk):
    ...     return torch.LongTensor([spk])
    >>> dataset.add_dynamic_item(make_signal)
    >>> dataset.add_dynamic_item(encode)
    >>> dataset.set_output_keys(["id", "sig", "spk_id_encoded"])
    >>> brain = DistillationBrain(
    ...     modules=speaker_model(8, 3),
    ...     opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
    ...     run_opts={"device": "cpu", "noprogressbar": True},
    ...     teacher=teacher,
    ...     kd_loss=DistillationLoss("trkd"),
    ...     kd_weight=1.0,
    ...     compute_cost=LogSoftmaxWrapper(
    ...         AdditiveAngularMargin(margin=0.2, scale=30)
    ...     ),
    ...     tau_schedule=ExponentialTauSchedule(start_epoch=0, stop_epoch=2),
    ... )
    >>> brain.fit(range(1, 3), dataset, train_loader_kwargs={"batch_size": 3})
    >>> brain.optimizer_step, brain.tau_schedule.steps_per_epoch
    (4, 2)
    >>> sorted(brain.train_stats)
    ['conf_size', 'kd', 'kd_conf', 'kd_mass', 'loss', 'student_loss']
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
        kd_loss=None,
        kd_weight=1.0,
        teacher=None,
        tau_schedule=None,
        kd_scale=30.0,
        kd_margin=0.0,
        kd_warmup_epochs=0.0,
        wav_augment=None,
        lr_annealing=None,
        lr_step_schedule=None,
        lr_warmup_epochs=0.0,
        train_logger=None,
    ):
        super().__init__(
            modules,
            opt_class,
            hparams,
            run_opts,
            checkpointer,
            compute_cost=compute_cost,
            wav_augment=wav_augment,
            lr_annealing=lr_annealing,
            lr_step_schedule=lr_step_schedule,
            lr_warmup_epochs=lr_warmup_epochs,
            train_logger=train_logger,
        )
        self.kd_loss = kd_loss
        self.teacher = teacher
        self.tau_schedule = tau_schedule
        self.tau = None
        self._check_collaborators()
        self._check_kd_loss()
        self._check_teacher_isolated()
        self.kd_scale = float(kd_scale)
        if not math.isfinite(self.kd_scale) or self.kd_scale <= 0:
            raise ValueError(f"kd_scale must be positive, got {kd_scale}")
        self.kd_margin = float(kd_margin)
        if not 0.0 <= self.kd_margin < math.pi:
            raise ValueError(
                f"kd_margin must lie in [0, pi) radians, got {kd_margin}"
            )
        self.kd_weight = non_negative("kd_weight", kd_weight)
        self.kd_warmup_epochs = non_negative(
            "kd_warmup_epochs", kd_warmup_epochs
        )

    def _check_collaborators(self):
        """Raises if the KD loss or the teacher is missing or mistyped."""
        if self.kd_loss is None and "kd_loss" not in self.modules:
            raise ValueError(
                "DistillationBrain needs kd_loss (a DistillationLoss), as an "
                "argument or as modules['kd_loss']"
            )
        teacher = self.teacher
        if teacher is None and self._distilling:
            raise ValueError(
                "DistillationBrain needs a teacher (a FrozenTeacher) unless "
                "the distillation method is 'none'"
            )
        if teacher is not None and not isinstance(teacher, FrozenTeacher):
            raise TypeError(
                "the teacher must be a speechbrain_trkd FrozenTeacher, "
                f"got {type(teacher).__name__}"
            )

    def _check_kd_loss(self):
        """Raises if a KD loss with trainable parameters is not a module."""
        criterion = self._kd_criterion
        trainable = any(p.requires_grad for p in criterion.parameters())
        if trainable and "kd_loss" not in self.modules:
            raise ValueError(
                "kd_loss has trainable parameters: put it in "
                "modules as 'kd_loss' so that the optimizer and the "
                "checkpointer see it"
            )

    def _check_teacher_isolated(self):
        """Raises if the teacher leaks into the modules or the checkpointer."""
        teacher = self._teacher
        if teacher is None:
            return
        teacher_tensors = {id(t) for t in teacher.parameters()}
        teacher_tensors |= {id(t) for t in teacher.buffers()}
        teacher_modules = {id(m) for m in teacher.modules()}
        for name, module in self.modules.items():
            if not isinstance(module, torch.nn.Module):
                continue
            if any(isinstance(m, FrozenTeacher) for m in module.modules()):
                raise ValueError(
                    f"modules['{name}'] holds a FrozenTeacher: the teacher "
                    "must stay out of modules (optimizer, checkpoints, DDP); "
                    "pass it as DistillationBrain(teacher=...)"
                )
            shared = [
                pname
                for pname, tensor in module.state_dict(keep_vars=True).items()
                if id(tensor) in teacher_tensors
            ]
            if shared:
                raise ValueError(
                    f"modules['{name}'] shares tensors with the teacher "
                    f"({', '.join(shared[:3])}); give the student its own "
                    "instances"
                )
        if self.checkpointer is None:
            return
        for key, obj in self.checkpointer.recoverables.items():
            if id(obj) in teacher_modules or id(obj) in teacher_tensors:
                raise ValueError(
                    f"checkpointer recoverable '{key}' is (part of) the "
                    "teacher; the frozen teacher must not be checkpointed"
                )

    @property
    def _teacher(self):
        """The frozen teacher, or None (allowed for method "none")."""
        return self.teacher

    @property
    def _kd_criterion(self):
        """The distillation loss module (from modules, else hparams)."""
        if "kd_loss" in self.modules:
            return self.modules["kd_loss"]
        return self.kd_loss

    @property
    def _distilling(self):
        """Whether the teacher runs at all (not without a KD term)."""
        return getattr(self._kd_criterion, "distils", True)

    def _tau_at(self, step):
        """Returns tau after ``step`` optimizer steps (1.0 with no schedule).

        Arguments
        ---------
        step : int
            Number of optimizer steps done.

        Returns
        -------
        float
            ``tau_schedule(step)``, or 1.0 without a schedule.
        """
        schedule = self.tau_schedule
        if schedule is None:
            return 1.0
        return float(schedule(step))

    def _unsized_loader(self, error):
        """Without a loader length, the epochs of the tau schedule and of the
        KD warm-up cannot be converted to optimizer steps."""
        schedule = self.tau_schedule
        if (
            schedule is not None
            and hasattr(schedule, "set_steps_per_epoch")
            and getattr(schedule, "steps_per_epoch", None) is None
        ):
            raise ValueError(
                "the training loader has no length, so the epochs of "
                "tau_schedule cannot be converted to optimizer steps; "
                "call tau_schedule.set_steps_per_epoch(n) before fit"
            ) from error
        if self.kd_warmup_epochs > 0:
            raise ValueError(
                "the training loader has no length, so kd_warmup_epochs "
                "cannot be converted to optimizer steps"
            ) from error

    def _set_schedule_length(self, train_loader):
        """Counts the epoch's optimizer steps, and sizes the tau schedule
        with them."""
        super()._set_schedule_length(train_loader)
        schedule = self.tau_schedule
        if self.steps_per_epoch is not None and hasattr(
            schedule, "set_steps_per_epoch"
        ):
            schedule.set_steps_per_epoch(self.steps_per_epoch)

    def _kd_weight_at(self, step):
        """``kd_weight``, ramped up linearly over ``kd_warmup_epochs``.

        Arguments
        ---------
        step : int
            Number of optimizer steps done.

        Returns
        -------
        float
        """
        if self.kd_warmup_epochs <= 0:
            return self.kd_weight
        ramp = step / (self.kd_warmup_epochs * self.steps_per_epoch)
        return self.kd_weight * min(1.0, ramp)

    def _place_teacher(self):
        """Moves the teacher (and a non-module KD loss) to the run device."""
        if self._teacher is not None:
            self._teacher.to(self.device)
            self._teacher.eval()
        if "kd_loss" not in self.modules:
            self.kd_loss.to(self.device)

    def on_fit_start(self):
        """Places the teacher on the device, then the usual setup."""
        self._place_teacher()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Places the teacher on the device, then loads the best checkpoint.

        Arguments
        ---------
        max_key : str, optional
            Checkpoint meta key to maximise.
        min_key : str, optional
            Checkpoint meta key to minimise (e.g. "ErrorRate").
        """
        self._place_teacher()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    def compute_forward(self, batch, stage):
        """Runs the student (and, in training, the teacher) on the batch.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig`` (waveforms and relative lengths), and
            ``teacher_emb`` ([B, emb_dim]) when the teacher's embeddings
            come from a ``TeacherCache``.
        stage : speechbrain.Stage
            TRAIN applies ``wav_augment`` and runs the teacher (only its
            classifier on cached embeddings).

        Returns
        -------
        dict
            ``cosine`` [B, 1, C] and ``embeddings`` [B, 1, D] of the
            student, ``lens`` [B], and in training with distillation
            ``teacher_cosine`` and ``teacher_embeddings``.
        """
        batch = batch.to(self.device)
        wavs, lens = self._augmented_signal(batch, stage)
        outputs = self._model_outputs(wavs, lens)
        if stage == sb.Stage.TRAIN and self._distilling:
            if hasattr(batch, "teacher_emb"):  # cached: no teacher forward
                teacher_emb = batch.teacher_emb.data.unsqueeze(1)
                teacher_cos = self._teacher.classify(teacher_emb)
            else:
                teacher_emb, teacher_cos = self._teacher(wavs, lens)
            outputs["teacher_embeddings"] = teacher_emb
            outputs["teacher_cosine"] = teacher_cos
        return outputs

    def _training_loss(self, student_loss, predictions, targets):
        """The AAM loss plus the weighted KD term; the statistics add the
        KD method's (``kd``, and TRKD's ``kd_mass``, ``kd_conf``,
        ``conf_size``)."""
        self.tau = self._tau_at(self.optimizer_step)
        loss, stats = super()._training_loss(student_loss, predictions, targets)
        if not self._distilling:
            return loss, stats
        cosine = predictions["cosine"]
        teacher_cosine = predictions["teacher_cosine"]
        if teacher_cosine.shape[-1] != cosine.shape[-1]:
            raise ValueError(
                f"the teacher scores {teacher_cosine.shape[-1]} classes, "
                f"the student {cosine.shape[-1]}: align them with "
                "teacher.set_class_index(class_index_map(teacher_encoder,"
                " student_encoder))"
            )
        kd, kd_stats = self._kd_criterion(
            cosine_logits(cosine, targets, self.kd_scale, self.kd_margin),
            cosine_logits(
                teacher_cosine, targets, self.kd_scale, self.kd_margin
            ),
            targets,
            tau=self.tau,
            student_emb=predictions["embeddings"],
            teacher_emb=predictions["teacher_embeddings"],
        )
        loss = loss + self._kd_weight_at(self.optimizer_step) * kd
        stats.update(kd_stats)
        return loss, stats

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-epoch statistics; in training, sets tau.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage starting.
        epoch : int, optional
            The epoch number.
        """
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.tau = self._tau_at(self.optimizer_step)

    def _epoch_meta(self):
        """TRKD's tau (its value at the epoch's last step) in the log."""
        if getattr(self._kd_criterion, "uses_tau", False):
            return {"tau": self.tau}
        return {}
