"""Input handling and log-space helpers shared by the distillation losses.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import math

import torch
import torch.nn.functional as F

# Stand-in for log(0) in masked log-probabilities. It is finite, so that
# exp() gives exactly 0, 0 * (_NEG - _NEG) gives 0 and no gradient path
# ever meets an infinity; it lies far below any real log-probability.
_NEG = -1.0e30


def _no_autocast(tensor):
    """Returns a context that disables autocast on the device of tensor."""
    device_type = tensor.device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _flatten_scores(tensor, name):
    """Checks a [B, C] or [B, 1, C] score tensor and returns it as [B, C]."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor)}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got {tensor.dtype}"
        )
    if tensor.dim() == 3 and tensor.shape[1] == 1:
        tensor = tensor.squeeze(1)
    if tensor.dim() != 2:
        raise ValueError(
            f"{name} must have shape [B, C] or [B, 1, C], "
            f"got {tuple(tensor.shape)}"
        )
    return tensor


def _working_dtype(*tensors):
    """Float32, or float64 when any input is float64."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _prepare_pair(student, teacher, names=("student_logits", "teacher_logits")):
    """Flattens, shape-checks, upcasts and detaches the teacher."""
    student = _flatten_scores(student, names[0])
    teacher = _flatten_scores(teacher, names[1])
    if student.shape != teacher.shape:
        raise ValueError(
            f"{names[0]} has shape {tuple(student.shape)} but {names[1]} has "
            f"shape {tuple(teacher.shape)} (after flattening [B, 1, C])"
        )
    if student.shape[1] < 2:
        raise ValueError(
            f"{names[0]} must have at least 2 classes, got {student.shape[1]}"
        )
    dtype = _working_dtype(student, teacher)
    return student.to(dtype), teacher.detach().to(dtype)


def _prepare_targets(targets, batch, num_classes):
    """Checks [B] or [B, 1] integer targets and returns them as int64 [B].

    The range check needs the values on the host, so it is only done for CPU
    tensors; on an accelerator an out-of-range target is caught by the
    device-side index check of gather / scatter.
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets)}")
    if targets.dtype.is_floating_point or targets.dtype in (
        torch.bool,
        torch.complex64,
        torch.complex128,
    ):
        raise TypeError(
            f"targets must hold integer class indices, got {targets.dtype}"
        )
    if targets.dim() == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.dim() != 1 or targets.shape[0] != batch:
        raise ValueError(
            f"targets must have shape [{batch}] or [{batch}, 1] to match the "
            f"logits, got {tuple(targets.shape)}"
        )
    targets = targets.long()
    if targets.device.type == "cpu" and batch > 0:
        bad = (targets < 0) | (targets >= num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"targets[{index}] = {int(targets[index])} is not a valid "
                f"class index for logits with {num_classes} classes"
            )
    return targets


def _check_temperature(temperature):
    """Returns the temperature as a positive float."""
    temperature = float(temperature)
    if not temperature > 0.0 or not math.isfinite(temperature):
        raise ValueError(
            f"temperature must be a positive finite number, got {temperature}"
        )
    return temperature


def _check_tau(tau):
    """Returns the triage threshold as a positive float."""
    tau = float(tau)
    if not tau > 0.0 or math.isnan(tau):
        raise ValueError(f"tau must be a positive number, got {tau}")
    return tau


def _target_mask(targets, num_classes):
    """One-hot boolean mask [B, C] of the target classes."""
    return F.one_hot(targets, num_classes).bool()


def _masked_logsumexp(log_p, mask):
    """Log of the summed probability over mask, per row.

    An empty mask gives about ``_NEG`` (standing for log 0) with a zero
    gradient instead of -inf and a NaN gradient.
    """
    return torch.logsumexp(log_p.masked_fill(~mask, _NEG), dim=-1)


def _masked_renormalise(log_p, mask):
    """Log of the distribution restricted to mask and renormalised.

    Entries outside the mask are set to ``_NEG``; a selected branch that is
    not used gets zero gradient from torch.where and holds finite values, so
    no NaN can come back.
    """
    log_mass = _masked_logsumexp(log_p, mask).unsqueeze(-1)
    return torch.where(mask, log_p - log_mass, torch.full_like(log_p, _NEG))


def _masked_kl(log_t, log_s, mask):
    """KL between teacher and student restricted to mask, renormalised.

    Returns 0 for rows whose mask is empty.
    """
    return F.kl_div(
        _masked_renormalise(log_s, mask),
        _masked_renormalise(log_t, mask),
        reduction="none",
        log_target=True,
    ).sum(dim=-1)


def _log_softmax_pair(student, teacher, temperature):
    """Temperature-scaled log-softmax of student and teacher logits."""
    return (
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
    )


def _gather_target(log_p, targets):
    """Picks the target entry of each row: [B, C] -> [B]."""
    return log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
