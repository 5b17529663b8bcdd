"""Golden cases of training outside the kernels: Adam's update, the policy's derived
numbers, the initial weights, and the format-free ones (isqrt, the PRNG, Adam's
per-step scalars)."""

import numpy as np

from qgpt import int_model, prng
from qgpt import int_ops as ops
from qgpt.conformance.inputs import (
    NO_FORMAT,
    Case,
    _ctx,
    _fmt_spec,
    _i,
    _normal,
    _uniform,
    master_for,
    widest_master,
)
from qgpt.params import N_PARAMS, SLOTS
from qgpt.policy import GRAD, GS_FRAC, PROB_FRAC, R_FRAC, guard, make_policy
from qgpt.qformat import FormatError


def _beta_powers_at(step):
    """(b1^t, b2^t) in Q30 for t = step: what IntAdam holds before step `step`."""
    p1 = p2 = 1 << 30
    for _ in range(step):
        p1, p2 = int_model.beta_powers(p1, p2)
    return p1, p2


def _adam_case(fmt, policy, name, rng, step, num_steps, i0, store, m, v, g, seed):
    """One adam_update case on parameters i0 .. i0+n-1, golden from IntAdam.step on the
    full flat buffers (zero state elsewhere: those parameters get delta = 0)."""
    n = len(m)
    opt = int_model.IntAdam(policy, seed)
    full = {}
    for key, a, fill in (("store", store, 0), ("m", m, 0), ("v", v, 0), ("g", g, 0)):
        full[key] = np.full(N_PARAMS, fill, dtype=np.int64)
        full[key][i0 : i0 + n] = a
    opt.m, opt.v = full["m"].copy(), full["v"].copy()
    opt.p1, opt.p2 = _beta_powers_at(step)
    p1_before, p2_before = opt.p1, opt.p2
    wstore = full["store"].copy()
    stalled = opt.step(wstore, full["g"], step, num_steps, _ctx(policy))
    alpha = int_model.alpha_at(policy, step, num_steps, opt.p1, opt.p2)
    wide = policy.master is not None
    sl = slice(i0, i0 + n)
    return Case("adam_update", fmt, name, _fmt_spec(policy),
                {"step": step, "num_steps": num_steps, "p1": p1_before, "p2": p2_before,
                 "seed": seed, "i0": i0},
                {"store": ("i" if wide else "h", store), "m": _i(m), "v": _i(v), "g": _i(g)},
                {"store": ("i" if wide else "h", wstore[sl]), "m": _i(opt.m[sl]),
                 "v": _i(opt.v[sl]), "alpha": alpha, "p1": opt.p1, "p2": opt.p2,
                 "stalled": stalled})


def _accepted_policy(fmt, rounding, master, lr=0.01):
    """make_policy's policy, or None where the host refuses it (a data format too
    coarse to take the update without master weights)."""
    try:
        return make_policy(fmt, rounding, master.name if master else "", lr)
    except FormatError:
        return None


def _cases_adam(fmt, policy_nearest, rng, seed):
    cases = []
    for rounding in ("nearest", "floor", "stochastic"):
        for master in dict.fromkeys((None, master_for(fmt), widest_master(fmt))):
            p = _accepted_policy(fmt, rounding, master)
            if p is None:
                continue
            s = p.weight_store
            P = p.pgrad_frac
            tag = f"{rounding}, {'master ' + master.name if master else 'no master'}"
            n = 512
            step = int(rng.integers(0, 1000))
            store = _normal(rng, n, s, 0.3)
            g = np.round(rng.standard_t(3, n) * 0.01 * 2.0**P).astype(np.int64)
            m = np.round(rng.standard_t(3, n) * 0.005 * 2.0**P).astype(np.int64)
            v = np.round(np.abs(rng.standard_t(3, n)) * 1e-4 * 2.0**28).astype(np.int64)
            g[:50] = 0  # absent tokens: zero gradients, m still moves the weights
            cases.append(_adam_case(fmt, p, f"random step {step}, {tag}", rng, step, 1000,
                                    1000, store, np.clip(m, -(2**30 - 1), 2**30 - 1),
                                    np.clip(v, 0, 2**30), g, seed))
            # edges: v = 0 with m != 0, huge m, zero and extreme g, stores at the limits
            lim = 2**30 - 1
            g_lo, g_hi = p.pgrads.lo, p.pgrads.hi  # a gradient's range: +-2**30 (section 3)
            g_e = np.array([0, 0, 0, 1, -1, g_hi, g_lo, g_hi, g_lo, 1 << P, -(1 << P), 12345,
                            0, 0, 0, 0])
            m_e = np.array([1, -1, lim, -lim, lim, lim, -lim, 0, 0, 1 << P, -(1 << P), 0,
                            1000, -1000, 3, 0])
            v_e = np.array([0, 0, 0, 1 << 30, 0, 1 << 30, 1 << 30, 0, 0, 1 << 28, 1 << 28, 0,
                            0, 0, 1 << 30, 0])
            st = np.array([0, s.hi, s.lo, s.hi, s.lo, s.hi, s.lo, 0, 0, 1, -1, s.lo, s.hi, s.lo,
                           0, 0])
            for last, step in (("first step", 0), ("last step", 999)):
                cases.append(_adam_case(fmt, p, f"edges, {last}, {tag}", rng, step, 1000, 7,
                                        st, m_e, v_e, g_e, seed))
    return cases


def _expected_policy(p):
    """The numbers firmware/policy.py derives, from the simulator's code and formulas."""
    F = p.data.frac_bits
    g, fm = ops.rmsnorm_shape(_ctx(p))
    d = {"pgrad_guard": p.pgrad_guard, "pgrad_frac": p.pgrad_frac, "m_frac": p.m_frac,
         "alpha_frac": p.alpha_frac, "update_shift": p.update_shift,
         "rms_guard": g, "rms_fm": fm, "rms_eps": ops.rmsnorm_eps(fm), "rms_back_shift": F + 4,
         "score_shift": F + 1, "attn_out_shift": PROB_FRAC, "dp_shift": F,
         "pv_shift": PROB_FRAC, "dqk_shift": F,
         "embed_back_shift": GRAD.frac_bits - p.pgrad_frac,
         "gs_shift": p.pgrad_frac - GS_FRAC, "r_shift": R_FRAC + GS_FRAC - p.m_frac,
         "data_lo": p.data.lo, "data_hi": p.data.hi, "logits_lo": p.logits.lo,
         "logits_hi": p.logits.hi, "store_lo": p.weight_store.lo, "store_hi": p.weight_store.hi}
    for n, ba, bb in GUARD_PROBES:
        d[f"guard_{n}_{ba}_{bb}"] = guard(n, ba, bb)
    return d


GUARD_PROBES = ((1, 16, 16), (4, 16, 16), (16, 16, 16), (27, 16, 16), (64, 16, 16),
                (16, 12, 12), (64, 8, 8), (2, 16, 15))


def _cases_policy_init(fmt, policy, rng, seed):
    cases = []
    for rounding, master, lr in (("nearest", None, 0.01), ("stochastic", master_for(fmt), 0.01),
                                 ("floor", None, 0.03)):
        p = _accepted_policy(fmt, rounding, master, lr)
        if p is None:
            continue
        cases.append(Case("policy", fmt, f"{rounding}, master {master.name if master else '-'},"
                          f" lr {lr}", _fmt_spec(p), {"guards": [list(t) for t in GUARD_PROBES]},
                          {}, _expected_policy(p)))
    # the initial weights of every tensor (section 4), into the data format and a master one
    for master in (None, master_for(fmt)):
        p = _accepted_policy(fmt, "nearest", master)
        if p is None:
            continue
        flat = int_model.init_params(seed, p.weight_store)
        for j, s in enumerate(SLOTS):
            cases.append(Case("init", fmt, f"{s.name}, store {p.weight_store.name}", _fmt_spec(p),
                              {"seed": seed, "tensor": j}, {},
                              {"w": ("i" if master else "h", flat[s.offset : s.offset + s.size])}))
    return cases


def _cases_no_format(rng, seed):
    """Format-free cases: isqrt, the PRNG, Adam's per-step scalars."""
    cases = []
    n = [0, 1, 2, 3, 4, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 1]
    for r in (1, 2, 3, 181, 32767, 32768, 46340):
        n += [r * r - 1, r * r, r * r + 1]
    n = np.array(n + list(range(5, 300)) + list(_uniform(rng, 2000, 0, 2**31 - 1)))
    cases.append(Case("isqrt", NO_FORMAT, "edges, squares and random", None, {},
                      {"n": _i(n)}, {"s": _i(ops.isqrt(n))}))
    x = [0, 1, 2**30 - 1, 2**30, 2**31 - 1, 12345] + list(_uniform(rng, 1000, 0, 2**31 - 1))
    x = np.array(x)
    cases.append(Case("hash30", NO_FORMAT, "edges and random", None, {}, {"x": _i(x)},
                      {"h": _i([prng.hash30(int(v)) for v in x])}))
    args = [[seed, s] for s in (1, 2, 3, 4)] + [[0, 1, 0], [42, 3, 999], [2**31 - 1, 2, 7],
                                                [2**40 + 5, 4, 3, 15], [7, 1, 8], [42, 2, 2**30]]
    cases.append(Case("key", NO_FORMAT, "seeds, streams, counters", None, {"args": args}, {},
                      {"k": _i([prng.key(*a) for a in args])}))
    for nn in (1, 2, 3, 5, 16, 27, 100, 1000):
        k = prng.key(seed, prng.STREAM_DATA, nn)
        idx = list(range(nn))
        cases.append(Case("permute", NO_FORMAT, f"n={nn}, all", None, {"n": nn, "k": k, "i": idx},
                          {}, {"perm": _i([prng.permute(i, nn, k) for i in idx])}))
    k = prng.key(seed, prng.STREAM_DATA, 0)
    idx = [int(i) for i in _uniform(rng, 200, 0, 32031)] + [0, 32031]
    cases.append(Case("permute", NO_FORMAT, "n=32032, sample", None, {"n": 32032, "k": k, "i": idx},
                      {}, {"perm": _i([prng.permute(i, 32032, k) for i in idx])}))
    for n_docs in (10, 32032):
        steps = list(range(40)) + [n_docs - 1, n_docs, 3 * n_docs + 5, 10**6 + 7]
        cases.append(Case("doc_index", NO_FORMAT, f"n_docs={n_docs}", None,
                          {"steps": steps, "n_docs": n_docs, "seed": seed}, {},
                          {"doc": _i([prng.doc_index(s, n_docs, seed) for s in steps])}))
    for lr, num_steps in ((0.01, 1000), (0.001, 300), (0.05, 7), (0.9, 3)):
        p = make_policy("q4.12", "nearest", "q4.24", lr)
        p1 = p2 = 1 << 30
        out = {"p1": [], "p2": [], "alpha": []}
        for step in range(num_steps):
            p1, p2 = int_model.beta_powers(p1, p2)
            out["p1"].append(p1)
            out["p2"].append(p2)
            out["alpha"].append(int_model.alpha_at(p, step, num_steps, p1, p2))
        cases.append(Case("adam_scalars", NO_FORMAT, f"lr {lr}, {num_steps} steps", _fmt_spec(p),
                          {"steps": list(range(num_steps)), "num_steps": num_steps}, {},
                          {k: _i(v) for k, v in out.items()}))
    return cases
