"""What a teacher's posterior says beyond the label, per temperature and
margin: the figures a user needs to choose ``kd_temperature``,
``kd_margin`` and ``kd_weight``.

A KD term only teaches what the teacher's softened posterior holds besides
the target. When the target probability is 1 to within 1e-4, KD is the
hard-label loss again; when the non-target distribution is close to
uniform, it holds no structure and ``T^2`` times its divergence swamps the
student's own loss. For training crops of a corpus this module measures,
per (temperature, margin):

* the teacher's target probability and its non-target mass (medians);
* the entropy of the renormalised non-target distribution (nats; the
  uniform distribution's is ``log(C - 1)``) and how many classes hold 95 %
  of that mass;
* TRKD's confusion-set size at the curriculum's taus;
* each KD term at the given weight, as a ratio to the AAM loss of an
  untrained student on the same crops (KD; DKD's target and non-target
  terms; TRKD's mass and confusion-set terms at each tau).

Authors
 * speechbrain-trkd developers 2026
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_trkd.brain import cosine_logits
from speechbrain_trkd.losses import DistillationLoss, triage_partition
from speechbrain_trkd.plots import figure_class, save_figure

# Share of the non-target mass whose class count is reported.
MASS_SHARE = 0.95


def posterior_statistics(teacher_logits, targets, temperature, taus):
    """Per-crop figures of a teacher's posterior at one temperature.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[N, C]`` logits (scale times cosine, with any margin applied).
    targets : torch.Tensor
        ``[N]`` target classes.
    temperature : float
        Softmax temperature.
    taus : list of float
        TRKD thresholds whose confusion-set sizes are counted.

    Returns
    -------
    dict of torch.Tensor
        ``[N]`` each: ``p_target``, ``nontarget_mass``,
        ``nontarget_entropy``, ``classes_95``, ``top1_correct`` and
        ``conf_size@<tau>``.

    Example
    -------
    >>> logits = torch.tensor([[4.0, 1.0, 1.0, 1.0]]).log()
    >>> stats = posterior_statistics(logits, torch.tensor([0]), 1.0, [0.5])
    >>> round(stats["p_target"].item(), 3), stats["classes_95"].item()
    (0.571, 3.0)
    >>> round(stats["nontarget_entropy"].item(), 4) == round(math.log(3), 4)
    True
    >>> stats["conf_size@0.5"].item()
    2.0
    """
    logits = teacher_logits.detach().double()
    log_p = F.log_softmax(logits / temperature, dim=-1)
    target_mask = F.one_hot(targets, logits.shape[-1]).bool()
    p_target = log_p[target_mask].exp()
    log_q = log_p.masked_fill(target_mask, -math.inf)
    log_q = log_q - torch.logsumexp(log_q, dim=-1, keepdim=True)
    q = log_q.exp()
    entropy = -(q * log_q.masked_fill(target_mask, 0.0)).sum(-1)
    ordered = q.sort(dim=-1, descending=True).values.cumsum(-1)
    classes_95 = (ordered < MASS_SHARE).sum(-1) + 1
    stats = {
        "p_target": p_target,
        "nontarget_mass": 1.0 - p_target,
        "nontarget_entropy": entropy,
        "classes_95": classes_95.double(),
        "top1_correct": (logits.argmax(-1) == targets).double(),
    }
    for tau in taus:
        confusion, _ = triage_partition(logits, targets, tau, temperature)
        stats[f"conf_size@{tau:g}"] = confusion.sum(-1).double()
    return stats


def kd_term_sizes(
    student_logits, teacher_logits, targets, temperature, taus, options
):
    """Each KD term's value on one batch (unweighted, as the recipe's losses
    compute them, ``T^2`` included).

    Arguments
    ---------
    student_logits, teacher_logits : torch.Tensor
        ``[N, C]`` logits.
    targets : torch.Tensor
        ``[N]`` target classes.
    temperature : float
        Softmax temperature.
    taus : list of float
        TRKD thresholds.
    options : dict
        The recipe's ``kd_method_options`` (``dkd``: alpha, beta;
        ``trkd``: lambda_mass, lambda_conf).

    Returns
    -------
    dict of float
        ``kd``, ``dkd_target``, ``dkd_nontarget`` and, per tau,
        ``trkd_mass@<tau>`` and ``trkd_conf@<tau>``.

    Example
    -------
    >>> student, teacher = torch.zeros(2, 5), torch.randn(2, 5)
    >>> terms = kd_term_sizes(student, teacher, torch.tensor([0, 1]), 2.0,
    ...                       [1.0], {"dkd": {"alpha": 1.0, "beta": 8.0},
    ...                               "trkd": {}})
    >>> sorted(terms)
    ['dkd_nontarget', 'dkd_target', 'kd', 'trkd_conf@1', 'trkd_mass@1']
    """
    dkd = dict(options.get("dkd", {}))
    alpha, beta = dkd.pop("alpha", 1.0), dkd.pop("beta", 8.0)
    sizes = {}
    criteria = {
        "kd": DistillationLoss("kd", temperature=temperature),
        "dkd_target": DistillationLoss(
            "dkd", temperature=temperature, alpha=alpha, beta=0.0
        ),
        "dkd_nontarget": DistillationLoss(
            "dkd", temperature=temperature, alpha=0.0, beta=beta
        ),
    }
    with torch.no_grad():
        for name, criterion in criteria.items():
            loss, _ = criterion(student_logits, teacher_logits, targets)
            sizes[name] = float(loss)
        trkd = DistillationLoss(
            "trkd", temperature=temperature, **options.get("trkd", {})
        )
        for tau in taus:
            _, stats = trkd(student_logits, teacher_logits, targets, tau=tau)
            sizes[f"trkd_mass@{tau:g}"] = float(stats["kd_mass"])
            sizes[f"trkd_conf@{tau:g}"] = float(stats["kd_conf"])
    return sizes


def signal_rows(
    teacher_cosine,
    student_cosine,
    targets,
    student_loss,
    temperatures,
    margins,
    taus,
    kd_weight,
    kd_scale=30.0,
    options=None,
):
    """The report's rows: one per (temperature, margin).

    Arguments
    ---------
    teacher_cosine, student_cosine : torch.Tensor
        ``[N, C]`` cosine scores of the teacher and of an untrained student
        on the same crops, classes aligned.
    targets : torch.Tensor
        ``[N]`` target classes.
    student_loss : float
        The untrained student's AAM loss on those crops.
    temperatures, margins, taus : list of float
        The grid, and TRKD's thresholds.
    kd_weight : float
        The weight each KD term is scaled by against the AAM loss.
    kd_scale : float
        Logits are ``kd_scale`` times the (margin-adjusted) cosine.
    options : dict, optional
        The recipe's ``kd_method_options``.

    Returns
    -------
    list of dict
        Medians of :func:`posterior_statistics`, ``top1`` (the teacher's
        accuracy on the cosine, whatever the margin), and
        ``<term>/aam``: ``kd_weight`` times each term of
        :func:`kd_term_sizes`, divided by ``student_loss``.

    Example
    -------
    >>> torch.manual_seed(0) is not None
    True
    >>> teacher, student = torch.rand(8, 6) * 2 - 1, torch.zeros(8, 6)
    >>> rows = signal_rows(teacher, student, torch.arange(8) % 6, 12.0,
    ...                    [1.0, 2.0], [0.0], [0.5], kd_weight=0.1)
    >>> len(rows), rows[0]["temperature"], "kd/aam" in rows[0]
    (2, 1.0, True)
    """
    rows = []
    for margin in margins:
        teacher = cosine_logits(teacher_cosine, targets, kd_scale, margin)
        student = cosine_logits(student_cosine, targets, kd_scale, margin)
        for temperature in temperatures:
            stats = posterior_statistics(teacher, targets, temperature, taus)
            row = {"temperature": float(temperature), "margin": float(margin)}
            stats.pop("top1_correct")  # the margin moves the target only
            row["top1"] = float(
                (teacher_cosine.argmax(-1) == targets).double().mean()
            )
            row.update({k: float(v.median()) for k, v in stats.items()})
            row["uniform_entropy"] = math.log(teacher.shape[-1] - 1)
            terms = kd_term_sizes(
                student, teacher, targets, temperature, taus, options or {}
            )
            row.update(
                {
                    f"{name}/aam": kd_weight * value / student_loss
                    for name, value in terms.items()
                }
            )
            rows.append(row)
    return rows


def format_signal_table(rows, taus):
    """A markdown table of :func:`signal_rows`.

    Example
    -------
    >>> row = {"temperature": 2.0, "margin": 0.0, "top1": 0.9,
    ...        "p_target": 0.84, "nontarget_mass": 0.16,
    ...        "nontarget_entropy": 5.19, "uniform_entropy": 6.1,
    ...        "classes_95": 301.0, "conf_size@0.05": 3.0, "kd/aam": 0.02,
    ...        "dkd_target/aam": 0.01, "dkd_nontarget/aam": 0.5,
    ...        "trkd_mass@0.05": 0.0, "trkd_mass@0.05/aam": 0.01,
    ...        "trkd_conf@0.05/aam": 0.03}
    >>> print(format_signal_table([row], [0.05]).splitlines()[2][:50])
    | 2 | 0 | 0.900 | 0.84 | 0.16 | 5.19 (6.10) | 301
    """
    head = [
        "T",
        "margin",
        "top-1",
        "p_target",
        "non-target mass",
        "non-target entropy (uniform)",
        f"classes for {MASS_SHARE:.0%} of it",
        *(f"conf. set tau={tau:g}" for tau in taus),
        "KD / AAM",
        "DKD target / AAM",
        "DKD non-target / AAM",
        *(f"TRKD mass tau={tau:g} / AAM" for tau in taus[-1:]),
        *(f"TRKD conf. tau={tau:g} / AAM" for tau in taus[-1:]),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            f"{row['temperature']:g}",
            f"{row['margin']:g}",
            f"{row['top1']:.3f}",
            f"{row['p_target']:.4g}",
            f"{row['nontarget_mass']:.2g}",
            f"{row['nontarget_entropy']:.2f} ({row['uniform_entropy']:.2f})",
            f"{row['classes_95']:.0f}",
            *(f"{row[f'conf_size@{tau:g}']:.0f}" for tau in taus),
            f"{row['kd/aam']:.2g}",
            f"{row['dkd_target/aam']:.2g}",
            f"{row['dkd_nontarget/aam']:.2g}",
            *(f"{row[f'trkd_mass@{tau:g}/aam']:.2g}" for tau in taus[-1:]),
            *(f"{row[f'trkd_conf@{tau:g}/aam']:.2g}" for tau in taus[-1:]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_signal(rows, taus, path):
    """Draws the report against the temperature, one line per margin:
    p_target, the non-target entropy (and the uniform one), the
    confusion-set size at the last tau, and the KD terms over the AAM loss.

    Returns the PNG's path, or None without matplotlib.

    Example
    -------
    >>> import os, tempfile
    >>> rows = signal_rows(torch.rand(8, 6), torch.zeros(8, 6),
    ...                    torch.arange(8) % 6, 12.0, [1.0, 2.0], [0.0, 0.2],
    ...                    [0.5], kd_weight=0.1)
    >>> path = plot_signal(rows, [0.5], os.path.join(tempfile.mkdtemp(),
    ...                                               "signal.png"))
    >>> path is None or os.path.getsize(path) > 0
    True
    """
    Figure = figure_class()
    if Figure is None:
        return None
    fig = Figure(figsize=(12, 3.4))
    panels = [
        ("p_target", "target probability (median)", "log"),
        ("nontarget_entropy", "non-target entropy, nats", "linear"),
        (f"conf_size@{taus[-1]:g}", f"confusion set, tau={taus[-1]:g}", "log"),
        ("kd/aam", "weighted KD term / AAM loss", "log"),
    ]
    for index, (key, title, scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        for margin in sorted({row["margin"] for row in rows}):
            mine = [row for row in rows if row["margin"] == margin]
            ax.plot(
                [row["temperature"] for row in mine],
                [max(row[key], 1e-12) for row in mine],
                marker="o",
                label=f"margin {margin:g}",
            )
        if key == "nontarget_entropy":
            ax.axhline(rows[0]["uniform_entropy"], color="grey", ls=":")
        ax.set_yscale(scale)
        ax.set_xlabel("temperature T")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
