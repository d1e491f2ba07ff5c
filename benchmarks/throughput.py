"""Throughput of distillation: the step, the epoch, and the KD loss's share.

Three measurements of one recipe configuration (an ``argv`` of
``train_trkd.py``), on the run device:

* **step**: samples/s of ``DistillationBrain.fit_batch`` (augmentation,
  teacher and student forward, backward, optimizer step) repeated on one
  fixed batch, after warm-up steps, the device synchronised around the
  timed loop; data loading is excluded.
* **epoch**: samples/s of a whole training epoch through the recipe's own
  data loader (data loading included), timed from the start to the end of
  the training stage.
* **KD loss share**: the fraction of the step's time spent in the KD loss,
  forward and backward, read from ``torch.profiler``. The loss is wrapped in
  :class:`ProfiledLoss`, which runs its forward and its backward inside one
  ``record_function`` range; on CUDA the share is that range's kernel time
  over the step's kernel time, on the CPU the ranges' CPU time.

The brain is built from the plugin's functions (``data.dataio_prep``,
``build_wav_augment``, ``load_teacher``) exactly as ``train_trkd.main``
builds it, without checkpoints.

Authors
 * speechbrain-trkd developers 2026
"""

import gc
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.data import build_wav_augment, dataio_prep
from speechbrain_trkd.teacher_cache import TeacherCache
from speechbrain_trkd.teacher_loading import load_teacher

LOSS_RANGE = "kd_loss"
STEP_RANGE = "train_step"


class ProfiledLoss(torch.nn.Module):
    """Runs a KD loss's forward and backward inside one profiler range.

    The loss is computed on a detached copy of the student logits and its
    gradient taken at once, both inside ``record_function(label)``; the
    returned value equals the loss, and its gradient with respect to the
    student logits is exactly the loss's (a linear surrogate carries it),
    so training is unchanged while the profiler sees the loss's whole cost.

    Arguments
    ---------
    loss : speechbrain_trkd.losses.DistillationLoss
        A loss whose gradient depends on the student logits only
        (``kd``, ``dkd``, ``trkd``, ``gkd``, ``nkd``, ``dist``).
    label : str
        Name of the profiler range.

    Example
    -------
    >>> from speechbrain_trkd.losses import DistillationLoss
    >>> loss = DistillationLoss("trkd")
    >>> student = torch.randn(4, 6, requires_grad=True)
    >>> teacher, targets = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    >>> plain, _ = loss(student, teacher, targets, tau=0.5)
    >>> (expected,) = torch.autograd.grad(plain, student)
    >>> wrapped, _ = ProfiledLoss(loss)(student, teacher, targets, tau=0.5)
    >>> (got,) = torch.autograd.grad(wrapped, student)
    >>> torch.allclose(wrapped, plain), torch.allclose(got, expected)
    (True, True)
    >>> ProfiledLoss(DistillationLoss("emb_cos"))
    Traceback (most recent call last):
    ...
    ValueError: ProfiledLoss times logit losses only, not 'emb_cos'
    """

    def __init__(self, loss, label=LOSS_RANGE):
        super().__init__()
        if loss.uses_embeddings or not loss.distils:
            raise ValueError(
                f"ProfiledLoss times logit losses only, not {loss.method!r}"
            )
        self.loss = loss
        self.label = label
        self.method = loss.method

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """Returns ``(loss, stats)`` as the wrapped loss does.

        Arguments
        ---------
        student_logits : torch.Tensor
            [B, C] or [B, 1, C].
        teacher_logits : torch.Tensor
            Same shape.
        targets : torch.Tensor
            [B] or [B, 1].
        tau : float
            TRKD cutoff.
        student_emb : torch.Tensor, optional
            Passed on, detached.
        teacher_emb : torch.Tensor, optional
            Passed on.

        Returns
        -------
        tuple
            ``(loss, stats)``.

        Example
        -------
        >>> from speechbrain_trkd.losses import DistillationLoss
        >>> wrapped = ProfiledLoss(DistillationLoss("kd"))
        >>> value, stats = wrapped(torch.zeros(2, 3), torch.zeros(2, 3),
        ...                        torch.tensor([0, 1]))
        >>> float(value), sorted(stats)
        (0.0, ['kd'])
        """
        with record_function(self.label), torch.enable_grad():
            leaf = student_logits.detach().requires_grad_(True)
            if student_emb is not None:
                student_emb = student_emb.detach()
            loss, stats = self.loss(
                leaf,
                teacher_logits,
                targets,
                tau=tau,
                student_emb=student_emb,
                teacher_emb=teacher_emb,
            )
            if not student_logits.requires_grad:
                return loss.detach(), stats
            (grad,) = torch.autograd.grad(loss, leaf)
            surrogate = (student_logits * grad).sum()
            return loss.detach() + surrogate - surrogate.detach(), stats


class TimedDistillationBrain(DistillationBrain):
    """A ``DistillationBrain`` that times its training stages.

    ``epoch_seconds`` is the wall time of the last training stage, from
    its start to its end (data loading included, the device synchronised
    at both ends); ``samples_seen`` counts the examples it trained on.

    Example
    -------
    >>> issubclass(TimedDistillationBrain, DistillationBrain)
    True
    """

    epoch_seconds = None
    samples_seen = 0
    _epoch_start = None

    def on_stage_start(self, stage, epoch=None):
        """Starts the clock of a training stage.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage starting.
        epoch : int, optional
            The epoch number.
        """
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            synchronize(self.device)
            self.samples_seen = 0
            self._epoch_start = time.perf_counter()

    def fit_batch(self, batch):
        """Counts the batch's examples, then trains on it.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig``.

        Returns
        -------
        torch.Tensor
            The detached loss.
        """
        self.samples_seen += batch.sig[0].shape[0]
        return super().fit_batch(batch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Stops the clock of a training stage.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage ending.
        stage_loss : float
            Its average loss.
        epoch : int, optional
            The epoch number.
        """
        if stage == sb.Stage.TRAIN and self._epoch_start is not None:
            synchronize(self.device)
            self.epoch_seconds = time.perf_counter() - self._epoch_start
        super().on_stage_end(stage, stage_loss, epoch)


def synchronize(device):
    """Waits for the device's queued work (a no-op on the CPU).

    Arguments
    ---------
    device : str or torch.device

    Example
    -------
    >>> synchronize("cpu")
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def build_brain(argv, brain_class=TimedDistillationBrain):
    """Builds a distillation brain as ``train_trkd.main`` does, untrained.

    The data must be prepared already (``prep_folder``), and the teacher
    cache built when ``teacher_cache`` is set (its views are then the
    data). No checkpointer is attached, so nothing is saved or recovered.

    Arguments
    ---------
    argv : list of str
        ``train_trkd.py``'s arguments: hparams file, overrides, run options.
    brain_class : type
        A ``DistillationBrain`` subclass.

    Returns
    -------
    brain : DistillationBrain
    train_data : DynamicItemDataset
    hparams : dict
        The loaded hyperparameters.

    Example
    -------
    >>> build_brain(["/no/such.yaml"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/no/such.yaml'
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    cache = None
    if hparams.get("teacher_cache"):
        cache = TeacherCache(hparams["teacher_cache"])
    train_data, _, label_encoder = dataio_prep(
        hparams["train_annotation"],
        hparams["valid_annotation"],
        hparams["save_folder"],
        n_classes=hparams["out_n_neurons"],
        crop_seconds=hparams["sentence_len"],
        sample_rate=hparams["sample_rate"],
        random_chunk=hparams["random_chunk"],
        cache=cache,
        cache_augment=hparams["cache_view_augment"],
    )
    teacher = None
    if hparams["kd_loss"].distils:
        teacher = load_teacher(
            hparams["pretrainer"],
            hparams["teacher"],
            label_encoder,
            revision=hparams["teacher_revision"],
            sha256=hparams["teacher_sha256"],
            source=hparams["teacher_source"],
            n_classes=hparams["teacher_n_classes"],
        )
    per_step = hparams["lr_per_step"]
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        teacher=teacher,
        kd_loss=hparams["kd_loss"],
        compute_cost=hparams["compute_cost"],
        kd_weight=hparams["kd_weight"],
        kd_warmup_epochs=hparams["kd_warmup_epochs"],
        kd_scale=hparams["kd_scale"],
        kd_margin=hparams["kd_margin"],
        tau_schedule=hparams["tau_schedule"],
        wav_augment=build_wav_augment(
            hparams["wav_augment"],
            noise_csv=hparams["noise_csv"],
            rir_csv=hparams["rir_csv"],
            add_noise=hparams["add_noise"],
            add_reverb=hparams["add_reverb"],
        ),
        lr_annealing=None if per_step else hparams["lr_annealing"],
        lr_step_schedule=hparams["lr_step_schedule"] if per_step else None,
        lr_warmup_epochs=hparams["lr_warmup_epochs"] if per_step else 0.0,
        train_logger=hparams["train_logger"],
    )
    return brain, train_data, hparams


def loss_share(events, on_device):
    """The KD loss's share of the step time in profiler events.

    Arguments
    ---------
    events : list of torch.autograd.profiler_util.FunctionEvent
        ``prof.events()`` of steps run inside ``record_function``
        ranges named ``train_step``, with the loss in ``kd_loss`` ranges.
    on_device : bool
        Use the kernel time on the accelerator (else the CPU time).

    Returns
    -------
    dict
        ``loss_ms`` and ``step_ms`` (per profiled step, that clock) and
        ``share`` (their ratio), ``clock`` ("device" or "cpu").

    Example
    -------
    >>> from torch.profiler import profile, record_function
    >>> with profile() as prof:
    ...     for _ in range(2):
    ...         with record_function("train_step"):
    ...             x = torch.randn(200, 200) @ torch.randn(200, 200)
    ...             with record_function("kd_loss"):
    ...                 y = x.softmax(-1).sum()
    >>> result = loss_share(prof.events(), on_device=False)
    >>> result["clock"], 0 < result["share"] < 1
    ('cpu', True)
    """
    ranges = {LOSS_RANGE: [], STEP_RANGE: []}
    for event in events:
        if event.name in ranges and event.device_type == DeviceType.CPU:
            ranges[event.name].append(event)
    steps = len(ranges[STEP_RANGE])
    if steps == 0:
        raise ValueError(f"no '{STEP_RANGE}' range in the profiler events")
    clock = "device" if on_device else "cpu"

    def total(name):
        if clock == "device":
            return sum(e.device_time_total for e in ranges[name])
        return sum(e.cpu_time_total for e in ranges[name])

    if clock == "device" and total(STEP_RANGE) == 0:
        clock = "cpu"
    loss_us, step_us = total(LOSS_RANGE), total(STEP_RANGE)
    return {
        "loss_ms": loss_us / steps / 1000,
        "step_ms": step_us / steps / 1000,
        "share": loss_us / step_us,
        "clock": clock,
    }


def _start_steps(brain, loader):
    """Readies a brain for ``fit_batch`` without running ``fit``."""
    brain.steps_per_epoch = max(1, len(loader))  # for a per-step LR schedule
    brain.on_fit_start()
    schedule = getattr(brain.hparams, "tau_schedule", None)
    if schedule is not None and hasattr(schedule, "set_steps_per_epoch"):
        schedule.set_steps_per_epoch(max(1, len(loader)))
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN, 1)


def measure_throughput(
    argv, steps=10, warmup=3, profile_steps=3, time_epoch=False
):
    """Measures one configuration's step and epoch throughput.

    Arguments
    ---------
    argv : list of str
        ``train_trkd.py``'s arguments (the run options select device and
        precision).
    steps : int
        Timed steps on a fixed batch.
    warmup : int
        Untimed steps first.
    profile_steps : int
        Steps run under the profiler for the KD loss's share (0: none; no
        share either for ``none``).
    time_epoch : bool
        Also train one whole epoch through the data loader, timed.

    Returns
    -------
    dict
        ``batch_size``, ``step_ms``, ``step_samples_per_s`` and, when
        measured, ``epoch_s``, ``epoch_samples``, ``epoch_samples_per_s``,
        ``kd_loss_ms``, ``kd_step_ms``, ``kd_loss_share``,
        ``kd_share_clock``. A sample is one example of the loader's batch
        (with ``concat_original`` the models see it twice).

    Example
    -------
    >>> measure_throughput(["x.yaml"], steps=0)
    Traceback (most recent call last):
    ...
    ValueError: steps must be >= 1, got 0
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    brain, train_data, hparams = build_brain(argv)
    loader_kwargs = hparams["train_dataloader_options"]
    result = {}
    if time_epoch:
        brain.fit([1], train_data, train_loader_kwargs=loader_kwargs)
        result["epoch_s"] = brain.epoch_seconds
        result["epoch_samples"] = brain.samples_seen
        result["epoch_samples_per_s"] = brain.samples_seen / brain.epoch_seconds
    loader = brain.make_dataloader(
        train_data, stage=sb.Stage.TRAIN, **loader_kwargs
    )
    batch = next(iter(loader))
    if not time_epoch:
        _start_steps(brain, loader)
    batch_size = batch.sig[0].shape[0]
    for _ in range(warmup):
        brain.fit_batch(batch)
    synchronize(brain.device)
    start = time.perf_counter()
    for _ in range(steps):
        brain.fit_batch(batch)
    synchronize(brain.device)
    seconds = time.perf_counter() - start
    result["batch_size"] = batch_size
    result["step_ms"] = 1000 * seconds / steps
    result["step_samples_per_s"] = steps * batch_size / seconds
    if profile_steps > 0 and brain.kd_loss.distils:
        plain = brain.kd_loss
        brain.kd_loss = ProfiledLoss(plain)
        on_device = torch.device(brain.device).type == "cuda"
        activities = [ProfilerActivity.CPU]
        if on_device:
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            for _ in range(profile_steps):
                with record_function(STEP_RANGE):
                    brain.fit_batch(batch)
            synchronize(brain.device)
        brain.kd_loss = plain
        share = loss_share(prof.events(), on_device)
        result["kd_loss_ms"] = share["loss_ms"]
        result["kd_step_ms"] = share["step_ms"]
        result["kd_loss_share"] = share["share"]
        result["kd_share_clock"] = share["clock"]
    del brain, batch, loader
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result
