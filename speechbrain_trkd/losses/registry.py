"""The methods by name, the named configurations, and the wrapper the
recipe's YAML builds.

Adding a method is one file (a :class:`~speechbrain_trkd.losses.base.
Distiller` subclass) plus one line in ``DISTILLERS``. A named configuration
is a method with preset options (the TRKD paper's ablation rows, a fixed
tau): a recipe user picks it like a method, ``--kd_method=tmkd_nckd``.

Authors
 * speechbrain-trkd developers 2026
"""

from collections.abc import Mapping

import torch

from speechbrain_trkd.losses.base import NoDistillation
from speechbrain_trkd.losses.dist import DIST
from speechbrain_trkd.losses.dkd import DKD
from speechbrain_trkd.losses.emb_cos import EmbeddingCosine
from speechbrain_trkd.losses.gkd import GKD
from speechbrain_trkd.losses.kd import KD
from speechbrain_trkd.losses.nkd import NKD
from speechbrain_trkd.losses.standardize import standardize_logits
from speechbrain_trkd.losses.trkd import TRKD

DISTILLERS = {
    "none": NoDistillation,
    "kd": KD,
    "dkd": DKD,
    "trkd": TRKD,
    "gkd": GKD,
    "nkd": NKD,
    "dist": DIST,
    "emb_cos": EmbeddingCosine,
}
# Name -> (method, preset options). TRKD's ablation rows (Kim et al.,
# ICASSP 2026): the three masses with DKD's non-target term, and DKD's
# binary target term with the confusion-set term; TRKD without the mass
# term; TRKD at a constant tau.
CONFIGURATIONS = {
    "tmkd_nckd": (
        "trkd",
        {"target_term": "three_mass", "nontarget_term": "all"},
    ),
    "tckd_cfkd": (
        "trkd",
        {"target_term": "binary", "nontarget_term": "confusion"},
    ),
    "trkd_no_mass": ("trkd", {"lambda_mass": 0.0}),
    "trkd_fixed_tau": ("trkd", {"fixed_tau": 0.3}),
}
# The reference loss function of every method that has one.
KD_METHODS = {
    name: cls.loss_fn for name, cls in DISTILLERS.items() if cls.loss_fn
}


def _known():
    """Every name a method may be given by."""
    return ", ".join([*DISTILLERS, *CONFIGURATIONS])


def resolve_method(method, options):
    """The method class of a name and its options: the configuration's
    presets, then ``method_options``' entries for the method and for the
    configuration, then the keyword options.

    Arguments
    ---------
    method : str
        A key of ``DISTILLERS`` or ``CONFIGURATIONS``.
    options : dict
        Keyword options; ``method_options`` (name -> options) is removed
        from it.

    Returns
    -------
    cls : type
    options : dict

    Example
    -------
    >>> given = {"method_options": {"kd": {}, "trkd": {"lambda_conf": 3.0}}}
    >>> cls, opts = resolve_method("tckd_cfkd", given)
    >>> cls.__name__, opts["lambda_conf"], opts["target_term"], given
    ('TRKD', 3.0, 'binary', {})
    >>> resolve_method("fitnet", {})
    Traceback (most recent call last):
    ...
    ValueError: unknown distillation method 'fitnet'; known: none, kd, ...
    """
    base, presets = CONFIGURATIONS.get(method, (method, {}))
    if base not in DISTILLERS:
        raise ValueError(
            f"unknown distillation method {method!r}; known: {_known()}"
        )
    per_method = options.pop("method_options", None) or {}
    if not isinstance(per_method, Mapping):
        raise TypeError(
            "method_options must map method names to option dicts, got "
            f"{type(per_method).__name__}"
        )
    for name, entry in per_method.items():
        if name not in DISTILLERS and name not in CONFIGURATIONS:
            raise ValueError(
                f"method_options has an entry for unknown method {name!r}; "
                f"known: {_known()}"
            )
        if entry is not None and not isinstance(entry, Mapping):
            raise TypeError(
                f"method_options[{name!r}] must be a dict of options, got "
                f"{type(entry).__name__}"
            )
    chosen = dict(presets)
    chosen.update(per_method.get(base) or {})
    if method != base:
        chosen.update(per_method.get(method) or {})
    for name in chosen:
        if name in options and name not in presets:
            raise TypeError(
                f"option {name!r} for method {method!r} is given both in "
                "method_options and as a keyword"
            )
    return DISTILLERS[base], {**chosen, **options}


class DistillationLoss(torch.nn.Module):
    """Distillation loss selected by name, as used by the recipe YAML.

    Builds the method of ``DISTILLERS`` or ``CONFIGURATIONS`` (``none``:
    no distillation) and returns, per call, the loss and detached
    statistics for logging; what the method needs is read from it
    (``uses_tau``, ``uses_embeddings``, ``distils``), never from its name.

    Arguments
    ---------
    method : str
        A key of ``DISTILLERS`` or ``CONFIGURATIONS``.
    temperature : float
        Temperature given to every method that takes one.
    standardize : bool
        Apply :func:`standardize_logits` to both logits first (methods that
        allow it: kd, dkd, trkd and TRKD's configurations).
    **options
        Hyperparameters of the method (e.g. ``alpha``, ``beta`` for dkd;
        ``lambda_mass``, ``lambda_conf`` for trkd; ``hcm_n`` for gkd),
        checked against its loss function. ``method_options`` may map
        method names to such dicts (as in the recipe YAML, so that switching
        ``method`` switches the options too); only the entries of the
        selected method (and of its base method) are used, and an option
        may not be given both ways.

    Example
    -------
    >>> criterion = DistillationLoss("trkd", temperature=2.0, lambda_conf=4.0)
    >>> criterion.uses_tau
    True
    >>> student = torch.randn(4, 1, 10, requires_grad=True)
    >>> teacher = torch.randn(4, 1, 10)
    >>> targets = torch.tensor([[1], [2], [3], [4]])
    >>> loss, stats = criterion(student, teacher, targets, tau=0.5)
    >>> sorted(stats)
    ['conf_size', 'kd', 'kd_conf', 'kd_mass']
    >>> torch.allclose(loss, stats["kd_mass"] + stats["kd_conf"])
    True
    >>> loss.backward()
    >>> DistillationLoss("none")(student, teacher, targets)
    (tensor(0.), {})
    >>> per_method = {"dkd": {"beta": 2.0}, "trkd": {"lambda_conf": 3.0}}
    >>> DistillationLoss("dkd", method_options=per_method).options
    {'alpha': 1.0, 'beta': 2.0}
    >>> DistillationLoss("trkd_fixed_tau").uses_tau
    False
    """

    def __init__(
        self, method="trkd", temperature=4.0, standardize=False, **options
    ):
        super().__init__()
        cls, options = resolve_method(method, dict(options))
        if standardize and not cls.standardizable:
            allowed = ", ".join(
                n for n, c in DISTILLERS.items() if c.standardizable
            )
            raise ValueError(
                f"standardize=True applies to {allowed} only, not to "
                f"method {method!r}"
            )
        self.method = method
        self.distiller = cls(temperature=temperature, **options)
        self.temperature = self.distiller.temperature
        self.standardize = bool(standardize)

    @property
    def options(self):
        """The method's options, defaults included."""
        return self.distiller.options

    @property
    def loss_fn(self):
        """The method's reference loss function (None for ``none``)."""
        return self.distiller.loss_fn

    @property
    def uses_tau(self):
        """Whether the method takes tau from the curriculum."""
        return self.distiller.uses_tau

    @property
    def uses_embeddings(self):
        """Whether the method reads embeddings rather than logits."""
        return self.distiller.uses_embeddings

    @property
    def distils(self):
        """Whether there is a KD term (and so a teacher to run)."""
        return self.distiller.distils

    def extra_repr(self):
        """Summary shown by print(module).

        Example
        -------
        >>> DistillationLoss("dkd", beta=2.0).extra_repr()
        "method='dkd', temperature=4.0, standardize=False, alpha=1.0, beta=2.0"
        """
        parts = [
            f"method={self.method!r}",
            f"temperature={self.temperature}",
            f"standardize={self.standardize}",
        ]
        parts += [f"{name}={value!r}" for name, value in self.options.items()]
        fixed_tau = getattr(self.distiller, "fixed_tau", None)
        if fixed_tau is not None:
            parts.append(f"fixed_tau={fixed_tau!r}")
        return ", ".join(parts)

    def forward(
        self,
        student_logits,
        teacher_logits,
        targets,
        tau=1.0,
        student_emb=None,
        teacher_emb=None,
    ):
        """Computes the selected distillation loss and its statistics.

        Arguments
        ---------
        student_logits : torch.Tensor
            Student logits, [B, C] or [B, 1, C].
        teacher_logits : torch.Tensor
            Teacher logits, same shape (never receives gradient).
        targets : torch.Tensor
            Target class indices, [B] or [B, 1].
        tau : float
            Triage threshold, for the methods with ``uses_tau``.
        student_emb, teacher_emb : torch.Tensor, optional
            Embeddings [B, D] or [B, 1, D], for ``uses_embeddings``.

        Returns
        -------
        loss : torch.Tensor
            0-dim loss; a float32 zero for "none".
        stats : dict
            Detached 0-dim tensors: "kd" (the loss) for every method but
            "none"; for TRKD also "kd_mass" and "kd_conf" (the two
            T^2-scaled, lambda-weighted terms) and "conf_size" (mean size
            of the confusion set over the batch).

        Example
        -------
        >>> from speechbrain_trkd.losses.dkd import dkd_loss
        >>> criterion = DistillationLoss("dkd", temperature=2.0, beta=4.0)
        >>> student, teacher = torch.randn(3, 1, 6), torch.randn(3, 1, 6)
        >>> targets = torch.tensor([0, 5, 2])
        >>> loss, stats = criterion(student, teacher, targets)
        >>> expected = dkd_loss(student, teacher, targets, beta=4.0,
        ...                     temperature=2.0)
        >>> torch.allclose(loss, expected), list(stats)
        (True, ['kd'])
        """
        if self.standardize:
            student_logits = standardize_logits(student_logits)
            teacher_logits = standardize_logits(teacher_logits.detach())
        return self.distiller(
            student_logits,
            teacher_logits,
            targets,
            tau=tau,
            student_emb=student_emb,
            teacher_emb=teacher_emb,
        )
