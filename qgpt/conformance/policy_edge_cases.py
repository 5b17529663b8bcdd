"""Op-level golden cases on the edges of the precision policies (issue 10).

The formats' cases (cases.py) run every kernel with 16-bit containers and Fw = Fa;
the branches a per-class policy reaches need their own: 8-bit containers of every
class (weights, acts, grads, Adam m and v, the weight store) and 32-bit ones, the
embedding's and the gradients' shifts of both signs and 0 (Fw - Fa, Fg - Fp), shifts
of 16 and more (lm_head, the scores, dW), Adam's g -> m and g -> gs shifts of both
signs, its ratio shift e below, at and above 15, and each update rounding (nearest,
floor, stochastic, pseudo, kahan) with a small and a large requantization shift u.

EDGE_POLICIES lists the policies (with the learning rate where u needs another one),
each given the cases of policy_cases.policy_ops_cases (random, full range, limits,
ties) and adam_threshold_cases: inputs constructed around Adam's thresholds. The
expected values come from the simulator (qgpt/int_ops.py, IntAdam). Block-scaled m
and v are not here: the op driver (firmware/conform_ops.py) has no op for their
encoding, so the steps level covers them (mutants.MUTANT_STEPS_POLICIES).
"""

import sys

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.fast_path_cases import fast_path_groups
from qgpt.conformance.inputs import C, Case, _ctx, _i, _u
from qgpt.conformance.policy_cases import (
    _in,
    _spec,
    _tie_values,
    adam_case,
    policy_ops_cases,
)
from qgpt.params import MLP_HIDDEN, N_EMBD, VOCAB
from qgpt.policy import BlockFormat, parse_policy

# (SPEC, lr or None: qgpt train's default) and what each reaches
EDGE_POLICIES = (
    # every class 8-bit (ptr8 everywhere), Fw = Fa (shift 0), Fg > Fp, m shifted left
    ("weights=q2.6,acts=q2.6,logits=q8.4,grads=q2.6,pgrads=q4.4,adam_m=q2.6,adam_v=q2.6,"
     "rounding=floor", None),
    # Fw > Fa, 8-bit acts and grads, 16-bit m, v and master store, Fp > Fg, dW shift 0
    ("weights=q8.8,acts=q4.4,logits=q12.4,grads=q4.4,pgrads=q8.8,adam_m=q4.12,adam_v=q2.14,"
     "master=q4.12,rounding=pseudo", None),
    # Fw < Fa (8-bit weights, 16-bit acts), 8-bit grads, scores shifted by 25, kahan
    ("weights=q4.4,acts=q2.14,logits=q20.4,grads=q1.7,pgrads=q11.21,rounding=kahan", None),
    # shifts of 16 and more (lm_head 26, dW 27), a 32-bit master store, g shifted left
    ("weights=q1.15,acts=q1.15,logits=q20.4,pgrads=q30.2,master=q2.30,rounding=stochastic",
     None),
    # g -> m and g -> gs shifted right by 16, 16-bit m, e = 13; 9- and 17-bit classes
    # (weights, master: the containers' bounds)
    ("weights=q7.2,acts=q6.10,master=q7.10,pgrads=q8.24,adam_m=q8.8,adam_v=q16.16", None),
    # Adam's ratio shift e = 15, 16 and 19 (the clamp's two forms), floor and nearest
    ("adam_m=q20.12,rounding=floor", None),
    ("pgrads=q18.14,adam_m=q21.11", None),  # and Fg = Fp, Fp = Fh with 32-bit pgrads
    ("adam_m=q8.8,adam_v=q4.28,rounding=pseudo", None),
    # every shift 1 (the branch `sh > 0` against `sh > 1`): Fw - Fa, Fg - Fp, Fp - Fm, Fp - Fh
    ("weights=q3.13,acts=q4.12,pgrads=q3.13,adam_m=q4.12,adam_v=q4.24,rounding=floor", None),
    # every shift -1 (Fw - Fa, Fg - Fp, Fp - Fm, Fp - Fh); lm_head's and dW's shift 16
    ("weights=q5.11,acts=q4.12,grads=q4.12,pgrads=q19.13,adam_m=q18.14", None),
    ("logits=q16.8,pgrads=q22.10", None),
    ("weights=q8.8,acts=q4.4,logits=q2.9", None),
    # pgrads with grads' integer bits: dx at G's limit is P's limit shifted (hi >> ls)
    ("pgrads=q2.22,rounding=pseudo", None),  # the scores' shift 2 Fa + 1 - Fl = 0, saturated
    # a large lr: u = 13 for kahan, u = 0 (no rounding at all) with a fine master
    ("weights=q1.15,acts=q4.12,rounding=kahan", 0.9),
    ("master=q3.28,rounding=stochastic", 0.9),
    ("weights=q4.12,acts=q4.12,master=q4.27,rounding=pseudo", 0.9),
)


def _near(values, k=2):
    return [x + d for x in values for d in range(-k, k + 1)]


def _best_step(p, num_steps=1000):
    """The step whose alpha has the most trailing zero bits: its updates alpha * r can
    land exactly half way between two multiples of 2**u (a rounding tie)."""
    from qgpt import int_model

    best, best_tz = 0, -1
    p1 = p2 = 1 << 30
    for step in range(num_steps):
        p1, p2 = int_model.beta_powers(p1, p2)
        alpha = int_model.alpha_at(p, step, num_steps, p1, p2)
        tz = (alpha & -alpha).bit_length() - 1 if alpha else -1
        if tz > best_tz:
            best, best_tz = step, tz
    return best


def _mul15(x, c):
    """x * c / 2**15 rounded half up, as Adam's kernel computes it (section 9.1)."""
    return (x >> 15) * c + (((x & 0x7FFF) * c + 16384) >> 15)


def adam_threshold_cases(p, label, seed, rng, i0=1000):
    """adam_update around its thresholds (docs/arithmetic.md 9.1-9.6): gradients at the
    saturation of g -> m and g -> gs and on their rounding ties; m and v where the ratio
    reaches its clamp (a * 2**e = den * 2**15, den = isqrt(v) + 1 on a square); small
    ratios at the step whose alpha makes rounding ties of delta; stores at the limits."""
    P, S, V = p.pgrads, p.weight_store, p.adam_v
    sh = p.shifts()
    sh_m, sh_s, e = sh["gm_shift"], sh["gs_shift"], p.adam_e
    step = _best_step(p)
    g = [0, 1, -1, P.lo, P.hi]
    if sh_m > 0:  # rounding ties and the saturation of req(g, sh_m)
        g += _near([(2 * k + 1) << (sh_m - 1) for k in range(4)], 1)
        g += _near([(1 << 30) - (1 << (sh_m - 1))], 2)
    else:
        g += _near([(1 << 30) >> -sh_m, -((1 << 30) >> -sh_m)], 2)
    if sh_s > 0:
        g += _near([(2 * k + 1) << (sh_s - 1) for k in range(4)], 1)
        g += _near([32767 << sh_s, -(32768 << sh_s)], 2)
    else:
        g += _near([32767 >> -sh_s, -(32768 >> -sh_s)], 2)
    g = sorted({s * x for x in g for s in (1, -1) if P.lo <= s * x <= P.hi})
    g_sat, m_sat = [], []
    # the clamp: m_new * 2**e against den * 2**15, dense m around it for a few den (v
    # the smallest whose update is the square root**2 at least)
    k1, k2 = (1 << 15) - 4915, (1 << 15) - 328
    m, v = [], []
    for root in (0, 1, 3, 17, 255):
        vv = root * root
        if vv > V.hi:
            continue
        v_old = (vv << 15) // k2
        while _mul15(v_old, k2) < vv:
            v_old += 1
        den = root + 1
        a = den << (15 - e) if e <= 15 else -(-den >> (e - 15))
        centre = (a << 15) // k1
        for x in range(centre - 6, centre + 7):
            if abs(x) <= p.m_limit:
                m += [x, -x]
                v += [v_old] * 2
    # m's saturation: m = +-hm and gradients whose update lands on +-hm and one beyond
    hm = p.m_limit
    for m_old in (hm, -hm):
        for target in (hm, hm + 1, -hm, -hm - 1):
            need = target - _mul15(m_old, k1)  # from the gradient's term
            for gm in range((need << 15) // 4915 - 4, (need << 15) // 4915 + 5):
                x = gm << sh_m if sh_m > 0 else gm >> -sh_m
                if P.lo <= x <= P.hi and abs(gm) <= 1 << 30:
                    g_sat.append(x)
                    m_sat.append(m_old)
    # small ratios (ties of delta at the chosen step): m over a dense range, v = 0
    small = list(range(1, 200)) + [1 << k for k in range(8, 16)]
    m += [x for x in small if x <= p.m_limit] + [-x for x in small if x <= p.m_limit]
    v += [0] * (len(m) - len(v))
    m = np.array([0] * len(g) + m_sat + m, dtype=np.int64)
    v = np.clip(np.array([0] * (len(g) + len(m_sat)) + v, dtype=np.int64), 0, V.hi)
    g = np.array(g + g_sat + [0] * (len(m) - len(g) - len(g_sat)), dtype=np.int64)
    n = len(m)
    store = rng.integers(S.lo, S.hi + 1, n)
    lims = np.array([S.hi, S.hi - 1, S.lo, S.lo + 1, 0, 1, -1], dtype=np.int64)
    store[::3] = lims[np.arange(len(store[::3])) % len(lims)]
    return [adam_case(p, label, _spec(p), f"thresholds, step {step}", step, store, m, v, g,
                      seed, i0)]


def attention_tie_cases(p, label, rng):
    """attention_backward on chosen probabilities (an input of the op): values next to
    2**14 and 2**15 against gradients of +-1, +-2, so that its sums over p (dv, and
    pd = sum p dp) land on the rounding ties of their shift by 15."""
    A, G = p.acts, p.grads
    T = 16
    near = np.array([(1 << 14) - 1, 1 << 14, (1 << 14) + 1, 1 << 15, 1, 3, 0, 1 << 13])
    probs = rng.choice(near, size=(4, T, T))
    probs *= np.tril(np.ones((T, T), dtype=np.int64))[None]  # p = 0 after t
    dout = np.clip(rng.choice(np.array([1, -1, 2, -2, 0]), size=(T, C)), G.lo, G.hi)
    q, k, v = (_tie_values(rng, (T, C), A) for _ in range(3))
    dq, dk, dv = ops.attention_backward(_ctx(p), dout, q, k, v, probs)
    return [Case("attention_backward", label, "chosen probabilities, ties", _spec(p),
                 {"T": T}, {"dout": _in(G, dout), "q": _in(A, q), "k": _in(A, k),
                            "v": _in(A, v), "probs": _u(probs)},
                 {"dq": _in(G, dq), "dk": _in(G, dk), "dv": _in(G, dv)})]


def rmsnorm_edge_cases(p, label, rng, n=8000):
    """rmsnorm_forward and _backward on rows whose results, before saturation, land on
    the limits and one beyond (lo - 1, lo, hi, hi + 1 of acts and of grads): found
    among random rows (rms near 1, so 1/rms steps by about one unit) by the formulas of
    section 6 and 7; the expected values are the simulator's."""
    A, G = p.acts, p.grads
    x = np.clip(np.round(rng.normal(0, 0.9, (n, C)) * 2.0**A.frac_bits), A.lo, A.hi)
    x[: n // 2, 0] = np.where(np.arange(n // 2) % 2, A.hi, A.lo)  # one large element
    x = x.astype(np.int64)
    y, (m, sh) = ops.rmsnorm_forward(_ctx(p), x)
    raw = (x * m[:, None] + ((1 << sh[:, None]) >> 1)) >> sh[:, None]
    edges = [A.lo - 1, A.lo, A.hi, A.hi + 1]
    fwd = [np.flatnonzero((raw == e).any(axis=1))[:4] for e in edges]
    dy = rng.integers(G.lo, G.hi + 1, (n, C))
    f, sh_c = A.frac_bits, A.frac_bits + 4
    c = np.clip(((dy * y).sum(axis=1) + (1 << (sh_c - 1))) >> sh_c, G.lo, G.hi)
    t = np.clip(dy - ((y * c[:, None] + ((1 << f) >> 1)) >> f), G.lo, G.hi)
    v = (t * m[:, None] + ((1 << sh[:, None]) >> 1)) >> sh[:, None]
    bwd = [np.flatnonzero((v == e).any(axis=1))[:4] for e in (G.lo - 1, G.lo, G.hi, G.hi + 1)]
    out = []
    for op, rows in (("rmsnorm_forward", np.concatenate(fwd)),
                     ("rmsnorm_backward", np.concatenate(bwd))):
        rows = rows[:16]
        if not len(rows):
            continue
        xr, dyr = x[rows], dy[rows]
        yr, (mr, shr) = ops.rmsnorm_forward(_ctx(p), xr)
        rs = np.stack([mr, shr], axis=1)
        T = len(rows)
        if op == "rmsnorm_forward":
            out.append(Case(op, label, "results at the limits", _spec(p), {"T": T},
                            {"x": _in(A, xr)}, {"y": _in(A, yr), "rs": _i(rs)}))
        else:
            dx = ops.rmsnorm_backward(_ctx(p), dyr, yr, (mr, shr))
            out.append(Case(op, label, "results at the limits", _spec(p), {"T": T},
                            {"dy": _in(G, dyr), "y": _in(A, yr), "rs": _i(rs)},
                            {"dx": _in(G, dx)}))
    return out


def ln_table_cases(p, label, rng, per_entry=4):
    """loss_q16 of one position (T = 1: the loss is that position's nll, no mean to
    round away a unit) whose softmax denominator S falls in each interval of ln's
    table (idx 0..63 of the mantissa, section 8), per_entry of them each: every table
    entry is read as lo and as hi. Rows found among random logits by the simulator."""
    L = p.logits
    rows = np.round(rng.normal(0, 2.5, (40000, VOCAB)) * 2.0**L.frac_bits).astype(np.int64)
    rows = np.clip(rows, L.lo, L.hi)
    z = rows - rows.max(axis=1, keepdims=True)
    sums = ops.exp_neg(z, L.frac_bits).sum(axis=1)
    n = np.array([int(x).bit_length() - 1 for x in sums])
    idx = ((sums << (29 - n)) >> 23) & 63
    cases = []
    for k in range(64):
        for j in np.flatnonzero(idx == k)[:per_entry]:
            logits, target = rows[j : j + 1], np.array([int(j) % VOCAB])
            cases.append(Case("loss_q16", label, f"ln table entry {k}, S = {sums[j]}",
                              _spec(p), {"T": 1}, {"logits": _i(logits),
                                                   "targets": ("B", target)},
                              {"loss_q16": int(ops.loss_q16(logits, target, L.frac_bits))}))
    return cases


# The int32 target's edge: a dot product just below the pre-check's limit. For shift s
# (1 <= s < 16) a sum S with S >> 16 < 2**(14 + s) is rounded by the general formula;
# at S = 2**(31 + s) - 1 that formula would give 2**31 (out of int32) if the limit were
# one bit higher. Sums of 2**30 = (-2**15)**2 products reach it with 16-bit words.
OVERFLOW_POLICY = "weights=q12.4,acts=q4.12,pgrads=q8.24"  # Fw = 4, dW's shift 2
ATTENTION_OVERFLOW_POLICY = "acts=q15.1"  # dq's and dk's shift Fa = 1


def overflow_edge_cases(seed=0):
    """{label: [Case]}: linear_forward (64 -> 16, shift Fw = 4), linear_backward's dx
    (16 -> 64, shift 4) and dW (T = 16, shift 2) on sums S = 2**(31 + s) - k,
    k = 1..16, and their negatives, and attention_backward's dk (shift 1) on 2**32 - 1:
    the values a 32-bit board must saturate."""
    p = parse_policy(OVERFLOW_POLICY)
    label = p.short_spec + ",int32 edge"
    A, W, G = p.acts, p.weights, p.grads
    s, T, lo = _spec(p), 16, -(1 << 15)
    out = []
    # forward: x[t] = 32 x -2**15, -1, 0...; w[o] = 32 x -2**15, +-(o + 1), 0...
    x = np.zeros((T, MLP_HIDDEN), np.int64)
    x[:, :32], x[:, 32] = lo, -1
    w = np.zeros((N_EMBD, MLP_HIDDEN), np.int64)
    w[:, :32], w[:, 32] = lo, np.arange(1, N_EMBD + 1)
    w[N_EMBD // 2 :, :32] = -lo - 1  # the negative side: -(2**35 - 2**20) - k
    y = ops.linear_forward(_ctx(p), x, w, A, "y")
    out.append(Case("linear_forward", label, "64->16 at 2**35 - k", s,
                    {"T": T, "n_in": MLP_HIDDEN, "n_out": N_EMBD, "wide": 0},
                    {"x": _in(A, x), "w": _in(W, w)}, {"y": _in(A, y)}))
    # dx = dy @ w over n_out = 64, and dW = dy.T @ x over T = 16 (shift Fg + Fa - Fp = 2)
    w = np.zeros((MLP_HIDDEN, N_EMBD), np.int64)
    w[:32, :], w[32, :] = lo, np.arange(1, N_EMBD + 1)
    dy = np.zeros((T, MLP_HIDDEN), np.int64)
    dy[:, :32], dy[:, 32] = lo, -1
    dy[:8, 40:], dy[8, 40:] = lo, -1  # dW rows o >= 40: 8 x 2**30 - k = 2**33 - k
    x = np.zeros((T, N_EMBD), np.int64)
    x[:8, :], x[8, :] = lo, np.arange(1, N_EMBD + 1)
    x[:, N_EMBD // 2 :] = np.where(np.arange(T)[:, None] < 8, -lo - 1, x[:, N_EMBD // 2 :])
    dw = np.zeros((MLP_HIDDEN, N_EMBD), np.int64)
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    out.append(Case("linear_backward", label, "dx at 2**35 - k, dW at 2**33 - k", s,
                    {"T": T, "n_in": N_EMBD, "n_out": MLP_HIDDEN},
                    {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w),
                     "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)}))
    # dW accumulated into a nonzero dw (the op allows it): a sum one below the
    # pre-check's lower limit, -(2**16 + 1) * 2**16 = 4 x -(2**30 - 2**15) - 3 * 2**16,
    # saturated before the add
    dy, x = np.zeros((T, N_EMBD), np.int64), np.zeros((T, N_EMBD), np.int64)
    dy[:4, 0], x[:4, 0] = lo, -lo - 1
    dy[4, 0], x[4, 0] = -24576, 8
    w = np.zeros((N_EMBD, N_EMBD), np.int64)
    dw = np.full((N_EMBD, N_EMBD), 1 << 20, np.int64)
    dw_in = dw.copy()
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    out.append(Case("linear_backward", label, "dW just below the limit, added to dw", s,
                    {"T": T, "n_in": N_EMBD, "n_out": N_EMBD},
                    {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w), "dw": _i(dw_in)},
                    {"dx": _in(G, dx), "dw": _i(dw)}))
    groups = {label: out}
    # attention_backward's dk with Fa = 1: rows t = 1..8 put p = 2**15 on positions 0 and
    # 1 (the op takes any probabilities), dp[t, 1] saturated, so ds[t, 0] = -16383; with
    # q = -2**15, -16 and, from a row with ds = -1, -15, the sum is 2**32 - 1
    p = parse_policy(ATTENTION_OVERFLOW_POLICY)
    A, G = p.acts, p.grads
    label = p.short_spec + ",int32 edge"
    probs = np.zeros((4, T, T), np.int64)
    dout, q, k, v = (np.zeros((T, C), np.int64) for _ in range(4))
    probs[0, 0, 0] = 1 << 15
    probs[0, 1:, 0] = probs[0, 1:, 1] = 1 << 15
    v[1, 0], v[1, 1] = 1 << 14, 1
    dout[1:10, 0] = (1 << 15) - 1  # dp[t, 1] saturates to 2**15 - 1
    dout[10, 1] = 4  # dp[10, 1] = rnd(4, 1) = 2: ds[10, 0] = -1
    q[1:9, 0], q[9, 0], q[10, 0] = lo, -16, -15
    dq, dk, dv = ops.attention_backward(_ctx(p), dout, q, k, v, probs)
    groups[label] = [Case("attention_backward", label, "dk at 2**32 - 1", _spec(p), {"T": T},
                          {"dout": _in(G, dout), "q": _in(A, q), "k": _in(A, k),
                           "v": _in(A, v), "probs": _u(probs)},
                          {"dq": _in(G, dq), "dk": _in(G, dk), "dv": _in(G, dv)})]
    return groups


def edge_policy_groups(seed=0):
    """{label: [Case]}: every edge policy's cases (EDGE_POLICIES), ln's table on the
    default policy, and the int32 overflow edges."""
    groups = {}
    for spec, lr in EDGE_POLICIES:
        cases = policy_ops_cases(spec, seed, 0.01 if lr is None else lr)
        p = parse_policy(spec, lr=0.01 if lr is None else lr)
        label = cases[0].fmt
        rng = np.random.default_rng([seed, 11, sum(map(ord, label))])
        if not any(isinstance(f, BlockFormat) for f in (p.adam_m, p.adam_v)):
            cases += adam_threshold_cases(p, label, seed, rng)
        cases += attention_tie_cases(p, label, rng)
        cases += rmsnorm_edge_cases(p, label, rng)
        groups[label] = cases
    p = parse_policy("")
    groups["ln table"] = ln_table_cases(p, "ln table", np.random.default_rng([seed, 12]))
    groups.update(overflow_edge_cases(seed))
    groups.update(fast_path_groups(seed))  # the speed work's kernels (fast_path_cases.py)
    return groups


def conformance_policy_ops(policies, micropython=None, seed=0, heapsize=None, build="mpy",
                           target="unix", out=None, edges=False):
    """The op level of each policy SPEC (and with edges, of EDGE_POLICIES): prints
    the summary and the first mismatches; returns the exit code (0 all equal, 1 any
    mismatch or device error)."""
    from qgpt.conformance.ops import run_ops

    out = out or sys.stdout
    groups = {}
    for spec in policies:
        cases = policy_ops_cases(spec, seed)
        groups[cases[0].fmt] = cases
    if edges:
        groups.update(edge_policy_groups(seed))
    report = run_ops((), micropython, seed, heapsize, build, groups, target)
    print(report.summary(), file=out)
    for m in report.mismatches[:20]:
        print(m, file=out)
    return report.exit_code
