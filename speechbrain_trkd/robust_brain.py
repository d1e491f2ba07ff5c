"""SpeechBrain's ``Brain`` with the fixes that long CPU and multi-process
training runs need; each method says why SpeechBrain's own ``Brain`` does
not do it already.

* an interrupted checkpoint save is set aside instead of failing every
  restart, and the train log keeps each epoch once;
* DDP on CPU (gloo) without ``SyncBatchNorm``;
* a step with a non-finite loss moves no weight;
* the epoch's optimizer steps are counted before training, for per-step
  schedules;
* a per-step learning-rate schedule sized from the epochs, and per-epoch
  annealing that respects each parameter group's ``lr_scale``;
* the random states in every checkpoint, and a SIGTERM that checkpoints
  before it stops the run, so that a resumed run ends as an uninterrupted
  one (``exact_resume``).

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import logging
import math
import os
import re

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import LoopedLoader
from speechbrain.nnet.schedulers import update_learning_rate
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from speechbrain_trkd.exact_resume import RandomStates, TerminationRequest

logger = logging.getLogger(__name__)


def non_negative(name, value):
    """``value`` as a float, checked finite and >= 0 (named ``name``).

    Example
    -------
    >>> non_negative("kd_weight", "0.5")
    0.5
    >>> non_negative("kd_weight", -1)
    Traceback (most recent call last):
    ...
    ValueError: kd_weight must be a finite number >= 0, got -1.0
    """
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class RobustBrain(sb.core.Brain):
    """A ``Brain`` that resumes cleanly, trains on CPU with DDP, drops
    non-finite steps, and schedules its learning rate per epoch or per step.

    Arguments
    ---------
    modules, opt_class, hparams, run_opts, checkpointer
        As for ``speechbrain.core.Brain``.
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
    >>> import torch
    >>> brain = RobustBrain({"model": torch.nn.Linear(2, 2)},
    ...                     run_opts={"device": "cpu"})
    >>> brain.steps_per_epoch is None, brain.lr_step_schedule is None
    (True, True)
    """

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
        *,
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
        self.lr_annealing = lr_annealing
        self.make_lr_step_schedule = lr_step_schedule
        self.lr_warmup_epochs = non_negative(
            "lr_warmup_epochs", lr_warmup_epochs
        )
        self.train_logger = train_logger
        # The counter of the run (fit sets it): hparams' by default, so that
        # a test stage without fit can label its results.
        self.epoch_counter = getattr(
            getattr(self, "hparams", None), "epoch_counter", None
        )
        self.steps_per_epoch = None
        self.lr_step_schedule = None
        self._nonfinite_ids = None
        self._valid_follows = False
        self.random_states = RandomStates()
        self.termination = TerminationRequest()
        if self.checkpointer is not None:
            # Optional: checkpoints saved without it still resume.
            self.checkpointer.add_recoverable(
                "random_states", self.random_states, optional_load=True
            )

    def _set_schedule_length(self, train_loader):
        """Counts the optimizer steps of an epoch (``steps_per_epoch``), for
        per-step schedules: SpeechBrain's ``Brain`` counts none before it
        trains. A loader without a length leaves it unknown (see
        ``_unsized_loader``)."""
        try:
            n_batches = len(train_loader)
        except TypeError as err:
            self._unsized_loader(err)
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

    def _unsized_loader(self, error):
        """Called when the training loader has no length; a schedule that
        needs the step count raises here (``lr_step_schedule`` raises when
        it is built)."""

    def fit(
        self,
        epoch_counter,
        train_set,
        valid_set=None,
        progressbar=None,
        train_loader_kwargs=None,
        valid_loader_kwargs=None,
    ):
        """Builds the train loader, counts its steps, then trains.

        Same arguments as ``speechbrain.core.Brain.fit``. The training
        loader is built here (when a dataset is given) so that
        ``steps_per_epoch``, which per-step schedules need, is the number
        of batches per epoch
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
        # Without a checkpointer there is nothing to save: SIGTERM ends the
        # run at once, as usual.
        held = self.checkpointer is not None
        with self.termination.catching() if held else contextlib.nullcontext():
            super().fit(
                epoch_counter,
                train_set,
                valid_set=valid_set,
                progressbar=progressbar,
                train_loader_kwargs=train_loader_kwargs,
                valid_loader_kwargs=valid_loader_kwargs,
            )
        self.termination.stop_if_requested("the run's last checkpoint")

    def on_stage_start(self, stage, epoch=None):
        """A training stage resumed mid-epoch gets its checkpoint's data
        draws back before its loader reads a batch.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage starting.
        epoch : int, optional
            The epoch number.
        """
        if stage == sb.Stage.TRAIN:
            self.random_states.resume_data_draws()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """A training stage resumed from a checkpoint of its last batch
        trains on no batch: its checkpoint's torch draws come back here.

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
            self.random_states.resume_model_draws()

    def on_fit_batch_start(self, batch, should_step):
        """The first batch resumed mid-epoch gets its checkpoint's torch
        draws back (augmentation, dropout).

        Arguments
        ---------
        batch : PaddedBatch
            The batch to train on.
        should_step : bool
            Whether the optimizer steps after it.
        """
        self.random_states.resume_model_draws()

    # SpeechBrain's Brain has no hook after its intra-epoch checkpoint nor
    # after an epoch's validation (where the epoch's checkpoint is saved):
    # a SIGTERM stops the run at these two points.
    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        decision = super()._should_save_intra_epoch_ckpt(
            last_ckpt_time, steps_since_ckpt
        )
        return self._termination_requested() or decision

    def _termination_requested(self):
        """Whether a SIGTERM came, on any process under DDP (so that all of
        them checkpoint and stop at the same point)."""
        requested = self.termination.requested
        if torch.distributed.is_initialized():
            flag = torch.tensor([int(requested)], device=self.device)
            maximum = torch.distributed.ReduceOp.MAX
            torch.distributed.all_reduce(flag, op=maximum)
            requested = self.termination.requested = bool(flag.item())
        return requested

    def _save_intra_epoch_ckpt(self):
        super()._save_intra_epoch_ckpt()
        self.termination.stop_if_requested(
            f"a checkpoint in epoch {self.epoch_counter.current}, "
            f"step {self.step}"
        )

    def _fit_valid(self, valid_set, epoch, enable):
        super()._fit_valid(valid_set, epoch, enable)
        self._termination_requested()
        self.termination.stop_if_requested(f"the checkpoint of epoch {epoch}")

    def on_fit_start(self):
        """SpeechBrain's setup (DDP wrapping, optimizer, recovery of the
        latest checkpoint, the per-step LR schedule's position included),
        after interrupted checkpoints are set aside and before the train log
        is trimmed to the recovered epoch."""
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
        """Sets interrupted checkpoints aside, then loads the best one.

        Arguments
        ---------
        max_key : str, optional
            Checkpoint meta key to maximise.
        min_key : str, optional
            Checkpoint meta key to minimise (e.g. "ErrorRate").
        """
        self._set_incomplete_checkpoints_aside()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    def _set_incomplete_checkpoints_aside(self):
        """Renames checkpoints that lack a recoverable's file, so that
        recovery uses the last complete one.

        A process killed while SpeechBrain saves a checkpoint leaves a
        folder with its ``CKPT.yaml`` but without some parameter files;
        loading it would fail on every restart. It is kept (nothing is
        deleted) as ``INCOMPLETE-<name>``, with a warning. SpeechBrain's
        ``Checkpointer`` loads the newest folder whatever it holds.
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
        an epoch trained again after a crash is logged once (SpeechBrain's
        ``FileTrainLogger`` only appends)."""
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
        """Wraps the trained modules for DDP; on CPU without SyncBatchNorm.

        SpeechBrain converts BatchNorm layers to ``SyncBatchNorm``, which
        only runs on CUDA; on CPU (gloo) the student is wrapped in DDP with
        its own BatchNorm instead. Modules without trainable parameters
        are not wrapped (a frozen teacher is never in ``modules`` anyway).
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

    def optimizers_step(self):
        """SpeechBrain's optimizer step, unless the loss was not finite.

        SpeechBrain counts non-finite losses (``--nonfinite_patience``) but
        still steps the optimizers; here such a step is dropped instead
        (gradients zeroed, no weight moves) and the batch's utterances are
        named in a warning. ``compute_objectives`` records them in
        ``_nonfinite_ids``.
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

    def _anneal_learning_rate(self, epoch, meta):
        """Per-epoch learning-rate update; records the rate in ``meta``.

        SpeechBrain's schedulers set one rate for every parameter group; a
        group may here run at a fixed fraction of it (``lr_scale``, e.g. a
        pretrained backbone fine-tuned slowly).
        """
        annealing = self.lr_annealing
        if annealing is not None:
            old_lr, new_lr = annealing(epoch)
            for index, group in enumerate(self.optimizer.param_groups):
                scaled = new_lr * group.get("lr_scale", 1.0)
                update_learning_rate(self.optimizer, scaled, [index])
            meta["lr"] = old_lr
        elif self.lr_step_schedule is not None:
            meta["lr"] = self.optimizer.param_groups[0]["lr"]
