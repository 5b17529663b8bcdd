"""Op-level golden cases on the linear kernels' saturation skip (kernels.py, "the fast
paths"): a pair of rows skips sat() where its rounded bound top = rnd(L1 * max, sh) lies
inside [lo, hi], so both factors must be bounds. Here one sum is exactly L1 * max, at the
least value that rounds to hi + 1: top = hi + 1 and the sum must saturate, and a bound
one unit too small (max |W| from abs_max, an L1 norm) gives top = hi and stores hi + 1.
The expected values come from the simulator (qgpt/int_ops.py).

    max even   linear_forward with max |W| only at negative words of even index (abs_max
               reads two words a round; -max is its lower extreme)
    max odd    linear_forward with max |W| only at words of odd index
    L1 pairs   linear_forward's y and linear_backward's dx with the larger L1 norm of a
               pair of rows (x's or dy's) in its first row and in its second, of either
               sign: negative rows of even words and two -1, positive rows of odd words,
               so that each way of counting a word one too small (v + 1, v - 1, v ^ 1,
               -1 - v, -1 as -1) lowers the L1 norm of one of them
"""

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.inputs import Case, _ctx, _i
from qgpt.conformance.policy_cases import _in, _spec
from qgpt.params import MLP_HIDDEN, N_EMBD
from qgpt.policy import parse_policy

# On the default policy (W, A and G q4.12, q4.12 and q2.14: y's and dx's shift is 12,
# hi = 2**15 - 1) the least sum that rounds to hi + 1 is 2**27 - 2**11 = 2**11 * 65535.
EDGE_MAX = 21845  # 65535 / 3: max |W|
EDGE_L1 = 6144  # 3 * 2**11: EDGE_L1 * EDGE_MAX = 2**27 - 2**11


def _edge_row(n, sign):
    """n values of one sign whose magnitudes sum to EDGE_L1: negative, two -1 and even
    values; positive, odd values."""
    if sign < 0:
        rest = EDGE_L1 - 2
        row = np.full(n - 2, (rest // (n - 2)) & ~1, np.int64)
    else:
        rest = EDGE_L1
        row = np.full(n, (rest // n - 1) | 1, np.int64)
    row[: (rest - int(row.sum())) // 2] += 2
    if sign < 0:
        row = np.concatenate([row, [1, 1]])
    assert row.sum() == EDGE_L1 and (row > 0).all(), (n, sign)
    return sign * row


def _pair_rows(n, small, rng):
    """(8, n): the four pairs (edge, small), (small, edge) with a negative and a positive
    edge row (_edge_row) each; the small rows within +-small."""
    rows = rng.integers(-small, small + 1, (8, n))
    for t, sign in ((0, -1), (2, 1), (5, -1), (7, 1)):
        rows[t] = rng.permutation(_edge_row(n, sign))
    return rows


def _edge_sum(p):
    """The least sum S with rnd(S, Fw) = hi + 1 (y's and dx's shift is Fw)."""
    sh = p.weights.frac_bits
    return ((p.acts.hi + 1) << sh) - (1 << (sh - 1))


def linear_pair_cases(seed=0):
    """{label: [Case]} on the default policy: the sums at the clamp's edge (above), T = 2
    (one pair) for abs_max's, T = 8 (_pair_rows) for the L1 norms'."""
    rng = np.random.default_rng([seed, 16])
    p = parse_policy("")
    A, W, G = p.acts, p.weights, p.grads
    assert EDGE_L1 * EDGE_MAX == _edge_sum(p) and G.hi == A.hi, p.spec
    label = p.short_spec + ",linear clamp edge"
    s, out = _spec(p), []
    m, n = EDGE_MAX, N_EMBD
    # y[t, 0] = sum W[0, i] x[t, i] = L1 * max: W[0] at -max and x[t] at -768 on the even
    # i (other words of W within [-(max - 1), max - 2]: abs_max reading an even word v
    # as -1 - v, or -min v as one less, gives max - 1); then W[0] at +max on the odd i
    # (the even words within max / 4)
    for what, first, lim in (("max |W| at even negative words", 0, m - 2),
                             ("max |W| at odd words", 1, m // 4)):
        w = rng.integers(-lim, lim + 1, (n, n))
        sign = -1 if first == 0 else 1
        w[0, first::2] = sign * m
        x = np.zeros((2, n), np.int64)
        x[:, first::2] = sign * (EDGE_L1 // (n // 2))
        y = ops.linear_forward(_ctx(p), x, w, A, "y")
        assert y[0, 0] == A.hi, what
        out.append(Case("linear_forward", label, f"{what}: y at hi + 1, saturated", s,
                        {"T": 2, "n_in": n, "n_out": n, "wide": 0},
                        {"x": _in(A, x), "w": _in(W, w)}, {"y": _in(A, y)}))
    # y[t, 0] (negative x[t]) and y[t, 1] (positive x[t]) = L1 * max: W[0] = -max, W[1] =
    # +max, the edge rows first and second of their pairs
    w = rng.integers(-(m - 1), m, (n, n))
    w[0], w[1] = -m, m
    x = _pair_rows(n, 8, rng)
    y = ops.linear_forward(_ctx(p), x, w, A, "y")
    assert y[0, 0] == y[2, 1] == y[5, 0] == y[7, 1] == A.hi
    out.append(Case("linear_forward", label, "y at hi + 1 in a pair's first and second row", s,
                    {"T": 8, "n_in": n, "n_out": n, "wide": 0},
                    {"x": _in(A, x), "w": _in(W, w)}, {"y": _in(A, y)}))
    # dx[t, i] = sum_o dy[t, o] W[o, i] likewise: W[:, 0] = -max, W[:, 1] = +max
    n_in, n_out, T = N_EMBD, MLP_HIDDEN, 8
    w = rng.integers(-(m - 1), m, (n_out, n_in))
    w[:, 0], w[:, 1] = -m, m
    dy = _pair_rows(n_out, 8, rng)
    x = rng.integers(A.lo // 4, A.hi // 4, (T, n_in))
    dw = np.zeros((n_out, n_in), np.int64)
    dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
    assert dx[0, 0] == dx[2, 1] == dx[5, 0] == dx[7, 1] == G.hi
    out.append(Case("linear_backward", label, "dx at hi + 1 in a pair's first and second row",
                    s, {"T": T, "n_in": n_in, "n_out": n_out},
                    {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w),
                     "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)}))
    return {label: out}
