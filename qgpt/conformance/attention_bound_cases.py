"""Op-level golden cases on attention_forward's bound (firmware/kernels.py): a head's
scores take one int32 sum where L1(q_h[t]) <= _L1_FIT = 2**15 - 1 bounds |S| by
(2**15 - 1) * 2**15, else dot_rows's exact pair. The expected values come from the
simulator (qgpt/int_ops.py).

    attention bound  acts q1.15 and logits q24.0: the scores' shift 2 Fa + 1 - Fl = 31,
                     so the rounding half is 2**30 and S + half stays below 2**31 only
                     while S < 2**30. Every head's q_h[t] has L1 = 2**15 against k
                     words of -2**15 of the same sign (S = 2**30: the exact path's
                     first), with its mass in one word of each position or spread; and
                     L1 = 2**15 - 1 (the fast path's last: S + half = 2**31 - 2**15). An
                     "int32 edge" group: an L1 that counts one or two too few, or a
                     bound one higher, sends S = 2**30 to the fast path, whose sum with
                     the half leaves int32 on a 32-bit board (the int32 target sees it;
                     the 64-bit unix port does not)
"""

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.inputs import C, Case, _ctx, _u
from qgpt.conformance.policy_cases import _in, _spec
from qgpt.params import HEAD_DIM, N_HEAD
from qgpt.policy import parse_policy

BOUND_POLICY = "acts=q1.15,logits=q24.0"  # the scores' shift 2 * 15 + 1 - 0 = 31

# q_h's four words per head: L1 = 2**15 in word 0, in words 0 and 1 (one of them -1: an
# L1 that counts -1 as -1), in word 3 (the last word's term) and spread over all four
_AT_BOUND = ((-32768, 0, 0, 0), (-32767, -1, 0, 0), (0, 0, 0, -32768),
             (-8192, -8192, -8192, -8192))
# L1 = 2**15 - 1, the fast path's last: S = (2**15 - 1) * 2**15
_BELOW_BOUND = ((-32767, 0, 0, 0), (-32766, -1, 0, 0), (0, 0, 0, -32767),
                (-8192, -8192, -8192, -8191))


def _case(p, label, name, heads, rng):
    """attention_forward at T = 2: q's rows both hold `heads` (one tuple a head), k's
    row 0 is all -2**15 (the bound's S for every head at t = 0 and 1) and row 1 zeros
    (a second score at t = 1, so that the first one moves the probabilities)."""
    A = p.acts
    assert len(heads) == N_HEAD and all(len(h) == HEAD_DIM for h in heads)
    q = np.tile(np.array(heads, np.int64).reshape(C), (2, 1))
    k = np.zeros((2, C), np.int64)
    k[0] = A.lo
    v = rng.integers(A.lo, A.hi + 1, (2, C))
    out, probs = ops.attention_forward(_ctx(p), q, k, v)
    return Case("attention_forward", label, name, _spec(p), {"T": 2},
                {"q": _in(A, q), "k": _in(A, k), "v": _in(A, v)},
                {"out": _in(A, out), "probs": _u(probs)})


def attention_bound_cases(rng):
    """{label: [Case]}: the two cases of the module docstring, an int32 edge group."""
    p = parse_policy(BOUND_POLICY)
    assert p.score_shift == 31, p.score_shift
    label = p.short_spec + ",attention bound int32 edge"
    return {label: [_case(p, label, "L1(q_h) = 2**15 against k = -2**15: S = 2**30",
                          _AT_BOUND, rng),
                    _case(p, label, "L1(q_h) = 2**15 - 1 against k = -2**15: the fast "
                          "path's last", _BELOW_BOUND, rng)]}
