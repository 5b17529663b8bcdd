"""Op-level golden cases for adam_update's per-call thresholds and the store's saturation
(the round-6 mutation run of kernels and model: survivors no earlier case told apart).
The expected values come from the simulator (IntAdam, through policy_cases.adam_case).

    sh_m       the unsplit mul15 on a policy one step off its sh_m = 0 threshold
               (pgrads q11.21, adam_m q12.20 and q10.22: sh_m = 1 and -1, every other
               threshold met): m and g inside the unsplit bounds, where gm = rnd(g, 1)
               or g << 1 differs from g
    hv         adam_v q10.12 (hv = 2**21 - 1, the largest hv below the unsplit
               threshold 2**22 - 1) with m, g and v inside the unsplit bounds: v near
               hv and |gs| up to 2**11, so that v after the update passes hv and saturates
    alpha      alpha = 2**15 (lr = 1 - 2**-30, past step 1669 of a 2**30-step run, when
               b1^t and b2^t in Q30 stop falling) on a 32-bit master store with u = 0:
               |d| = 2**30 at a clamped ratio, and store - d = 2**31 at the store's hi =
               2**30, which only the test `d < 0 and store > hi + d` keeps within int32;
               in an "int32 edge" group
"""

import numpy as np

from qgpt.conformance.policy_cases import _spec, adam_case
from qgpt.policy import parse_policy

ADAM_SH_M_POLICIES = ("pgrads=q11.21,adam_m=q12.20",  # sh_m = 1, sh_s = 7
                      "pgrads=q11.21,adam_m=q10.22")  # sh_m = -1
ADAM_HV_POLICY = "pgrads=q7.13,adam_m=q7.13,adam_v=q10.12"  # sh_s = 7, hm = 2**19 - 1
ADAM_ALPHA_POLICY = "master=q4.28"  # S = [-2**30, 2**30], F_store = 28: u = 0 at Falpha 15
ADAM_ALPHA_LR = 1 - 2**-30  # lr_q30 = 2**30 - 1: Falpha = 15
ADAM_ALPHA_STEP = 2000  # p1, p2 stay at 3 and 49 from step 1669 on
ADAM_ALPHA_STEPS = 1 << 30  # lr_t = lr_q30 (N - step) // N: within 2**-16 of lr_q30


def adam_sh_m_cases(rng):
    """{label: [Case]}: adam_update (step 10) on m, g in [-2**17, 2**17] and v below
    2**21 (inside the unsplit bounds), odd g included, on ADAM_SH_M_POLICIES."""
    groups = {}
    for spec in ADAM_SH_M_POLICIES:
        p = parse_policy(spec)
        label = p.short_spec + ",adam sh_m"
        n = 64
        m = rng.integers(-(1 << 17), (1 << 17) + 1, n)
        g = rng.integers(-(1 << 17), (1 << 17) + 1, n) | 1
        v = rng.integers(0, 1 << 21, n)
        S = p.weight_store
        store = rng.integers(S.lo // 2, S.hi // 2, n)
        groups[label] = [adam_case(p, label, _spec(p), "m, g inside the unsplit bounds, "
                                   "sh_m one off 0", 10, store, m, v, g, 0)]
    return groups


def adam_hv_cases(rng):
    """{label: [Case]}: adam_update (step 10) on ADAM_HV_POLICY with v at and below hv,
    g at +-2**18 (|gs| = 2**11) and smaller, m small: v after the update at, beside and
    beyond hv (saturated)."""
    p = parse_policy(ADAM_HV_POLICY)
    label = p.short_spec + ",adam hv"
    hv = p.adam_v.hi
    assert hv == (1 << 21) - 1, p.spec
    vs = (hv, hv - 1, hv - 20000, hv - 21000, hv - 40000, 1 << 20)
    gs = (-(1 << 18), (1 << 18) - 1, -(1 << 17), 3 << 16, 0)
    ms = (0, 1000, -1000)
    grid = np.array([(m, g, v) for m in ms for g in gs for v in vs], np.int64)
    S = p.weight_store
    store = rng.integers(S.lo // 2, S.hi // 2, len(grid))
    return {label: [adam_case(p, label, _spec(p), "v near hv = 2**21 - 1, |gs| up to 2**11",
                              10, store, grid[:, 0], grid[:, 2], grid[:, 1], 0)]}


def adam_alpha_max_cases(rng):
    """{label: [Case]}: adam_update with alpha = 2**15 and u = 0 (ADAM_ALPHA_POLICY at
    ADAM_ALPHA_LR, step ADAM_ALPHA_STEP of ADAM_ALPHA_STEPS): m at +-2**29 (the ratio
    clamped to +-4: |d| = 2**30), the store at its limits and beside them, in an int32
    edge group (the unix port computes store - d in 64 bits)."""
    p = parse_policy(ADAM_ALPHA_POLICY, lr=ADAM_ALPHA_LR)
    assert p.update_shift == 0, p.spec
    label = p.short_spec + ",adam alpha 2**15 int32 edge"
    S = p.weight_store
    stores = (S.hi, S.hi - 1, S.lo, S.lo + 1, 0, S.hi >> 1)
    ms = (-(1 << 29), 1 << 29, 0)
    grid = np.array([(s, m) for s in stores for m in ms], np.int64)
    g = rng.integers(-(1 << 10), 1 << 10, len(grid))
    case = adam_case(p, label, _spec(p), "alpha 2**15, u 0, the store at its limits",
                     ADAM_ALPHA_STEP, grid[:, 0], grid[:, 1], np.zeros(len(grid), np.int64),
                     g, 0, num_steps=ADAM_ALPHA_STEPS)
    assert case.expected["alpha"] == 1 << 15, case.expected["alpha"]
    return {label: [case]}


def adam_model_groups(seed=0):
    """{label: [Case]}: every group of this module."""
    rng = np.random.default_rng([seed, 6])
    groups = adam_sh_m_cases(rng)
    groups.update(adam_hv_cases(rng))
    groups.update(adam_alpha_max_cases(rng))
    return groups
