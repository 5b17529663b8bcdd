"""Op-level golden cases on attention_forward's bound (firmware/kernels.py): a head's
scores take one int32 sum where L1(q_h[t]) <= _L1_FIT = 2**15 - 1 bounds |S|, else
dot_rows's exact pair. The expected values come from the simulator (qgpt/int_ops.py).

    attention bound  acts q1.15 and logits q24.0: the scores' shift 2 Fa + 1 - Fl = 31,
                     the widest, where the sum S + half must stay within int32. On a
                     32-bit board half = (1 << 31) >> 1 is -2**30 (on the 64-bit unix
                     port +2**30; every score one lower, which softmax does not see), so
                     the negative side binds there: S < -2**30 leaves int32. Heads with
                     L1(q_h[t]) = 2**15 + 1 that count 2**15 - 1 if -1 is taken for its
                     own magnitude (S = -2**30 - 2**15 + 1 against k of the opposite
                     signs), and L1 = 2**15 at |S| = 2**30 of both signs (the exact
                     path's first); L1 = 2**15 - 1 (the fast path's last). An "int32
                     edge" group: the int32 target runs it
"""

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.inputs import C, Case, _ctx, _u
from qgpt.conformance.policy_cases import _in, _spec
from qgpt.params import HEAD_DIM, N_HEAD
from qgpt.policy import parse_policy

BOUND_POLICY = "acts=q1.15,logits=q24.0"  # the scores' shift 2 * 15 + 1 - 0 = 31

# (q_h[t], k_h[0]) per head
_AT_BOUND = (  # L1 = 2**15 (the -1 head: 2**15 + 1), the exact path's
    ((32767, -1, 1, 0), (-32768, 32767, -32768, -32768)),  # S = -2**30 - 2**15 + 1
    ((-32768, 0, 0, 0), (-32768, 5, -7, 0)),  # S = 2**30
    ((8192, 8192, 8192, 8192), (-32768, -32768, -32768, -32768)),  # S = -2**30
    ((0, 0, 0, -32768), (0, 3, 0, -32768)),  # S = 2**30
)
_BELOW_BOUND = (  # L1 = 2**15 - 1, the fast path's last
    ((32766, -1, 0, 0), (-32768, 32767, 0, 0)),  # S = -2**30 + 2**16 - 2**15 - 1
    ((-32767, 0, 0, 0), (-32768, 0, 0, 0)),  # S = 2**30 - 2**15
    ((8192, 8192, 8192, 8191), (-32768, -32768, -32768, -32768)),  # S = -2**30 + 2**15
    ((0, 0, 0, -32767), (0, 0, 0, -32768)),  # S = 2**30 - 2**15
)


def _case(p, label, name, heads, rng):
    """attention_forward at T = 2: q's rows both hold the heads' q_h, k's row 0 their
    k_h (the bound's S at t = 0 and 1) and row 1 zeros (a second score at t = 1, so
    that the first one moves the probabilities)."""
    A = p.acts
    assert len(heads) == N_HEAD and all(len(w) == HEAD_DIM for h in heads for w in h)
    q = np.tile(np.array([h[0] for h in heads], np.int64).reshape(C), (2, 1))
    k = np.zeros((2, C), np.int64)
    k[0] = np.array([h[1] for h in heads], np.int64).reshape(C)
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
    return {label: [_case(p, label, "L1(q_h) = 2**15 (and 2**15 + 1 with a -1): |S| = "
                          "2**30 (and S = -2**30 - 2**15 + 1)", _AT_BOUND, rng),
                    _case(p, label, "L1(q_h) = 2**15 - 1: the fast path's last",
                          _BELOW_BOUND, rng)]}
