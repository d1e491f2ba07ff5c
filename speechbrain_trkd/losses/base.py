"""The base class of the distillation methods.

A method is a small module with a reference loss function (``loss_fn``, the
function of its own file) and declarations of what it needs, so that no code
outside a method branches on its name: ``uses_tau`` (it takes TRKD's cutoff
from the curriculum), ``uses_embeddings`` (it reads embeddings, not logits),
``standardizable`` (logit standardisation may precede it) and ``distils``
(False only for the method without distillation, whose teacher never runs).

Authors
 * speechbrain-trkd developers 2026
"""

import inspect

import torch

from speechbrain_trkd.losses.common import _check_temperature

# Arguments the method supplies itself; they cannot be given as options.
DATA_ARGS = (
    "student_logits",
    "teacher_logits",
    "targets",
    "tau",
    "temperature",
    "student_emb",
    "teacher_emb",
)


class Distiller(torch.nn.Module):
    """One distillation method: its loss, its options and what it needs.

    Subclasses set ``name`` and ``loss_fn`` (a ``staticmethod``), and the
    declarations they differ in; the default ``forward`` calls ``loss_fn``
    on the logits with the method's options, the targets and the
    temperature when it takes them.

    Arguments
    ---------
    temperature : float
        Softmax temperature, for the methods that take one.
    **options
        Hyperparameters of ``loss_fn`` (checked against its signature).

    Example
    -------
    >>> from speechbrain_trkd.losses.kd import KD
    >>> method = KD(temperature=2.0)
    >>> method.uses_tau, method.distils, method.options
    (False, True, {})
    >>> loss, stats = method(torch.zeros(2, 3), torch.zeros(2, 3), None)
    >>> float(loss), list(stats)
    (0.0, ['kd'])
    >>> KD(beta=1.0)
    Traceback (most recent call last):
    ...
    TypeError: DistillationLoss got an unexpected option 'beta' for method ...
    """

    name = None
    loss_fn = None
    uses_tau = False
    uses_embeddings = False
    standardizable = False
    distils = True

    def __init__(self, temperature=4.0, **options):
        super().__init__()
        self.temperature = _check_temperature(temperature)
        params = (
            inspect.signature(self.loss_fn).parameters if self.loss_fn else {}
        )
        tunable = {
            name: p.default
            for name, p in params.items()
            if name not in DATA_ARGS
        }
        for option in options:
            if option not in tunable:
                allowed = ", ".join(tunable) or "none"
                raise TypeError(
                    f"DistillationLoss got an unexpected option {option!r} "
                    f"for method {self.name!r}; its options are: {allowed}"
                )
        self.options = {**tunable, **options}
        self._takes_targets = "targets" in params
        self._takes_temperature = "temperature" in params

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """The loss and its detached statistics (``kd``: the loss).

        Arguments
        ---------
        student_logits, teacher_logits : torch.Tensor
            [B, C] or [B, 1, C].
        targets : torch.Tensor
            [B] or [B, 1] class indices.
        tau : float
            TRKD's cutoff (methods with ``uses_tau``).
        student_emb, teacher_emb : torch.Tensor, optional
            Embeddings (methods with ``uses_embeddings``).

        Returns
        -------
        loss : torch.Tensor
        stats : dict
        """
        kwargs = dict(self.options)
        if self._takes_targets:
            kwargs["targets"] = targets
        if self._takes_temperature:
            kwargs["temperature"] = self.temperature
        loss = self.loss_fn(student_logits, teacher_logits, **kwargs)
        return loss, {"kd": loss.detach()}


class NoDistillation(Distiller):
    """No KD term: the student's own loss alone; the teacher never runs.

    Example
    -------
    >>> NoDistillation()(torch.zeros(2, 3), None, None)
    (tensor(0.), {})
    """

    name = "none"
    distils = False

    def forward(self, student_logits, teacher_logits, targets, **unused):
        """A float32 zero on the student logits' device, no statistics."""
        device = (
            student_logits.device
            if isinstance(student_logits, torch.Tensor)
            else None
        )
        return torch.zeros((), dtype=torch.float32, device=device), {}
