"""Op-level golden cases on the thresholds of the speed work's kernels (issue 15):
the linear kernels' bounded fast paths, dot_rows's widths and adam_update's isqrt (a
parabola, a Newton step, exact corrections). The expected values come from the
simulator (qgpt/int_ops.py, IntAdam).

    linear     L1(x[t]) * max |W| (and L1(dy[t]) * max |W|, L1(dy[:, o]) * max |x|) at,
               just below and just over the fast path's bound 2**30 - 1, and all-zero
               weights (max |W| = 0: no division); in an "int32 edge" group, so the
               int32 target checks that the fast path never leaves int32
    embedding  d = req(dx, Fg - Fp) at the pgrads' limits hi >> ls and lo >> ls with a
               left shift ls = 9 (pgrads q1.23): hi >> ls << ls is below hi
    shift 1    the fast paths' rounding half at lm_head's and dW's shift 1
    floor      adam_update's (delta + add_u) >> u with rounding floor, delta at every
               residue beside 0 and half modulo 2**u
    dW         dot_rows's pre-check (hh against +-2**(14 + s)) with a dw to add to
    8-bit dy   dW's fast path off for 8-bit gradients (it reads 16-bit words)
    isqrt      adam_update with v (after its update) at every boundary of the
               normalization (256, 2**8 .. 2**20 by the shifts) and of the chords it had
               (vn = 64, 96, 128, 192, 256 times 4**s2), at squares k*k - 1, k*k, k*k + 1
               there, and at 2**30
    adam       adam_update's unsplit mul15: m, g and v at its bounds 2**18 and 2**22, beside
               them and at the int32 limits of the products, on policies at each per-call
               threshold (sh_s 7 and 6, hm 2**19 - 1 and 2**18 - 1, hv 2**22 - 1)
    ratio      adam_update's quotient without the clamp's test before it (|m| << e <=
               2**30 - 2**14): |m| at that bound (2**30 - 2**14) >> e and at 2**30 >> e
               (the bound before) and beside them, with den = isqrt(v) + 1
               below, at and above the clamp's threshold 2**15 (v near 2**30), and small
               (the quotient clamped after the division), two values of e
               above the bound (the clamp's test first, then the offset division): |m| at
               the clamp's threshold and beside it, with a 32-bit master store (an r one
               off moves d), e = 5, 15, 16 and 19
"""

import math

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.adam_model_cases import adam_model_groups
from qgpt.conformance.attention_bound_cases import attention_bound_cases
from qgpt.conformance.inputs import T_MAX, C, Case, _ctx, _i, _tokens
from qgpt.conformance.linear_pair_cases import linear_pair_cases
from qgpt.conformance.policy_cases import _in, _spec, adam_case
from qgpt.int_model import mul_q15
from qgpt.params import MLP_HIDDEN, N_EMBD, VOCAB
from qgpt.policy import parse_policy

FIT = (1 << 30) - 1  # the fast paths' bound: |S| <= L1 * max <= FIT
EMBEDDING_POLICY = "pgrads=q1.23"  # Fp - Fg = 9: d << 9, hi >> 9 = 16383 within G


def _l1_rows(n, targets, big, rng):
    """Rows of n values in [0, big] whose sums are the targets (at most n * big)."""
    rows = np.zeros((len(targets), n), np.int64)
    for r, target in enumerate(targets):
        left = min(target, n * big)
        for i in rng.permutation(n):
            rows[r, i] = min(big, left)
            left -= rows[r, i]
    return rows


def _bound_targets(top):
    """L1 norms around the bound of a magnitude `top`: FIT // top - 1 .. + 1 (the fast
    path's last and the exact path's first) and (2**31 - 1) // top, where the sum
    itself meets int32's limit (a fast path beyond its bound would overflow there)."""
    return [FIT // top - 1, FIT // top, FIT // top + 1, (2**31 - 1) // top]


def linear_bound_cases(rng):
    """{label: [Case]} on the default policy: linear_forward (64 -> 16 and 16 -> 27, the
    lm_head's odd rows) and linear_backward's dx and dW with L1 norms at the bounds of
    _bound_targets, the operands' signs aligned (x or dy of one sign, a row or column of
    W or x all +max or all -max) so that |S| is the bound itself; and all-zero weights."""
    p = parse_policy("")
    label = p.short_spec + ",fast path int32 edge"
    A, W, G, L = p.acts, p.weights, p.grads, p.logits
    s, out = _spec(p), []
    for n_in, n_out, wide in ((MLP_HIDDEN, N_EMBD, False), (N_EMBD, VOCAB, True)):
        for top in (W.hi, 3 * 2**12 + 1):
            w = rng.integers(-top, top + 1, (n_out, n_in))
            w[0], w[1] = top, -top  # rows 0 and 1: S = +-L1(x[t]) * max |W|
            x = _l1_rows(n_in, _bound_targets(top), A.hi, rng)
            x = np.concatenate([x, -x])  # and every sign flipped
            y = ops.linear_forward(_ctx(p), x, w, L if wide else A, "y")
            out.append(Case("linear_forward", label, f"{n_in}->{n_out} L1 * max at 2**30 "
                            f"and 2**31, max {top}", s,
                            {"T": len(x), "n_in": n_in, "n_out": n_out, "wide": int(wide)},
                            {"x": _in(A, x), "w": _in(W, w)},
                            {"y": ("i", y) if wide else _in(A, y)}))
    x = rng.integers(A.lo, A.hi + 1, (2, N_EMBD))  # max |W| = 0: no division
    w = np.zeros((N_EMBD, N_EMBD), np.int64)
    out.append(Case("linear_forward", label, "zero weights", s,
                    {"T": 2, "n_in": N_EMBD, "n_out": N_EMBD, "wide": 0},
                    {"x": _in(A, x), "w": _in(W, w)},
                    {"y": _in(A, ops.linear_forward(_ctx(p), x, w, A, "y"))}))
    n_in, n_out, T = N_EMBD, MLP_HIDDEN, 16
    for top in (W.hi, 3 * 2**12 + 1, 0):
        # dx: dy[t] >= 0 with L1 at the bounds of max |W| (t = 0..3, repeated), W's
        # columns 0 and 1 all +max and -max; dW: dy[:, o] >= 0 with L1 at the bounds of
        # max |x| (o = 0..3), x's columns 0 and 1 all +max and -max
        w = rng.integers(-top, top + 1, (n_out, n_in))
        w[:, 0], w[:, 1] = top, -top
        x = rng.integers(-top, top + 1, (T, n_in))
        x[:, 0], x[:, 1] = top, -top
        rows = _l1_rows(n_out, _bound_targets(top) * 4, G.hi, rng) if top else None
        cols = _l1_rows(T, _bound_targets(top), G.hi, rng).T if top else None
        for what, fill in (("dx's rows", rows), ("dW's columns", cols)):
            dy = rng.integers(0, 3, (T, n_out))
            if what == "dx's rows" and top:
                dy[:] = fill
                dy[8:] = -dy[8:]  # and every sign flipped
            elif top:
                dy[:, :4], dy[:, 4:8] = fill, -fill
            dw = np.zeros((n_out, n_in), np.int64)
            dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
            out.append(Case("linear_backward", label, f"{what}: L1 * max at 2**30 and 2**31, "
                            f"max {top}", s, {"T": T, "n_in": n_in, "n_out": n_out},
                            {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w),
                             "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)}))
            if not top:
                break
    return {label: out}


def embedding_shift_cases(rng):
    """{label: [Case]}: embedding_backward with d = dx << 9 at hi >> 9 and lo >> 9 and
    beside them (pgrads q1.23, 24 bits: hi = 2**23 - 1)."""
    p = parse_policy(EMBEDDING_POLICY)
    label = p.short_spec + ",fast paths"
    G = p.grads
    ls = p.pgrads.frac_bits - G.frac_bits
    hi_ls, lo_ls = p.pgrads.hi >> ls, -((-p.pgrads.lo) >> ls)
    edge = [hi_ls - 1, hi_ls, hi_ls + 1, lo_ls - 1, lo_ls, lo_ls + 1, G.hi, G.lo]
    dx = np.resize(np.array(edge, np.int64), (16, C))
    tokens = _tokens(rng, 16)
    dwte, dwpe = np.zeros((VOCAB, C), np.int64), np.zeros((T_MAX, C), np.int64)
    ins = {"dx": _in(G, dx), "tokens": ("B", tokens), "dwte": _i(dwte), "dwpe": _i(dwpe)}
    ops.embedding_backward(_ctx(p), dx, tokens, dwte, dwpe)
    return {label: [Case("embedding_backward", label, "d at pgrads' limits >> 9", _spec(p),
                         {"T": 16}, ins, {"dwte": _i(dwte), "dwpe": _i(dwpe)})]}


def isqrt_targets():
    """The v whose isqrt meets a threshold of adam_update's normalization or of the four
    chords it had before its parabola (the same v still): every v < 300 (v < 256
    goes through 256 v), 2**k - 2 .. 2**k + 2, the chords' ends vn * 4**s2 (vn = 64, 96,
    128, 192, 256) and the same over 256, each -1, 0, +1, the squares k*k - 1, k*k, k*k + 1
    beside each of them, and 2**30."""
    vs = set(range(300))
    for k in range(8, 31):
        vs |= {(1 << k) + d for d in (-2, -1, 0, 1, 2)}
    for s2 in range(12):
        for vn in (64, 96, 128, 192, 256):
            for end in (vn << (2 * s2), (vn << (2 * s2)) >> 8):
                vs |= {end - 1, end, end + 1}
                k = math.isqrt(end)
                vs |= {j * j + d for j in (k - 1, k, k + 1, k + 2) for d in (-1, 0, 1)}
    return sorted(v for v in vs if 0 <= v <= 1 << 30)


def _v_before(target, v_hi):
    """(v, gs): Adam's state and squared-gradient word whose update (9.2) gives target,
    the nearest below it where no pair gives it exactly."""
    c2 = 328  # qgpt.policy: 1 - beta2 in Q15
    v = -(-((target << 15) - (1 << 14)) // ((1 << 15) - c2))  # the least v, gs = 0
    for v0 in (v - 1, v, v + 1):
        if 0 <= v0 <= v_hi and int(mul_q15(v0, (1 << 15) - c2)) == target:
            return v0, 0
    # above b2 * v_hi: v = v_hi and the gs whose (1 - b2) gs^2 adds the rest
    got = int(mul_q15(v_hi, (1 << 15) - c2)) + mul_q15(np.arange(2**15, dtype=np.int64) ** 2, c2)
    return v_hi, max(int(np.searchsorted(got, target, side="right")) - 1, 0)


def isqrt_cases(rng):
    """{label: [Case]}: adam_update (default policy, step 10) on parameters whose v after
    the update is each isqrt_targets value, m = 2 sqrt(v) (r = 2: a den one off moves
    delta by several steps), in an int32 edge group (the estimate's products)."""
    p = parse_policy("")
    label = p.short_spec + ",isqrt int32 edge"
    V, M, S = p.adam_v, p.adam_m, p.weight_store
    fh = V.frac_bits // 2
    sh_g = p.pgrads.frac_bits - fh
    targets = isqrt_targets()
    out = []
    for k in range(0, len(targets), 512):
        part = targets[k : k + 512]
        v, gs = zip(*(_v_before(t, V.hi) for t in part), strict=True)
        v, gs = np.array(v, np.int64), np.array(gs, np.int64)
        g = gs << sh_g if sh_g >= 0 else gs >> -sh_g
        roots = np.array([math.isqrt(t) for t in part], np.int64)
        m = np.clip(2 * roots << (M.frac_bits - fh), -M.hi, M.hi) * rng.choice([-1, 1], len(part))
        store = rng.integers(S.lo // 4, S.hi // 4, len(part))
        out.append(adam_case(p, label, _spec(p), f"v at isqrt's thresholds, {part[0]}..", 10,
                             store, m, v, g, 0))
    return {label: out}


FLOOR_POLICIES = ("rounding=floor",)  # int32 m: m = r up to 2**15


def _residue_steps(p, targets, num_steps=1000):
    """{step: (alpha, [r])}: for each target residue t modulo 2**u (u the update's shift)
    the first step whose alpha has an r in [1, 2**15] with alpha * r = t mod 2**u."""
    from qgpt import int_model

    u = p.update_shift
    found, left = {}, set(targets)
    p1 = p2 = 1 << 30
    for step in range(num_steps):
        p1, p2 = int_model.beta_powers(p1, p2)
        alpha = int_model.alpha_at(p, step, num_steps, p1, p2)
        for t in sorted(left):
            for k in range(0 if t > 0 else 1, ((alpha << 15) >> u) + 1):
                num = (k << u) + t
                if alpha and num % alpha == 0 and 0 < num // alpha <= 1 << 15:
                    found.setdefault(step, (alpha, []))[1].append(num // alpha)
                    left.discard(t)
                    break
        if not left:
            break
    return found


def floor_cases(seed, rng):
    """{label: [Case]}: adam_update with rounding floor on delta = alpha * r at the
    residues -1, 0, 1, half - 1, half, half + 1 modulo 2**u (u the update's shift): r made
    exact by v whose root is 2**e - 1 (den = 2**e, so r = |m|) and m that updates to r;
    both signs."""
    groups = {}
    k1 = (1 << 15) - 4915
    for spec in FLOOR_POLICIES:
        p = parse_policy(spec)
        label = p.short_spec + ",rounding=floor,fast paths"
        u, e, V, S = p.update_shift, p.adam_e, p.adam_v, p.weight_store
        half = (1 << u) >> 1
        v_old, gs = _v_before(((1 << e) - 1) ** 2, V.hi)
        assert gs == 0, "v reachable with g = 0"
        cases = []
        for step, (_, rs) in _residue_steps(p, (-1, 0, 1, half - 1, half, half + 1)).items():
            m = []
            for r in rs:
                m_old = (r << 15) // k1
                m_old = next(x for x in range(m_old - 2, m_old + 4) if int(mul_q15(x, k1)) == r)
                m += [m_old, -m_old]
            n = len(m)
            store = rng.integers(S.lo // 2, S.hi // 2, n)
            cases.append(adam_case(p, label, _spec(p), f"floor: delta at residues mod 2**{u}, "
                                   f"step {step}", step, store, np.array(m, np.int64),
                                   np.full(n, v_old, np.int64), np.zeros(n, np.int64), seed))
        groups[label] = cases
    return groups


SHIFT_ONE_POLICY = "weights=q8.8,acts=q8.8,logits=q9.15,pgrads=q11.21"  # lm_head, dW: 1


def shift_one_cases(rng):
    """{label: [Case]}: the fast paths' rounding half with a shift of 1 (lm_head's
    Fw + Fa - Fl and dW's Fg + Fa - Fp), where `sh > 0` and `sh > 1` part: linear_forward
    16 -> 27 and linear_backward 16 -> 64 on random values (within the bound)."""
    p = parse_policy(SHIFT_ONE_POLICY)
    label = p.short_spec + ",fast paths"
    A, W, G, L = p.acts, p.weights, p.grads, p.logits
    s = _spec(p)
    x = rng.integers(-A.hi // 4, A.hi // 4, (16, N_EMBD))
    w = rng.integers(-W.hi // 4, W.hi // 4, (VOCAB, N_EMBD))
    y = ops.linear_forward(_ctx(p), x, w, L, "y")
    out = [Case("linear_forward", label, "16->27 random, shift 1", s,
                {"T": 16, "n_in": N_EMBD, "n_out": VOCAB, "wide": 1},
                {"x": _in(A, x), "w": _in(W, w)}, {"y": ("i", y)})]
    dy = rng.integers(-G.hi // 64, G.hi // 64, (16, MLP_HIDDEN))
    w = rng.integers(-W.hi // 4, W.hi // 4, (MLP_HIDDEN, N_EMBD))
    dw = np.zeros((MLP_HIDDEN, N_EMBD), np.int64)
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    out.append(Case("linear_backward", label, "16->64 random, shift 1", s,
                    {"T": 16, "n_in": N_EMBD, "n_out": MLP_HIDDEN},
                    {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w),
                     "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)}))
    return {label: out}


DW_POLICY = "weights=q12.4,acts=q4.12,pgrads=q8.24"  # dW's shift 2, pgrads +-2**30


def dw_precheck_cases(rng):
    """{label: [Case]}: linear_backward's dW through dot_rows's pre-check with a nonzero
    dw to add: S = 2**32 + 4 (hh = lim: saturated to 2**30 before the add), -2**32 + 4
    (hh = -lim: the formula, -2**30 + 1) and -2**32 - 5 (hh = -lim - 1: saturated), each
    added to a dw of the other sign."""
    p = parse_policy(DW_POLICY)
    label = p.short_spec + ",dW pre-check"
    A, W, G = p.acts, p.weights, p.grads
    T, n_in, n_out, lo = 16, N_EMBD, MLP_HIDDEN, -(1 << 15)
    dy = np.zeros((T, n_out), np.int64)
    x = np.zeros((T, n_in), np.int64)
    dy[:4, :3] = lo  # columns 0, 1, 2 of dy against columns 0, 1, 2 of x
    x[:4, 0], x[:4, 1], x[:4, 2] = lo, -lo - 1, -lo - 1
    dy[4, 0], x[4, 0] = 2, 2  # S_00 = 4 * 2**30 + 4
    dy[4, 1], x[4, 1], dy[5, 1], x[5, 1] = -4, -lo - 1, -3, 3  # S_11 = -2**32 - 5
    dy[4, 2], x[4, 2] = -4, -lo - 1  # S_22 = -2**32 + 4
    w = rng.integers(-64, 64, (n_out, n_in))
    dw0 = np.zeros((n_out, n_in), np.int64)
    dw0[0, 0], dw0[1, 1], dw0[2, 2] = -(1 << 29), 1 << 29, 1 << 29
    dw = dw0.copy()
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    return {label: [Case("linear_backward", label, "dW at hh = +-lim and -lim - 1, dw added",
                         _spec(p), {"T": T, "n_in": n_in, "n_out": n_out},
                         {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w), "dw": _i(dw0)},
                         {"dx": _in(G, dx), "dw": _i(dw)})]}


BYTE_GRADS_POLICY = "grads=q2.6,pgrads=q8.8"  # 8-bit dy: dW's fast path is off (max |x| 0)


def byte_dw_cases(rng):
    """{label: [Case]}: linear_backward with 8-bit gradients, T = 1 and dy nonzero in odd
    columns only: dW's fast path must stay off (it reads 16-bit words; read from 8-bit
    dy, column 1's word is bytes 2 and 3, zeros)."""
    p = parse_policy(BYTE_GRADS_POLICY)
    label = p.short_spec + ",fast paths"
    A, W, G = p.acts, p.weights, p.grads
    n_in, n_out = N_EMBD, MLP_HIDDEN
    dy = np.zeros((1, n_out), np.int64)
    dy[0, 1::2] = rng.integers(1, G.hi, n_out // 2)
    x = rng.integers(A.lo // 2, A.hi // 2, (1, n_in))
    w = rng.integers(W.lo // 2, W.hi // 2, (n_out, n_in))
    dw = np.zeros((n_out, n_in), np.int64)
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    return {label: [Case("linear_backward", label, "8-bit dy in odd columns, T = 1", _spec(p),
                         {"T": 1, "n_in": n_in, "n_out": n_out},
                         {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w),
                          "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)})]}


# --- Adam's unsplit mul15 (issue 15: adam_update's bounds) ---
#
# adam_update computes mul15 without its 16-bit split where |m|, |g| <= 2**18 (m, g in
# [-2**18, 2**18)) and v < 2**22, for policies with int32 m and v, sh_m = 0, sh_s >= 7,
# hm >= 2**18 and hv >= 2**22 - 1 (docs/arithmetic.md 9.1, 9.2). The cases put m, g and v
# at those bounds and beside them, and at the limits where the unsplit products would
# leave int32 (|m|, |g| * C1 or v * C2 beyond 2**31 - 2**14: a wider test is caught on the
# int32 target), on the default policy and on policies at each per-call threshold.

ADAM_UNSPLIT = 1 << 18  # |m|, |g| bound of the unsplit path
ADAM_UNSPLIT_V = 1 << 22  # v bound
ADAM_INT32_M = ((1 << 31) - (1 << 14)) // 4915  # m * C1 + 2**14 < 2**31 up to here
ADAM_INT32_V = ((1 << 31) - (1 << 14)) // 328  # v * C2 likewise
ADAM_UNSPLIT_POLICIES = (
    "pgrads=q11.21,adam_m=q11.21",  # sh_s = 7: unsplit allowed (|gs| <= 2**11)
    "pgrads=q12.20,adam_m=q12.20",  # sh_s = 6: not (gs**2 * C2 would leave int32)
    "pgrads=q6.13,adam_m=q6.13,adam_v=q11.12",  # hm = 2**18 - 1: not (m = -2**18)
    "pgrads=q7.13,adam_m=q7.13,adam_v=q11.12",  # hm = 2**19 - 1, hv = 2**22 - 1: allowed
)


def adam_unsplit_values():
    """(m and g values, v values): each bound, one either side, and the int32 limits of
    the unsplit products."""
    b, lim = ADAM_UNSPLIT, ADAM_INT32_M
    mg = sorted({0, 1, -1, b - 2, b - 1, b, -b - 1, -b, -b + 1, lim, lim + 1, -lim, -lim - 1,
                 3 * b - 1, -3 * b})
    bv, lim_v = ADAM_UNSPLIT_V, ADAM_INT32_V
    v = sorted({0, 255, bv - 2, bv - 1, bv, bv + 1, lim_v, lim_v + 1, 2 * bv - 1})
    return mg, v


def adam_unsplit_cases(rng):
    """{label: [Case]}: adam_update (step 10) on every (m, g, v) of adam_unsplit_values
    clipped to each policy's formats (g to pgrads, m to +-m_limit and adam_m, v to [0, hi]),
    the default policy and ADAM_UNSPLIT_POLICIES, in int32 edge groups."""
    mg, vs = adam_unsplit_values()
    groups = {}
    for spec in ("", *ADAM_UNSPLIT_POLICIES):
        p = parse_policy(spec)
        label = p.short_spec + ",adam unsplit int32 edge"
        M, V, P, S = p.adam_m, p.adam_v, p.pgrads, p.weight_store
        grid = np.array([(m, g, v) for m in mg for g in mg for v in vs], np.int64)
        m = np.clip(grid[:, 0], max(M.lo, -p.m_limit), min(M.hi, p.m_limit))
        if spec == ADAM_UNSPLIT_POLICIES[2]:
            m = np.clip(grid[:, 0], M.lo, M.hi)  # m = -2**18 = M.lo below -m_limit
        g = np.clip(grid[:, 1], P.lo, P.hi)
        v = np.clip(grid[:, 2], 0, V.hi)
        keep = np.unique(np.stack([m, g, v], 1), axis=0)
        cases = []
        for k in range(0, len(keep), 512):
            part = keep[k : k + 512]
            store = rng.integers(S.lo // 2, S.hi // 2, len(part))
            cases.append(adam_case(p, label, _spec(p), f"m, g, v at the unsplit bounds, "
                                   f"{k}..", 10, store, part[:, 0], part[:, 2], part[:, 1], 0))
        groups[label] = cases
    return groups


# --- Adam's ratio (9.4) without the clamp's test first ---
#
# adam_update divides first and clamps after where a = |m| <= (2**30 - 2**14) >> e (then
# (a << e) + den/2 <= 2**30, den <= 2**15 + 1, and the quotient is at least 2**15 exactly
# where a * 2**e >= den * 2**15), and tests the threshold first only above that bound.

ADAM_RATIO_POLICIES = ("", "adam_m=q16.16")  # e = 5 and e = 11


def _m_before(target, gm, k1=(1 << 15) - 4915):
    """The m whose update (9.1: mul15(m, 2**15 - C1) + mul15(gm, C1)) gives target."""
    rest = target - int(mul_q15(gm, 4915))
    m = (rest << 15) // k1
    return next(x for x in range(m - 2, m + 4) if int(mul_q15(x, k1)) == rest)


def _ratio_group(p, rng, dens, ms, what):
    """{label: [Case]}: adam_update (step 10) on parameters whose v after the update makes
    den each of dens and whose m after it is +-a for each a of ms(den), in p's int32 edge
    group (the int32 target runs it too)."""
    V, S = p.adam_v, p.weight_store
    sh_g = p.pgrads.frac_bits - V.frac_bits // 2  # g = gs << sh_g
    sh_m = p.pgrads.frac_bits - p.m_wide.frac_bits  # gm = rnd(g, sh_m), sh_m >= 0 here
    assert sh_g >= 0 and sh_m >= 0, p.spec
    rows = []
    for den in dens:
        if (den - 1) ** 2 >= V.hi:  # v = 2**30 = hi: b2 hi + (1 - b2) 2**30 exactly
            v, gs = V.hi, -(1 << 15)
        else:  # den - 1 = isqrt of the middle of its interval, or nearly
            v, gs = _v_before((den - 1) * den, V.hi)
        g = gs << sh_g
        gm = (g + ((1 << sh_m) >> 1)) >> sh_m
        rows += [(_m_before(sign * a, gm), v, g) for a in ms(den) for sign in (1, -1)]
    grid = np.array(rows, np.int64)
    store = rng.integers(S.lo // 2, S.hi // 2, len(grid))
    label = p.short_spec + ",adam ratio int32 edge"
    return {label: [adam_case(p, label, _spec(p), what, 10, store, grid[:, 0], grid[:, 1],
                              grid[:, 2], 0)]}


def adam_ratio_cases(rng):
    """{label: [Case]}: adam_update (step 10) on parameters whose m after the update is
    +-lim - 1, +-lim, +-lim + 1 for lim = (2**30 - 2**14) >> e (the bound) and 2**30 >> e
    (the bound before it), and whose v after it makes den 2**15 - 1, 2**15 (a * 2**e =
    den * 2**15 at a = 2**30 >> e), 2**15 + 1 (v = 2**30), 1 and 2**10 (g as _v_before
    gives it), each pair once, in an int32 edge group."""
    groups = {}
    for spec in ADAM_RATIO_POLICIES:
        p = parse_policy(spec)
        lims = (((1 << 30) - (1 << 14)) >> p.adam_e, (1 << 30) >> p.adam_e)
        groups.update(_ratio_group(
            p, rng, ((1 << 15) - 1, 1 << 15, (1 << 15) + 1, 1, 1 << 10),
            lambda den, lims=lims: [lim + d for lim in lims for d in (-1, 0, 1)],
            "m at the bound, den at the clamp"))
    return groups


# Above the bound (a > a_lim) the clamp's test comes first and the division is offset
# (... - den) // den + 1. A 32-bit master store (q3.28: u = 6, alpha >= 2**u at step 10)
# turns every unit of r into another d, so an r one off there changes the store. e = 5
# (the test a >= den << (15 - e)), 15, 16 and 19 (a >= ceil(den / 2**(e - 15))).
ADAM_SLOW_POLICIES = ("master=q3.28", "adam_m=q20.12,master=q3.28",
                      "pgrads=q18.14,adam_m=q21.11,master=q3.28",
                      "adam_m=q8.8,adam_v=q4.28,master=q3.28")


def _slow_ms(e, den, hm, rng, n_between=12):
    """|m| above the bound a_lim = (2**30 - 2**14) >> e: at the clamp's threshold t (the
    least a with a * 2**e >= den * 2**15) and beside it, the first two above the bound and
    n_between in between (quotients of every rounding fraction). (With den = 2**15 + 1
    and e <= 13, (a << e) + den/2 passes 2**30 below t: the firmware divides the
    shortfall, the int32 target checks that its operands stay within 2**30.)"""
    a_lim = ((1 << 30) - (1 << 14)) >> e
    t = -(-(den << 15) >> e)
    a = {t - 2, t - 1, t, t + 1, a_lim + 1, a_lim + 2}
    if t - a_lim > 3:
        a |= set(rng.integers(a_lim + 1, t, n_between).tolist())
    return sorted(x for x in a if a_lim < x <= hm)


def adam_ratio_slow_cases(rng):
    """{label: [Case]}: adam_update (step 10) with den = 2**15 - 1, 2**15, 2**15 + 1 and
    m after the update at _slow_ms's values, both signs, on ADAM_SLOW_POLICIES (an
    int32 edge group: the int32 target runs it too)."""
    groups = {}
    for spec in ADAM_SLOW_POLICIES:
        p = parse_policy(spec)
        groups.update(_ratio_group(
            p, rng, ((1 << 15) - 1, 1 << 15, (1 << 15) + 1),
            lambda den, p=p: _slow_ms(p.adam_e, den, p.m_limit, rng),
            "m above the bound, at the clamp"))
    return groups


def fast_path_groups(seed=0):
    """{label: [Case]}: every group of this module."""
    rng = np.random.default_rng([seed, 15])
    groups = linear_bound_cases(rng)
    groups.update(embedding_shift_cases(rng))
    groups.update(isqrt_cases(rng))
    groups.update(floor_cases(seed, rng))
    groups.update(dw_precheck_cases(rng))
    groups.update(byte_dw_cases(rng))
    groups.update(adam_unsplit_cases(rng))
    groups.update(adam_ratio_cases(rng))
    groups.update(adam_ratio_slow_cases(rng))
    for label, cases in shift_one_cases(rng).items():
        groups.setdefault(label, []).extend(cases)
    groups.update(attention_bound_cases(rng))
    groups.update(linear_pair_cases(seed))  # the saturation skip's edge (linear_pair_cases.py)
    groups.update(adam_model_groups(seed))  # round 6's Adam thresholds (adam_model_cases.py)
    return groups
