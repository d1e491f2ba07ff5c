"""Tests for speechbrain_trkd.losses.

Every loss is checked against values worked out by hand or with numpy on
small examples, KD / DKD / TRKD also against a plain float64 reference that
follows the definitions literally (Python loops and sorting), and all of
them for gradients, dtypes, extreme logits and the DistillationLoss wrapper.

Authors
 * speechbrain-trkd developers 2026
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_trkd.losses import (
    KD_METHODS,
    DistillationLoss,
    dist_loss,
    dkd_loss,
    embedding_cosine_loss,
    gkd_loss,
    kd_loss,
    nkd_loss,
    standardize_logits,
    triage_partition,
    trkd_loss,
)
from speechbrain_trkd.losses.trkd import _trkd_terms

# Teacher / student probabilities of the hand-worked examples (target 0).
P_T = [0.5, 0.25, 0.15, 0.1]
P_S = [0.4, 0.3, 0.2, 0.1]


def logits_for(probs, temperature=1.0):
    """Logits whose softmax at the given temperature is probs: [1, C]."""
    return temperature * torch.tensor([probs], dtype=torch.float64).log()


def kl(p, q):
    """KL(p || q) of two probability lists, plain Python."""
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


# ---------------------------------------------------------------------------
# Plain float64 reference implementation (loops, Python sorting)
# ---------------------------------------------------------------------------
def ref_softmax(row, temperature):
    z = np.asarray(row, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def ref_confusion_set(p, y, tau):
    """Classes whose higher-ranked non-target q mass is below tau."""
    others = [j for j in range(len(p)) if j != y]
    if tau >= 1.0:
        return set(others)
    q = {j: p[j] / (1.0 - p[y]) for j in others}
    ranked = sorted(others, key=lambda j: (-q[j], j))
    chosen, above = set(), 0.0
    for j in ranked:
        if above < tau:
            chosen.add(j)
        above += q[j]
    return chosen


def ref_kd(zs, zt, temperature):
    total = 0.0
    for row_s, row_t in zip(zs, zt, strict=True):
        ps = ref_softmax(row_s, temperature)
        pt = ref_softmax(row_t, temperature)
        total += kl(pt, ps)
    return temperature**2 * total / len(zs)


def ref_dkd(zs, zt, ys, alpha, beta, temperature):
    total = 0.0
    for row_s, row_t, y in zip(zs, zt, ys, strict=True):
        ps = ref_softmax(row_s, temperature)
        pt = ref_softmax(row_t, temperature)
        tckd = kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        others = [j for j in range(len(ps)) if j != y]
        qt = [pt[j] / (1 - pt[y]) for j in others]
        qs = [ps[j] / (1 - ps[y]) for j in others]
        total += alpha * tckd + beta * kl(qt, qs)
    return temperature**2 * total / len(zs)


def ref_trkd(zs, zt, ys, tau, temperature, lambda_mass, lambda_conf):
    total = 0.0
    for row_s, row_t, y in zip(zs, zt, ys, strict=True):
        ps = ref_softmax(row_s, temperature)
        pt = ref_softmax(row_t, temperature)
        conf = sorted(ref_confusion_set(pt, y, tau))
        back = [j for j in range(len(pt)) if j != y and j not in conf]
        mt = [pt[y], sum(pt[j] for j in conf), sum(pt[j] for j in back)]
        ms = [ps[y], sum(ps[j] for j in conf), sum(ps[j] for j in back)]
        ft = [pt[j] / mt[1] for j in conf]
        fs = [ps[j] / ms[1] for j in conf]
        total += lambda_mass * kl(mt, ms) + lambda_conf * kl(ft, fs)
    return temperature**2 * total / len(zs)


def random_case(seed, batch=5, classes=7, scale=3.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    zs = scale * torch.randn(batch, classes, generator=gen, dtype=dtype)
    zt = scale * torch.randn(batch, classes, generator=gen, dtype=dtype)
    ys = torch.randint(0, classes, (batch,), generator=gen)
    return zs, zt, ys


# ---------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------
def test_kd_hand_value():
    student = torch.tensor([[1.0, 1.0, 1.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0]])
    pt = np.exp([3.0, 1.0, 0.0]) / np.exp([3.0, 1.0, 0.0]).sum()
    expected = math.log(3.0) + float((pt * np.log(pt)).sum())
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(expected)
    # T^2 scaling: same probabilities at T = 2 give four times the value.
    value = kd_loss(logits_for(P_S, 2.0), logits_for(P_T, 2.0), 2.0)
    assert value.item() == pytest.approx(4.0 * kl(P_T, P_S), rel=1e-9)


def test_dkd_hand_value():
    tckd = 0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6)
    nckd = 0.3 * math.log(0.3 / (1 / 3)) + 0.2 * math.log(0.2 / (1 / 6))
    targets = torch.tensor([0])
    value = dkd_loss(
        logits_for(P_S, 2.0), logits_for(P_T, 2.0), targets, 1.0, 8.0, 2.0
    )
    assert value.item() == pytest.approx(4.0 * (tckd + 8.0 * nckd), rel=1e-9)


def test_trkd_hand_value():
    targets = torch.tensor([0])
    zs, zt = logits_for(P_S, 2.0), logits_for(P_T, 2.0)
    # q_teacher = [0.5, 0.3, 0.2]; tau = 0.6 -> F = {1, 2}, B = {3}.
    mass = kl([0.5, 0.4, 0.1], [0.4, 0.5, 0.1])
    conf = kl([0.625, 0.375], [0.6, 0.4])
    value = trkd_loss(zs, zt, targets, 0.6, 2.0, 1.5, 3.0)
    assert value.item() == pytest.approx(4.0 * (1.5 * mass + 3.0 * conf))
    # tau = 0.45 -> F = {1} alone, so L_conf = 0.
    mass = kl([0.5, 0.25, 0.25], [0.4, 0.3, 0.3])
    value = trkd_loss(zs, zt, targets, 0.45, 2.0, 1.5, 3.0)
    assert value.item() == pytest.approx(4.0 * 1.5 * mass, rel=1e-9)


def test_gkd_hand_value():
    targets = torch.tensor([0])
    zt = logits_for(P_T, 2.0)
    # The student ranks class 2 above class 1, the teacher the other way.
    ps = [0.4, 0.2, 0.3, 0.1]
    zs = logits_for(ps, 2.0)
    # select_by="teacher", hcm_n=2: primary {0, 1}, secondary {2, 3}.
    binary = kl([0.75, 0.25], [0.6, 0.4])
    primary = kl([2 / 3, 1 / 3], [2 / 3, 1 / 3])
    secondary = kl([0.6, 0.4], [0.3 / 0.4, 0.1 / 0.4])
    value = gkd_loss(zs, zt, targets, 1.0, 8.0, 0.5, 2, "teacher", 2.0)
    expected = 4.0 * (binary + 8.0 * primary + 0.5 * secondary)
    assert value.item() == pytest.approx(expected, rel=1e-9)
    # select_by="student" (official training default): primary {0, 2}.
    binary = kl([0.65, 0.35], [0.7, 0.3])
    primary = kl([0.5 / 0.65, 0.15 / 0.65], [0.4 / 0.7, 0.3 / 0.7])
    value = gkd_loss(zs, zt, targets, hcm_n=2, temperature=2.0)
    expected = 4.0 * (binary + 8.0 * primary)
    assert value.item() == pytest.approx(expected, rel=1e-9)
    # hcm_n = 1 keeps the target alone: only the binary term is left.
    value = gkd_loss(zs, zt, targets, hcm_n=1, temperature=2.0)
    binary = kl([0.5, 0.5], [0.4, 0.6])
    assert value.item() == pytest.approx(4.0 * binary, rel=1e-9)
    # The target is forced into the primary group even when it ranks low.
    zt_low = logits_for([0.1, 0.5, 0.25, 0.15])
    zs_low = logits_for([0.2, 0.3, 0.4, 0.1])
    value = gkd_loss(zs_low, zt_low, targets, 1.0, 1.0, 0.0, 2, "teacher", 1)
    expected = kl([0.6, 0.4], [0.5, 0.5]) + kl([1 / 6, 5 / 6], [0.4, 0.6])
    assert value.item() == pytest.approx(expected, rel=1e-9)
    # hcm_n >= C: everything primary, the loss is beta * KD.
    value = gkd_loss(zs, zt, targets, beta=2.0, temperature=2.0)
    assert value.item() == pytest.approx(2.0 * 4.0 * kl(P_T, ps), rel=1e-9)


def test_nkd_hand_value():
    targets = torch.tensor([0])
    # At T = 1 (official default) both parts read the same probabilities.
    zs, zt = logits_for(P_S), logits_for(P_T)
    q_t, q_s = [0.5, 0.3, 0.2], [0.5, 1 / 3, 1 / 6]
    cross = -sum(a * math.log(b) for a, b in zip(q_t, q_s, strict=True))
    value = nkd_loss(zs, zt, targets)
    expected = -0.5 * math.log(0.4) + 1.5 * cross
    assert value.item() == pytest.approx(expected, rel=1e-9)
    # At T = 2 the target part stays at T = 1, the non-target part moves to
    # T = 2 and is scaled by T^2 = 4.
    zs = logits_for(P_S, 2.0)  # softmax(zs / 2) = P_S
    zt = logits_for(P_T, 2.0)
    ps1 = ref_softmax(zs[0].numpy(), 1.0)
    pt1 = ref_softmax(zt[0].numpy(), 1.0)
    value = nkd_loss(zs, zt, targets, temperature=2.0, gamma=0.5)
    expected = -pt1[0] * math.log(ps1[0]) + 0.5 * 4.0 * cross
    assert value.item() == pytest.approx(expected, rel=1e-9)


def test_dist_hand_value():
    zs = np.array([[1.0, 0.5, -1.0, 0.0], [0.2, -0.3, 2.0, 1.0]])
    zt = np.array([[2.0, 1.0, -1.0, 0.5], [-1.0, 0.0, 1.5, 0.3]])
    temperature = 2.0
    ys = np.stack([ref_softmax(r, temperature) for r in zs])
    yt = np.stack([ref_softmax(r, temperature) for r in zt])

    def pearson(u, v):  # with the official code's eps = 1e-8
        u, v = u - u.mean(), v - v.mean()
        return u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-8)

    inter = 1 - np.mean([pearson(ys[i], yt[i]) for i in range(2)])
    intra = 1 - np.mean([pearson(ys[:, c], yt[:, c]) for c in range(4)])
    # Without eps the same numbers give numpy's Pearson correlation.
    assert pearson(ys[0], yt[0]) == pytest.approx(
        np.corrcoef(ys[0], yt[0])[0, 1], rel=1e-6
    )
    expected = temperature**2 * (0.5 * inter + 2.0 * intra)
    value = dist_loss(
        torch.tensor(zs), torch.tensor(zt), 0.5, 2.0, temperature
    ).item()
    assert value == pytest.approx(expected, rel=1e-9)


def test_embedding_cosine_hand_value():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    student = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    expected = ((1 - 1 / math.sqrt(2)) + 2.0) / 2
    value = embedding_cosine_loss(student, teacher)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value = embedding_cosine_loss(student.unsqueeze(1), teacher.unsqueeze(1))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_standardize_hand_value():
    z = np.array([[1.0, 4.0, 2.0, 7.0], [0.5, 0.5, 3.0, -1.0]])
    std = z.std(axis=1, ddof=1, keepdims=True)
    expected = (z - z.mean(axis=1, keepdims=True)) / (1e-7 + std)
    out = standardize_logits(torch.tensor(z))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    out = standardize_logits(torch.tensor(z, dtype=torch.bfloat16))
    assert out.dtype == torch.float32
    constant = standardize_logits(torch.full((2, 5), 3.0, requires_grad=True))
    assert torch.equal(constant, torch.zeros(2, 5))


# ---------------------------------------------------------------------------
# Agreement with the float64 reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference(seed):
    zs, zt, ys = random_case(seed, batch=4, classes=3 + seed)
    rng = np.random.default_rng(seed)
    temperature = float(rng.uniform(0.5, 6.0))
    tau = float(rng.uniform(0.05, 0.95))
    zs_np, zt_np, ys_np = zs.numpy(), zt.numpy(), ys.tolist()
    assert kd_loss(zs, zt, temperature).item() == pytest.approx(
        ref_kd(zs_np, zt_np, temperature), rel=1e-6
    )
    assert dkd_loss(zs, zt, ys, 0.7, 3.0, temperature).item() == (
        pytest.approx(ref_dkd(zs_np, zt_np, ys_np, 0.7, 3.0, temperature))
    )
    for t in (tau, 1.0):
        value = trkd_loss(zs, zt, ys, t, temperature, 1.3, 6.0).item()
        expected = ref_trkd(zs_np, zt_np, ys_np, t, temperature, 1.3, 6.0)
        assert value == pytest.approx(expected, rel=1e-6)
    conf, back = triage_partition(zt, ys, tau, temperature)
    for row, y in enumerate(ys_np):
        pt = ref_softmax(zt_np[row], temperature)
        expected = ref_confusion_set(pt, y, tau)
        assert set(conf[row].nonzero().flatten().tolist()) == expected


# ---------------------------------------------------------------------------
# Triage partition
# ---------------------------------------------------------------------------
def test_partition_prefix_and_crossing_class():
    targets = torch.tensor([0])
    zt = logits_for(P_T)  # q = [0.5, 0.3, 0.2] over classes 1, 2, 3
    cases = {
        0.01: [1],
        0.45: [1],
        0.55: [1, 2],  # class 2 crosses tau: included
        0.79: [1, 2],
        0.85: [1, 2, 3],
        1.0: [1, 2, 3],
        5.0: [1, 2, 3],
    }
    for tau, members in cases.items():
        conf, back = triage_partition(zt, targets, tau, 1.0)
        assert conf[0].nonzero().flatten().tolist() == members, tau
        rest = [c for c in (1, 2, 3) if c not in members]
        assert back[0].nonzero().flatten().tolist() == rest, tau


def test_partition_invariants_random():
    zs, zt, ys = random_case(3, batch=16, classes=9)
    for tau in (1e-6, 0.3, 0.7, 0.999, 1.0, 2.0):
        conf, back = triage_partition(zt, ys.unsqueeze(1), tau, 2.0)
        assert conf.dtype == torch.bool and conf.shape == (16, 9)
        assert not conf[torch.arange(16), ys].any()
        assert not back[torch.arange(16), ys].any()
        assert not (conf & back).any()
        assert ((conf | back).sum(1) == 8).all()
        assert (conf.sum(1) >= 1).all()
        if tau >= 1.0:
            assert conf.sum() == 16 * 8
        if tau <= 1e-6:
            assert (conf.sum(1) == 1).all()


def test_partition_ties_and_saturated_target():
    # All non-targets tied: a tiny tau keeps exactly the lowest index.
    zt = torch.zeros(2, 6)
    targets = torch.tensor([0, 3])
    conf, _ = triage_partition(zt, targets, 1e-9)
    assert conf.nonzero().tolist() == [[0, 1], [1, 0]]
    conf, _ = triage_partition(zt, targets, 0.5)  # 5 ties of q = 0.2
    assert conf.sum(1).tolist() == [3, 3]
    # p_y rounds to 1 in float32: q still comes out right from log space.
    zt = torch.tensor([[1.0e4, 3.0, 2.0, 2.0, -5.0]])
    conf, back = triage_partition(zt, torch.tensor([0]), 0.5, 1.0)
    assert conf[0].tolist() == [False, True, False, False, False]
    conf, back = triage_partition(zt, torch.tensor([0]), 0.9, 1.0)
    assert conf[0].tolist() == [False, True, True, True, False]


def test_partition_errors():
    zt, targets = torch.randn(2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="tau"):
        triage_partition(zt, targets, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        triage_partition(zt, targets, 0.5, temperature=-1.0)
    with pytest.raises(ValueError, match=r"targets\[1\] = 4"):
        triage_partition(zt, torch.tensor([0, 4]), 0.5)
    with pytest.raises(TypeError, match="integer"):
        triage_partition(zt, torch.tensor([0.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match="shape"):
        triage_partition(zt, torch.tensor([0, 1, 2]), 0.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        triage_partition(torch.randn(2, 2, 4), targets, 0.5)


# ---------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_trkd_at_tau_one_is_dkd(seed):
    zs, zt, ys = random_case(seed, batch=6, classes=11)
    for tau in (1.0, 3.0):
        trkd = trkd_loss(zs, zt, ys, tau, 3.0, 0.4, 5.0)
        dkd = dkd_loss(zs, zt, ys, alpha=0.4, beta=5.0, temperature=3.0)
        torch.testing.assert_close(trkd, dkd, rtol=1e-12, atol=0.0)
    zs32, zt32 = zs.float(), zt.float()
    torch.testing.assert_close(
        trkd_loss(zs32, zt32, ys, 1.0, 3.0, 0.4, 5.0),
        dkd_loss(zs32, zt32, ys, 0.4, 5.0, 3.0),
        rtol=1e-6,
        atol=0.0,
    )


@pytest.mark.parametrize("tau", [0.2, 0.6, 0.9])
def test_chain_rule_decomposition(tau):
    zs, zt, ys = random_case(11, batch=8, classes=10)
    temperature = 2.5
    terms = _trkd_terms(zs, zt, ys, tau, temperature, with_background=True)
    masses = terms.teacher_log_masses.exp()
    full_kl = (
        torch.softmax(zt / temperature, -1)
        * (
            torch.log_softmax(zt / temperature, -1)
            - torch.log_softmax(zs / temperature, -1)
        )
    ).sum(-1)
    rebuilt = (
        terms.mass + masses[:, 1] * terms.conf + masses[:, 2] * terms.background
    )
    torch.testing.assert_close(rebuilt, full_kl, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        masses.sum(-1), torch.ones(8, dtype=torch.float64)
    )


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------
def _student_only(name, zt, ys):
    """Loss as a function of the student input only, for gradcheck."""
    calls = {
        "kd": lambda s: kd_loss(s, zt, 2.0),
        "dkd": lambda s: dkd_loss(s, zt, ys, 1.0, 8.0, 2.0),
        "trkd": lambda s: trkd_loss(s, zt, ys, 0.5, 2.0),
        "trkd_tau1": lambda s: trkd_loss(s, zt, ys, 1.0, 2.0),
        "gkd": lambda s: gkd_loss(s, zt, ys, 1.0, 8.0, 0.5, 3, "teacher"),
        "gkd_student": lambda s: gkd_loss(s, zt, ys, hcm_n=3),
        "nkd": lambda s: nkd_loss(s, zt, ys, 2.0),
        "dist": lambda s: dist_loss(s, zt, temperature=2.0),
        "emb_cos": lambda s: embedding_cosine_loss(s, zt),
        "standardize": lambda s: standardize_logits(s),
    }
    return calls[name]


@pytest.mark.parametrize(
    "name",
    [
        "kd",
        "dkd",
        "trkd",
        "trkd_tau1",
        "gkd",
        "gkd_student",
        "nkd",
        "dist",
        "emb_cos",
        "standardize",
    ],
)
def test_gradcheck(name):
    zs, zt, ys = random_case(5, batch=3, classes=6, scale=1.5)
    zs.requires_grad_(True)
    assert torch.autograd.gradcheck(_student_only(name, zt, ys), (zs,))


def _all_losses(zs, zt, ys, tau=0.5):
    """Every loss of the module on one batch, by name."""
    return {
        "kd": kd_loss(zs, zt),
        "dkd": dkd_loss(zs, zt, ys),
        "trkd": trkd_loss(zs, zt, ys, tau),
        "gkd": gkd_loss(zs, zt, ys, hcm_n=3),
        "nkd": nkd_loss(zs, zt, ys),
        "dist": dist_loss(zs, zt),
        "emb_cos": embedding_cosine_loss(zs, zt),
    }


def test_no_gradient_reaches_teacher():
    zs, zt, ys = random_case(2, dtype=torch.float32)
    zs.requires_grad_(True)
    zt.requires_grad_(True)
    for name, loss in _all_losses(zs, zt, ys).items():
        loss.backward()
        assert zt.grad is None, name
        assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0, name
        zs.grad = None
    for method in KD_METHODS:
        loss, _ = DistillationLoss(method)(
            zs, zt, ys, tau=0.5, student_emb=zs, teacher_emb=zt
        )
        loss.backward()
        assert zt.grad is None, method
    loss, _ = DistillationLoss("kd", standardize=True)(zs, zt, ys)
    loss.backward()
    assert zt.grad is None


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    batch=st.integers(1, 5),
    classes=st.integers(2, 10),
    temperature=st.floats(0.5, 8.0),
    tau=st.floats(0.01, 1.5),
    tau_step=st.floats(0.0, 0.8),
    seed=st.integers(0, 2**31 - 1),
)
def test_properties(batch, classes, temperature, tau, tau_step, seed):
    zs, zt, ys = random_case(seed, batch, classes, dtype=torch.float32)
    losses = {
        "kd": lambda s, t: kd_loss(s, t, temperature),
        "dkd": lambda s, t: dkd_loss(s, t, ys, 1.0, 8.0, temperature),
        "trkd": lambda s, t: trkd_loss(s, t, ys, tau, temperature),
        "gkd": lambda s, t: gkd_loss(
            s, t, ys, 1.0, 8.0, 1.0, 2, "student", temperature
        ),
        "nkd": lambda s, t: nkd_loss(s, t, ys, temperature),
        "dist": lambda s, t: dist_loss(s, t, temperature=temperature),
        "emb_cos": embedding_cosine_loss,
    }
    for name, fn in losses.items():
        flat = fn(zs, zt)
        assert flat.dim() == 0 and torch.isfinite(flat), name
        assert flat.item() >= -1e-5, name
        torch.testing.assert_close(
            fn(zs.unsqueeze(1), zt.unsqueeze(1)), flat, msg=name
        )
        # Teacher == student zeroes every loss but NKD (cross-entropies) and
        # DIST: its Pearson eps (1e-8, as in the official code) lowers the
        # correlation of a class whose probabilities barely vary across the
        # batch, so DIST(z, z) can be well above 0 (0.05 was found at
        # T = 0.5 on a batch of 2); its value is checked by hand above.
        if name not in ("nkd", "dist"):
            assert fn(zt, zt).abs().item() < 1e-4, name
    small, _ = triage_partition(zt, ys, tau, temperature)
    large, _ = triage_partition(zt, ys, tau + tau_step, temperature)
    assert not (small & ~large).any()
    assert (small.sum(1) <= large.sum(1)).all()
    assert (small.sum(1) >= 1).all()


# ---------------------------------------------------------------------------
# Dtypes, devices and extreme inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(dtype):
    zs, zt, ys = random_case(4, dtype=dtype)
    for name, loss in _all_losses(zs, zt, ys).items():
        assert loss.dtype == dtype, name
    mixed = trkd_loss(zs.float(), zt.half(), ys, 0.5)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)


def test_bf16_autocast():
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(8, 12)
    feats = torch.randn(6, 8, generator=gen)
    ys = torch.randint(0, 12, (6,), generator=gen)
    teacher = 50.0 * torch.randn(6, 12, generator=gen)
    reference = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        student = layer(feats)
        assert student.dtype == torch.bfloat16
        losses = _all_losses(student, teacher.bfloat16(), ys, tau=0.7)
        reference = trkd_loss(
            student.float(), teacher.bfloat16().float(), ys, 0.7
        )
    for name, loss in losses.items():
        assert loss.dtype == torch.float32 and torch.isfinite(loss), name
        layer.zero_grad()
        loss.backward(retain_graph=True)
        assert torch.isfinite(layer.weight.grad).all(), name
    torch.testing.assert_close(losses["trkd"], reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1e-6, 0.5, 1.0])
def test_huge_logits(dtype, tau):
    zs, zt, ys = random_case(8, batch=6, classes=9, scale=1.0e4, dtype=dtype)
    zs.requires_grad_(True)
    losses = _all_losses(zs, zt, ys, tau=tau)
    losses["std_trkd"] = trkd_loss(
        standardize_logits(zs), standardize_logits(zt), ys, tau
    )
    for name, loss in losses.items():
        assert torch.isfinite(loss), name
        (grad,) = torch.autograd.grad(loss, zs)
        assert torch.isfinite(grad).all(), name


def test_one_class_confusion_and_empty_background():
    zs, zt, ys = random_case(9, batch=5, classes=8, dtype=torch.float32)
    zs.requires_grad_(True)
    # tau tiny: |F| = 1, so L_conf vanishes and only the masses remain.
    terms = _trkd_terms(zs, zt, ys, 1e-7, 4.0, with_background=True)
    assert (terms.confusion_mask.sum(1) == 1).all()
    assert torch.equal(terms.conf, torch.zeros(5))
    loss = trkd_loss(zs, zt, ys, 1e-7)
    (grad,) = torch.autograd.grad(loss, zs)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # tau = 1: B empty, its mass is exactly 0 and gradients stay finite.
    terms = _trkd_terms(zs, zt, ys, 1.0, 4.0, with_background=True)
    assert not terms.background_mask.any()
    assert torch.equal(terms.teacher_log_masses[:, 2].exp(), torch.zeros(5))
    assert torch.equal(terms.background, torch.zeros(5))
    loss = trkd_loss(zs, zt, ys, 1.0)
    (grad,) = torch.autograd.grad(loss, zs)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # Two classes: F is the single non-target, B is empty.
    two = trkd_loss(zs[:, :2], zt[:, :2], ys % 2, 0.3)
    torch.testing.assert_close(two, dkd_loss(zs[:, :2], zt[:, :2], ys % 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    zs, zt, ys = random_case(6, batch=8, classes=20, dtype=torch.float32)
    cpu = _all_losses(zs, zt, ys)
    gpu = _all_losses(zs.cuda(), zt.cuda(), ys.cuda())
    for name, value in gpu.items():
        assert value.device.type == "cuda", name
        torch.testing.assert_close(value.cpu(), cpu[name], rtol=1e-5, atol=1e-6)
    conf_cpu, _ = triage_partition(zt, ys, 0.6)
    conf_gpu, _ = triage_partition(zt.cuda(), ys.cuda(), 0.6)
    assert torch.equal(conf_gpu.cpu(), conf_cpu)
    loss, stats = DistillationLoss("trkd")(zs.cuda(), zt.cuda(), ys.cuda(), 0.6)
    assert all(v.device.type == "cuda" for v in stats.values())
    none, _ = DistillationLoss("none")(zs.cuda(), zt.cuda(), ys.cuda())
    assert none.device.type == "cuda"


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------
def test_input_errors():
    zs, zt, ys = random_case(1, batch=3, classes=5, dtype=torch.float32)
    with pytest.raises(ValueError, match="teacher_logits has shape"):
        kd_loss(zs, zt[:, :4])
    with pytest.raises(ValueError, match="at least 2 classes"):
        kd_loss(zs[:, :1], zt[:, :1])
    with pytest.raises(TypeError, match="floating-point"):
        kd_loss(zs.long(), zt)
    with pytest.raises(ValueError, match=r"targets\[2\] = -1"):
        dkd_loss(zs, zt, torch.tensor([0, 1, -1]))
    with pytest.raises(ValueError, match=r"targets\[0\] = 5"):
        nkd_loss(zs, zt, torch.tensor([5, 1, 1]))
    with pytest.raises(ValueError, match="hcm_n"):
        gkd_loss(zs, zt, ys, hcm_n=0)
    with pytest.raises(ValueError, match="select_by"):
        gkd_loss(zs, zt, ys, select_by="both")
    with pytest.raises(ValueError, match="tau"):
        trkd_loss(zs, zt, ys, -0.5)
    with pytest.raises(ValueError, match="student_emb has shape"):
        embedding_cosine_loss(zs, zt[:2])
    with pytest.raises(ValueError, match="at least 2 classes"):
        standardize_logits(torch.ones(3, 1))


# ---------------------------------------------------------------------------
# DistillationLoss wrapper
# ---------------------------------------------------------------------------
def test_wrapper_matches_functions():
    zs, zt, ys = random_case(7, batch=4, classes=9, dtype=torch.float32)
    zs3, zt3, ys2 = zs.unsqueeze(1), zt.unsqueeze(1), ys.unsqueeze(1)
    temperature = 3.0
    expected = {
        "kd": kd_loss(zs, zt, temperature),
        "dkd": dkd_loss(zs, zt, ys, 2.0, 8.0, temperature),
        "trkd": trkd_loss(zs, zt, ys, 0.4, temperature),
        "gkd": gkd_loss(zs, zt, ys, hcm_n=4, temperature=temperature),
        "nkd": nkd_loss(zs, zt, ys, temperature),
        "dist": dist_loss(zs, zt, temperature=temperature),
        "emb_cos": embedding_cosine_loss(zs, zt),
    }
    options = {"dkd": {"alpha": 2.0}, "gkd": {"hcm_n": 4}}
    assert set(expected) == set(KD_METHODS)
    for method, value in expected.items():
        criterion = DistillationLoss(
            method, temperature, **options.get(method, {})
        )
        assert criterion.uses_tau == (method == "trkd")
        loss, stats = criterion(
            zs3, zt3, ys2, tau=0.4, student_emb=zs3, teacher_emb=zt3
        )
        torch.testing.assert_close(loss, value, msg=method)
        keys = {"kd", "kd_mass", "kd_conf", "conf_size"}
        assert set(stats) == (keys if method == "trkd" else {"kd"})
        for key, stat in stats.items():
            assert stat.dim() == 0 and not stat.requires_grad, (method, key)
        torch.testing.assert_close(stats["kd"], value)


def test_wrapper_trkd_stats():
    zs, zt, ys = random_case(8, batch=6, classes=12, dtype=torch.float32)
    zs.requires_grad_(True)
    criterion = DistillationLoss(
        "trkd", temperature=2.0, lambda_mass=0.5, lambda_conf=3.0
    )
    loss, stats = criterion(zs, zt, ys, tau=0.6)
    terms = _trkd_terms(zs, zt, ys, 0.6, 2.0)
    torch.testing.assert_close(stats["kd_mass"], 4.0 * 0.5 * terms.mass.mean())
    torch.testing.assert_close(stats["kd_conf"], 4.0 * 3.0 * terms.conf.mean())
    torch.testing.assert_close(stats["kd"], stats["kd_mass"] + stats["kd_conf"])
    conf, _ = triage_partition(zt, ys, 0.6, 2.0)
    assert stats["conf_size"].dtype == torch.float32
    assert stats["conf_size"].item() == pytest.approx(
        conf.sum(1).float().mean()
    )
    loss.backward()
    assert torch.isfinite(zs.grad).all()
    # A larger tau can only grow the confusion set.
    _, wider = criterion(zs, zt, ys, tau=0.95)
    assert wider["conf_size"] >= stats["conf_size"]


def test_wrapper_none_and_standardize():
    zs, zt, ys = random_case(9, batch=3, classes=6, dtype=torch.float32)
    loss, stats = DistillationLoss("none")(zs, zt, ys)
    assert stats == {} and loss.dim() == 0 and loss.item() == 0.0
    assert loss.dtype == torch.float32
    loss, _ = DistillationLoss("none")(zs.double(), zt.double(), ys)
    assert loss.dtype == torch.float32
    std_s, std_t = standardize_logits(zs), standardize_logits(zt)
    for method, fn in (
        ("kd", lambda s, t: kd_loss(s, t, 2.0)),
        ("dkd", lambda s, t: dkd_loss(s, t, ys, temperature=2.0)),
        ("trkd", lambda s, t: trkd_loss(s, t, ys, 0.5, 2.0)),
    ):
        criterion = DistillationLoss(method, 2.0, standardize=True)
        loss, _ = criterion(zs, zt, ys, tau=0.5)
        torch.testing.assert_close(loss, fn(std_s, std_t), msg=method)
        plain, _ = DistillationLoss(method, 2.0)(zs, zt, ys, tau=0.5)
        assert not torch.allclose(loss, plain), method


def test_wrapper_errors():
    with pytest.raises(ValueError, match="known: none, kd, dkd, trkd"):
        DistillationLoss("fitnet")
    with pytest.raises(TypeError, match="'lambda_mas'.*lambda_mass"):
        DistillationLoss("trkd", lambda_mas=1.0)
    with pytest.raises(TypeError, match="'tau'"):
        DistillationLoss("trkd", tau=0.5)
    with pytest.raises(TypeError, match="'alpha'"):
        DistillationLoss("none", alpha=1.0)
    with pytest.raises(TypeError, match="'hcm_n'"):
        DistillationLoss("dkd", hcm_n=3)
    for method in ("gkd", "nkd", "dist", "emb_cos", "none"):
        with pytest.raises(ValueError, match="standardize"):
            DistillationLoss(method, standardize=True)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss("kd", temperature=0.0)
    zs, zt, ys = random_case(1, batch=2, classes=4, dtype=torch.float32)
    with pytest.raises(ValueError, match="student_emb and teacher_emb"):
        DistillationLoss("emb_cos")(zs, zt, ys)


def test_wrapper_method_options_from_yaml():
    from hyperpyyaml import load_hyperpyyaml

    text = """
kd_method: trkd
kd_method_options:
    kd: {}
    dkd: {alpha: 0.5, beta: 2.0}
    trkd: {lambda_mass: 2.0, lambda_conf: 3.0}
    gkd: {hcm_n: 3}
kd_loss: !new:speechbrain_trkd.losses.DistillationLoss
    method: !ref <kd_method>
    temperature: 2.0
    method_options: !ref <kd_method_options>
"""
    zs, zt, ys = random_case(4, batch=3, classes=6, dtype=torch.float32)
    for method, expected in (
        ("trkd", trkd_loss(zs, zt, ys, 0.5, 2.0, 2.0, 3.0)),
        ("dkd", dkd_loss(zs, zt, ys, 0.5, 2.0, 2.0)),
        ("gkd", gkd_loss(zs, zt, ys, hcm_n=3, temperature=2.0)),
        ("nkd", nkd_loss(zs, zt, ys, 2.0)),
    ):
        hparams = load_hyperpyyaml(text, overrides={"kd_method": method})
        loss, _ = hparams["kd_loss"](zs, zt, ys, tau=0.5)
        torch.testing.assert_close(loss, expected, msg=method)
    with pytest.raises(TypeError, match="'beta'.*both"):
        DistillationLoss("dkd", beta=1.0, method_options={"dkd": {"beta": 2}})
    with pytest.raises(ValueError, match="'fitnet'"):
        DistillationLoss("kd", method_options={"fitnet": {}})
    with pytest.raises(TypeError, match="'hcm_n'"):
        DistillationLoss("dkd", method_options={"dkd": {"hcm_n": 2}})
    with pytest.raises(TypeError, match="method_options\\['kd'\\]"):
        DistillationLoss("kd", method_options={"kd": 3})


# ---------------------------------------------------------------------------
# The paper's ablation: TRKD's two terms, each swappable for DKD's
# ---------------------------------------------------------------------------
TERM_PAIRS = [
    (target, nontarget)
    for target in ("three_mass", "binary")
    for nontarget in ("confusion", "all")
]


@pytest.mark.parametrize("tau", [0.05, 0.3, 0.9])
@pytest.mark.parametrize("seed", range(4))
def test_binary_with_all_nontargets_is_dkd_exactly(seed, tau):
    """TCKD + NCKD inside TRKD's code is DKD at any tau: the same terms,
    equal up to the order of the final sums (float64 rounding)."""
    zs, zt, ys = random_case(40 + seed, batch=6, classes=30)
    mixed = trkd_loss(
        zs,
        zt,
        ys,
        tau,
        2.0,
        0.5,
        3.0,
        target_term="binary",
        nontarget_term="all",
    )
    dkd = dkd_loss(zs, zt, ys, alpha=0.5, beta=3.0, temperature=2.0)
    torch.testing.assert_close(mixed, dkd, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("seed", range(4))
def test_three_masses_with_confusion_set_is_trkd(seed):
    zs, zt, ys = random_case(50 + seed, batch=6, classes=30)
    default = trkd_loss(zs, zt, ys, 0.3, 2.0, 0.5, 3.0)
    explicit = trkd_loss(
        zs,
        zt,
        ys,
        0.3,
        2.0,
        0.5,
        3.0,
        target_term="three_mass",
        nontarget_term="confusion",
    )
    assert torch.equal(default, explicit)
    # And it differs from each mixed variant when tau cuts the tail.
    for target, nontarget in TERM_PAIRS[1:]:
        other = trkd_loss(
            zs,
            zt,
            ys,
            0.3,
            2.0,
            0.5,
            3.0,
            target_term=target,
            nontarget_term=nontarget,
        )
        assert not torch.allclose(default, other)


@pytest.mark.parametrize("target, nontarget", TERM_PAIRS)
@pytest.mark.parametrize("seed", range(3))
def test_every_variant_is_dkd_at_tau_one(seed, target, nontarget):
    """At tau = 1 the background is empty: all four variants are DKD."""
    zs, zt, ys = random_case(60 + seed, batch=5, classes=25)
    loss = trkd_loss(
        zs,
        zt,
        ys,
        1.0,
        4.0,
        1.0,
        8.0,
        target_term=target,
        nontarget_term=nontarget,
    )
    dkd = dkd_loss(zs, zt, ys, alpha=1.0, beta=8.0, temperature=4.0)
    torch.testing.assert_close(loss, dkd, rtol=1e-10, atol=1e-12)


def test_variants_from_method_options():
    """The recipe reaches the variants through kd_method_options; a wrong
    term name is refused when the loss is built."""
    zs, zt, ys = random_case(70, batch=4, classes=20, dtype=torch.float32)
    criterion = DistillationLoss(
        "trkd",
        temperature=2.0,
        method_options={
            "trkd": {"target_term": "binary", "nontarget_term": "confusion"}
        },
    )
    loss, stats = criterion(zs, zt, ys, tau=0.4)
    expected = trkd_loss(zs, zt, ys, 0.4, 2.0, target_term="binary")
    torch.testing.assert_close(loss, expected)
    assert stats["conf_size"] > 0
    with pytest.raises(ValueError, match="target_term must be one of"):
        DistillationLoss("trkd", target_term="two_mass")(zs, zt, ys, tau=0.4)
    with pytest.raises(ValueError, match="nontarget_term must be one of"):
        trkd_loss(zs, zt, ys, 0.4, nontarget_term="tail")


def test_named_configurations_equal_their_explicit_options():
    """TRKD's named configurations are the method with preset options:
    the ablation rows equal trkd with those terms, the fixed-tau TRKD
    equals trkd at tau 0.3 whatever tau it is given."""
    from speechbrain_trkd.losses import CONFIGURATIONS, DISTILLERS

    generator = torch.Generator().manual_seed(3)
    student = torch.randn(6, 12, generator=generator)
    teacher = 3 * torch.randn(6, 12, generator=generator)
    targets = torch.arange(6)
    for name, (base, presets) in CONFIGURATIONS.items():
        named = DistillationLoss(name, temperature=2.0)
        assert isinstance(named.distiller, DISTILLERS[base])
        explicit_options = {
            k: v for k, v in presets.items() if k != "fixed_tau"
        }
        explicit = DistillationLoss(base, temperature=2.0, **explicit_options)
        tau = presets.get("fixed_tau", 0.5)
        got, _ = named(
            student,
            teacher,
            targets,
            tau=0.9 if "fixed_tau" in presets else tau,
        )
        want, _ = explicit(student, teacher, targets, tau=tau)
        assert torch.equal(got, want), name
    assert not DistillationLoss("trkd_fixed_tau").uses_tau


def test_every_method_declares_what_it_needs():
    """Registered classes carry their own name, and the declarations the
    Brain reads instead of names."""
    from speechbrain_trkd.losses import DISTILLERS

    for name, cls in DISTILLERS.items():
        assert cls.name == name
        loss = DistillationLoss(name)
        assert loss.distils == (name != "none")
        assert loss.uses_embeddings == (name == "emb_cos")
        assert loss.uses_tau == (name == "trkd")


@pytest.mark.parametrize(
    "name", ["tmkd_nckd", "tckd_cfkd", "trkd_no_mass", "trkd_fixed_tau"]
)
def test_a_recipe_user_picks_a_configuration_by_name(name, tmp_path):
    """``--kd_method=<configuration>`` in the recipe's YAML builds TRKD
    with the configuration's options and the file's trkd weights."""
    from pathlib import Path

    from hyperpyyaml import load_hyperpyyaml

    hparams_file = (
        Path(__file__).resolve().parents[1]
        / "recipes/VoxCeleb/TRKD/hparams/ecapa_to_small.yaml"
    )
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(
            fin, {"data_folder": str(tmp_path), "kd_method": name}
        )
    loss = hparams["kd_loss"]
    assert loss.method == name and loss.options["lambda_conf"] == 8.0
    assert type(loss.distiller).__name__ == "TRKD"
