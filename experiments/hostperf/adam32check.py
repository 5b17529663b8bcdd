"""IntAdam's int32 path (_step_int32) against its general int64 path, step by step on
random gradients from small to gs's edge and the top of pgrads (m and v at their
limits, loaded states out of range): m, v, the store, the stalled count and the
saturation counts must be equal. usage: python experiments/hostperf/adam32check.py"""

import sys

import numpy as np

from qgpt import int_ops as ops
from qgpt.int_adam import GS_ABS_MAX, IntAdam
from qgpt.params import N_PARAMS
from qgpt.policy import make_policy, parse_policy

POLICIES = [make_policy("q4.12", r) for r in ("nearest", "stochastic", "floor", "pseudo",
                                                   "kahan")]
POLICIES += [make_policy("q8.8", "stochastic"), make_policy("q2.14", "nearest", lr=0.5),
             make_policy("q4.12", "nearest", "q4.20"), parse_policy("adam_v=q2.14", "q6.10"),
             make_policy("q12.4", "stochastic", lr=0.9)]


def gradients(rng, p, steps):
    """From small to the largest g whose gs does not clip (the int32 path's edge); every
    fifth step one at the top of pgrads (the general path's turn, then back)."""
    s = p.pgrads.frac_bits - p.sqrt_frac
    edge = min(((GS_ABS_MAX + 1) << s) - (1 << s) // 2 - 1, p.pgrads.hi)  # rnd(g, s) <= max
    for k in range(steps):
        if k % 5 == 4:
            top = p.pgrads.abs_limit
            g = rng.integers(-top, top + 1, N_PARAMS)
        else:
            scale = [1 << 4, 1 << 10, edge >> 3, edge][k % 5]
            g = rng.integers(-scale, scale + 1, N_PARAMS)
            g[:2] = [edge, -edge]
        yield np.clip(g, p.pgrads.lo, p.pgrads.hi)


def run(p, seed, steps=40):
    rng = np.random.default_rng(seed)
    fast, slow = IntAdam(p, 3), IntAdam(p, 3)
    slow._int32_policy = False
    store = rng.integers(p.weight_store.lo, p.weight_store.hi + 1, N_PARAMS)
    stores = [store.copy(), store.copy()]
    ctxs = [ops.Ctx(p), ops.Ctx(p)]
    if seed % 2:  # a loaded state at and beyond its limits
        m = rng.integers(-p.m_limit, p.m_limit + 1, N_PARAMS)
        v = rng.integers(0, p.v_wide.hi + 1, N_PARAMS)
        m[:2], v[:2] = [p.m_limit, -p.m_limit], [p.v_wide.hi, 0]
        if seed % 4 == 3:
            m[2] = p.m_limit + 5  # out of range: the int32 path leaves it to the general one
        for opt in (fast, slow):
            opt.m, opt.v = m.copy(), v.copy()
    for step, g in enumerate(gradients(rng, p, steps)):
        got = [opt.step(s, g.copy(), step, 1000, c)
               for opt, s, c in zip((fast, slow), stores, ctxs, strict=True)]
        for name, a, b in (("stalled", *got), ("m", fast.m, slow.m), ("v", fast.v, slow.v),
                           ("store", *stores)):
            if not np.array_equal(a, b):
                i = int(np.argmax(np.asarray(a) != np.asarray(b))) if np.ndim(a) else 0
                return (f"{p.short_spec} {p.rounding} seed {seed} step {step}: {name}[{i}] "
                        f"int32 {np.ravel(a)[i]} general {np.ravel(b)[i]}")
        if ctxs[0].saturations != ctxs[1].saturations:
            return f"{p.short_spec} seed {seed} step {step}: saturations differ"
    return None


def main():
    bad = [e for p in POLICIES for seed in range(4) if (e := run(p, seed))]
    for e in bad:
        print(e)
    print(f"{len(POLICIES) * 4 - len(bad)} of {len(POLICIES) * 4} runs equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
