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

import json
import logging
import math
import os
import re

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import LoopedLoader
from speechbrain.nnet.losses import classification_error
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.metric_stats import MetricStats
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from speechbrain_trkd.teacher import FrozenTeacher

STUDENT_MODULES = (
    "compute_features",
    "mean_var_norm",
    "embedding_model",
    "classifier",
)

logger = logging.getLogger(__name__)


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


def _non_negative(name, value):
    """``value`` as a float, checked finite and >= 0 (named ``name``).

    Example
    -------
    >>> _non_negative("kd_weight", "0.5")
    0.5
    >>> _non_negative("kd_weight", -1)
    Traceback (most recent call last):
    ...
    ValueError: kd_weight must be a finite number >= 0, got -1.0
    """
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


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


class DistillationBrain(sb.core.Brain):
    """Trains a student speaker model with a frozen teacher's guidance.

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
    lr_annealing : callable, optional
        Per epoch, ``old_lr, new_lr = lr_annealing(epoch)``; a parameter
        group with an ``lr_scale`` entry gets ``new_lr * lr_scale``.
    lr_step_schedule : callable, optional
        A SpeechBrain per-step LR scheduler class given its rate arguments,
        completed with ``n_warmup_steps`` (from ``lr_warmup_epochs``) and
        ``total_steps`` (see ``_build_lr_step_schedule``).
    lr_warmup_epochs : float
        Warm-up of ``lr_step_schedule``, in epochs.
    train_logger : speechbrain.utils.train_logger.TrainLogger, optional
        Receives the per-epoch statistics.

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
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        # SpeechBrain's argument parser gives --optimizer_step_limit no type.
        if isinstance(self.optimizer_step_limit, str):
            self.optimizer_step_limit = int(self.optimizer_step_limit)
        self.compute_cost = compute_cost
        self.kd_loss = kd_loss
        self.teacher = teacher
        self.tau_schedule = tau_schedule
        self.wav_augment = wav_augment
        self.lr_annealing = lr_annealing
        self.make_lr_step_schedule = lr_step_schedule
        self.lr_warmup_epochs = _non_negative(
            "lr_warmup_epochs", lr_warmup_epochs
        )
        self.train_logger = train_logger
        # The counter of the run (fit sets it): hparams' by default, so that
        # a test stage without fit can label its results.
        self.epoch_counter = getattr(
            getattr(self, "hparams", None), "epoch_counter", None
        )
        self._check_collaborators()
        self._check_modules()
        self._check_teacher_isolated()
        self.kd_scale = float(kd_scale)
        if not math.isfinite(self.kd_scale) or self.kd_scale <= 0:
            raise ValueError(f"kd_scale must be positive, got {kd_scale}")
        self.kd_margin = float(kd_margin)
        if not 0.0 <= self.kd_margin < math.pi:
            raise ValueError(
                f"kd_margin must lie in [0, pi) radians, got {kd_margin}"
            )
        self.kd_weight = _non_negative("kd_weight", kd_weight)
        self.kd_warmup_epochs = _non_negative(
            "kd_warmup_epochs", kd_warmup_epochs
        )
        self._init_run_state()

    def _init_run_state(self):
        """The state a run builds up: step counts, tau, statistics."""
        self.steps_per_epoch = None
        self._nonfinite_ids = None
        self.lr_step_schedule = None
        self.tau = None
        self.train_stats = None
        self.epoch_averages = EpochAverages()
        self._valid_follows = False
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable(
                "kd_epoch_averages", self.epoch_averages, optional_load=True
            )

    # ------------------------------------------------------------------
    # Configuration checks
    # ------------------------------------------------------------------
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

    def _check_modules(self):
        """Raises if a student module is missing."""
        missing = [name for name in STUDENT_MODULES if name not in self.modules]
        if missing:
            raise ValueError(
                "DistillationBrain needs the student modules "
                f"{', '.join(STUDENT_MODULES)}; missing: {', '.join(missing)}"
            )
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

    # ------------------------------------------------------------------
    # Tau curriculum
    # ------------------------------------------------------------------
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

    def _set_schedule_length(self, train_loader):
        """Counts the optimizer steps of an epoch, for the tau schedule and
        the KD weight's warm-up."""
        schedule = self.tau_schedule
        if schedule is not None and not hasattr(
            schedule, "set_steps_per_epoch"
        ):
            schedule = None
        try:
            n_batches = len(train_loader)
        except TypeError as err:
            if schedule is not None and (
                getattr(schedule, "steps_per_epoch", None) is None
            ):
                raise ValueError(
                    "the training loader has no length, so the epochs of "
                    "tau_schedule cannot be converted to optimizer steps; "
                    "call tau_schedule.set_steps_per_epoch(n) before fit"
                ) from err
            if self.kd_warmup_epochs > 0:
                raise ValueError(
                    "the training loader has no length, so kd_warmup_epochs "
                    "cannot be converted to optimizer steps"
                ) from err
            return
        if self.debug:  # --debug runs only debug_batches per epoch
            n_batches = min(n_batches, self.debug_batches)
        steps = n_batches // self.grad_accumulation_factor
        if steps < 1:
            raise ValueError(
                f"the training loader has {n_batches} batches, fewer than "
                f"grad_accumulation_factor={self.grad_accumulation_factor}: "
                "an epoch would have no optimizer step"
            )
        self.steps_per_epoch = steps
        if schedule is not None:
            schedule.set_steps_per_epoch(steps)

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

    def fit(
        self,
        epoch_counter,
        train_set,
        valid_set=None,
        progressbar=None,
        train_loader_kwargs=None,
        valid_loader_kwargs=None,
    ):
        """Builds the train loader, sizes the tau schedule, then trains.

        Same arguments as ``speechbrain.core.Brain.fit``. The training
        loader is built here (when a dataset is given) so that the tau
        schedule's ``steps_per_epoch`` is the number of batches per epoch
        (at most ``debug_batches`` with ``--debug``) divided by
        ``grad_accumulation_factor``.

        Arguments
        ---------
        epoch_counter : iterable
            Yields the epoch numbers (e.g. an ``EpochCounter``).
        train_set : Dataset or DataLoader
            Training data.
        valid_set : Dataset or DataLoader, optional
            Validation data.
        progressbar : bool, optional
            Whether to show progress bars.
        train_loader_kwargs : dict, optional
            Passed to ``make_dataloader`` for the training data.
        valid_loader_kwargs : dict, optional
            Passed to ``make_dataloader`` for the validation data.
        """
        train_loader_kwargs = dict(train_loader_kwargs or {})
        valid_loader_kwargs = dict(valid_loader_kwargs or {})
        if not self.test_only:
            if not isinstance(train_set, DataLoader | LoopedLoader):
                train_set = self.make_dataloader(
                    train_set, stage=sb.Stage.TRAIN, **train_loader_kwargs
                )
            self._set_schedule_length(train_set)
        self._valid_follows = valid_set is not None
        self.epoch_counter = epoch_counter
        super().fit(
            epoch_counter,
            train_set,
            valid_set=valid_set,
            progressbar=progressbar,
            train_loader_kwargs=train_loader_kwargs,
            valid_loader_kwargs=valid_loader_kwargs,
        )

    # ------------------------------------------------------------------
    # Device placement and distributed wrapping
    # ------------------------------------------------------------------
    def _place_teacher(self):
        """Moves the teacher (and a non-module KD loss) to the run device."""
        if self._teacher is not None:
            self._teacher.to(self.device)
            self._teacher.eval()
        if "kd_loss" not in self.modules:
            self.kd_loss.to(self.device)

    def on_fit_start(self):
        """Places the teacher on the device, then SpeechBrain's setup.

        SpeechBrain's setup wraps the student for DDP, builds the optimizer
        from the student's parameters and recovers the latest checkpoint
        (the per-step LR schedule's position included).
        """
        self._place_teacher()
        self._set_incomplete_checkpoints_aside()
        self._build_lr_step_schedule()
        super().on_fit_start()
        self._trim_train_log()
        schedule = self.lr_step_schedule
        if schedule is not None and schedule.current_step == 0:
            schedule(self.optimizer)  # the first step's rate, not opt_class's

    def _build_lr_step_schedule(self):
        """Completes ``lr_step_schedule`` with the run's step counts.

        ``lr_step_schedule`` is a SpeechBrain per-step scheduler
        class given its rate arguments (e.g. ``!name:speechbrain.nnet.
        schedulers.WarmAndExpDecayLRSchedule`` with ``lr`` and
        ``decay_factor``); its ``n_warmup_steps`` and ``total_steps`` come
        from ``lr_warmup_epochs`` and the epoch counter's limit, in
        optimizer steps.
        """
        make = self.make_lr_step_schedule
        if make is None or self.lr_step_schedule is not None:
            return
        if self.steps_per_epoch is None:
            raise ValueError(
                "lr_step_schedule needs the number of optimizer steps per "
                "epoch: give fit a dataset or a loader with a length"
            )
        epochs = self.epoch_counter.limit
        warmup = self.lr_warmup_epochs
        self.lr_step_schedule = make(
            n_warmup_steps=max(1, round(warmup * self.steps_per_epoch)),
            total_steps=epochs * self.steps_per_epoch,
        )
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable(
                "lr_step_schedule", self.lr_step_schedule
            )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Moves the per-step LR schedule on after each optimizer step.

        Arguments
        ---------
        batch : PaddedBatch
            The batch trained on.
        outputs : dict
            Output of ``compute_forward``.
        loss : torch.Tensor
            Output of ``compute_objectives``.
        should_step : bool
            Whether the optimizer stepped.
        """
        if should_step and self.lr_step_schedule is not None:
            self.lr_step_schedule(self.optimizer)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Places the teacher on the device and loads the best checkpoint.

        Arguments
        ---------
        max_key : str, optional
            Checkpoint meta key to maximise.
        min_key : str, optional
            Checkpoint meta key to minimise (e.g. "ErrorRate").
        """
        self._place_teacher()
        self._set_incomplete_checkpoints_aside()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    def _set_incomplete_checkpoints_aside(self):
        """Renames checkpoints that lack a recoverable's file, so that
        recovery uses the last complete one.

        A process killed while SpeechBrain saves a checkpoint leaves a
        folder with its ``CKPT.yaml`` but without some parameter files;
        loading it would fail on every restart. It is kept (nothing is
        deleted) as ``INCOMPLETE-<name>``, with a warning.
        """
        checkpointer = self.checkpointer
        if checkpointer is None or not sb.utils.distributed.if_main_process():
            return
        needed = set(checkpointer.recoverables) - set(
            checkpointer.optional_recoverables
        )
        needed.discard("optimizer")  # added once the optimizer exists
        if not checkpointer.checkpoints_dir.is_dir():
            return
        for ckpt in checkpointer.list_checkpoints():
            missing = sorted(needed - set(ckpt.paramfiles))
            if not missing:
                continue
            aside = ckpt.path.with_name(f"INCOMPLETE-{ckpt.path.name}")
            ckpt.path.rename(aside)
            logger.warning(
                "Checkpoint %s lacks %s (its save was interrupted): kept as "
                "%s, recovering from the last complete checkpoint",
                ckpt.path,
                ", ".join(f"{name}.ckpt" for name in missing),
                aside,
            )

    def _trim_train_log(self):
        """Drops train-log lines of epochs after the recovered one, so that
        an epoch trained again after a crash is logged once."""
        train_logger = self.train_logger
        counter = self.epoch_counter
        path = getattr(train_logger, "save_file", None)
        if (
            path is None
            or counter is None
            or not os.path.isfile(path)
            or not sb.utils.distributed.if_main_process()
        ):
            return
        with open(path, encoding="utf-8") as fin:
            lines = fin.readlines()
        kept = [
            line
            for line in lines
            if not (
                (match := re.match(r"epoch: (\d+)", line))
                and int(match.group(1)) > counter.current
            )
        ]
        if len(kept) != len(lines):
            with open(path, "w", encoding="utf-8") as fout:
                fout.writelines(kept)

    def _wrap_distributed(self):
        """Wraps the student for DDP; on CPU without SyncBatchNorm.

        SpeechBrain converts BatchNorm layers to ``SyncBatchNorm``, which
        only runs on CUDA; on CPU (gloo) the student is wrapped in DDP with
        its own BatchNorm instead. The teacher is never in ``modules`` and
        so is never wrapped.
        """
        # Kept: upstream's DDP(SyncBatchNorm) raises "SyncBatchNorm layers
        # only work with GPU modules" on 2 gloo CPU processes.
        if not self.distributed_launch or self.device_type == "cuda":
            super()._wrap_distributed()
            return
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module,
                    device_ids=None,
                    find_unused_parameters=self.find_unused_parameters,
                )

    # ------------------------------------------------------------------
    # Forward and objectives
    # ------------------------------------------------------------------
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
        wavs, lens = batch.sig
        augment = self.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            wavs, lens = augment(wavs, lens)
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        embeddings = self.modules.embedding_model(feats, lens)
        cosine = self.modules.classifier(embeddings)
        outputs = {"cosine": cosine, "embeddings": embeddings, "lens": lens}
        if stage == sb.Stage.TRAIN and self._distilling:
            if hasattr(batch, "teacher_emb"):  # cached: no teacher forward
                teacher_emb = batch.teacher_emb.data.unsqueeze(1)
                teacher_cos = self._teacher.classify(teacher_emb)
            else:
                teacher_emb, teacher_cos = self._teacher(wavs, lens)
            outputs["teacher_embeddings"] = teacher_emb
            outputs["teacher_cosine"] = teacher_cos
        return outputs

    def compute_objectives(self, predictions, batch, stage):
        """Student loss, plus ``kd_weight`` times the KD term in training.

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
            The loss to minimise (the student loss outside training).
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

        self.tau = self._tau_at(self.optimizer_step)
        loss = student_loss
        stats = {"student_loss": student_loss}
        if self._distilling:
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
        if not torch.isfinite(loss):
            self._nonfinite_ids = list(getattr(batch, "id", []))
            return loss
        self.epoch_averages.add(stats)
        return loss

    def optimizers_step(self):
        """SpeechBrain's optimizer step, unless the loss was not finite.

        SpeechBrain counts non-finite losses (``--nonfinite_patience``) but
        still steps the optimizers; here such a step is dropped instead
        (gradients zeroed, no weight moves) and the batch's utterances are
        named in a warning.
        """
        if self._nonfinite_ids is None:
            super().optimizers_step()
            return
        logger.warning(
            "Non-finite loss on the batch of %s: no weight updated",
            ", ".join(self._nonfinite_ids[:8]) or "(no ids)",
        )
        self._nonfinite_ids = None
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------
    # Stage hooks
    # ------------------------------------------------------------------
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
        if stage == sb.Stage.TRAIN:
            if self.step == 0:
                self.epoch_averages.reset()
            self.tau = self._tau_at(self.optimizer_step)
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
        annealing = self.lr_annealing
        if annealing is not None:
            old_lr, new_lr = annealing(epoch)
            # A parameter group may run at a fixed fraction of the scheduled
            # rate (e.g. a pretrained backbone fine-tuned slowly).
            for index, group in enumerate(self.optimizer.param_groups):
                scaled = new_lr * group.get("lr_scale", 1.0)
                update_learning_rate(self.optimizer, scaled, [index])
            meta["lr"] = old_lr
        elif self.lr_step_schedule is not None:
            meta["lr"] = self.optimizer.param_groups[0]["lr"]
        if getattr(self._kd_criterion, "uses_tau", False):
            meta["tau"] = self.tau
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
