"""Op-level golden cases of a precision policy (`qgpt conformance --policy SPEC`).

The kernel cases of kernel_cases.py are built on one data format; a policy gives each
tensor class its own (docs/arithmetic.md 3.1), and the device keeps each class in its
container (3.3: 8-bit 'b', 16-bit 'h', else 32-bit 'i'). Here every kernel input and
output takes its class's format and container: weights (wte, wpe, w), acts (x, y, q, k,
v, out), grads (dx, dy, dout, dq, dk, dv, dlogits), logits (int32), parameter gradients
(int32 buffers saturated to pgrads) and Adam's m, v and weight store. The device builds
its Policy from the same keys as a run's config (format, rounding, master, lr_q30 and
`policy`: qgpt.policy.device_config). Cases: random at realistic scale, the full range,
the limits and ties (mostly zeros and powers of two) of each class. Adam runs where the
op driver has the state it needs (plain adam_m and adam_v; kahan from zero
compensations, like the simulator's); block-scaled state is covered by the steps level.
policy_edge_cases.py adds the policies that reach every branch of the kernels.
"""


import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.device_run import policy_case
from qgpt.conformance.inputs import T_MAX, C, Case, _ctx, _i, _normal, _tokens, _u, _uniform
from qgpt.conformance.optimizer_cases import _beta_powers_at
from qgpt.params import MLP_HIDDEN, N_EMBD, N_PARAMS, VOCAB
from qgpt.policy import BlockFormat, container_bytes, device_config

TYPECODE = {1: "b", 2: "h", 4: "i"}  # container bytes -> the request's typecode


def _spec(policy):
    """The device's Policy spec: the op driver's keys plus the config's `policy`."""
    m = policy.master
    return {"fmt": policy.weights.name, "rounding": policy.rounding,
            "master": [m.int_bits, m.frac_bits] if m else None, "lr_q30": policy.lr_q30,
            "policy": device_config(policy)["policy"]}


def _in(fmt, a):
    """An array in fmt's container."""
    return (TYPECODE[container_bytes(fmt)], np.array(a, dtype=np.int64))


def _heavy(rng, shape, fmt, std):
    """Heavy-tailed values (Student t, 3 dof) in fmt, like activation gradients."""
    x = np.round(rng.standard_t(3, shape) * std * 2.0**fmt.frac_bits)
    return np.clip(x, fmt.lo, fmt.hi).astype(np.int64)


def _three(rng, shape, fmt, std):
    """(name, values) of a class: random, full range, alternating limits, and ties
    (few small powers of two, mostly zeros: sums that land half way and exact limits)."""
    lim = np.where(np.arange(int(np.prod(shape))) % 3 == 0, fmt.lo, fmt.hi).reshape(shape)
    return (("random", _normal(rng, shape, fmt, std)),
            ("full range", _uniform(rng, shape, fmt.lo, fmt.hi)), ("limits", lim),
            ("ties", _tie_values(rng, shape, fmt)))


def _partner(name, rng, shape, fmt, std, random):
    """The second input of a case named by _three: random for "random", ties for
    "ties", else the full range."""
    if name == "random":
        return random(rng, shape, fmt, std)
    if name == "ties":
        return _tie_values(rng, shape, fmt)
    return _uniform(rng, shape, fmt.lo, fmt.hi)


def _tie_values(rng, shape, fmt):
    """Mostly zeros, else +-2**k (k up to F) or a limit: products and their sums are
    few powers of two, so rounding them lands exactly half way (or on a limit) often."""
    powers = [1 << k for k in range(0, fmt.frac_bits + 1)] + [3, fmt.hi]
    vals = np.concatenate([[0] * len(powers) * 2, powers, [-x for x in powers], [fmt.lo]])
    return np.clip(rng.choice(vals, size=shape), fmt.lo, fmt.hi).astype(np.int64)


def policy_ops_cases(spec, seed=0, lr=None):
    """Every op-level case of the policy SPEC (a PolicyError for a bad one); lr: another
    learning rate than qgpt train's default (Adam's shifts)."""
    if lr is None:
        case = policy_case(spec)
        p, label = case.resolved, case.label
    else:
        from qgpt.policy import parse_policy

        p = parse_policy(spec, lr=lr)
        label = p.short_spec + (f",rounding={p.rounding}" if p.rounding != "nearest" else "") \
            + (f",lr={lr}" if lr != 0.01 else "")
    rng = np.random.default_rng([seed, sum(map(ord, p.spec))])
    W, A, G, L = p.weights, p.acts, p.grads, p.logits
    s, out = _spec(p), []

    def add(op, name, params, inputs, expected):
        out.append(Case(op, label, name, s, params, inputs, expected))

    for name, wte in _three(rng, (VOCAB, C), W, 0.5):  # embedding
        wpe, tokens = _partner(name, rng, (T_MAX, C), W, 0.3, _normal), _tokens(rng, 16)
        add("embedding_forward", name, {"T": 16}, {"wte": _in(W, wte), "wpe": _in(W, wpe),
                                                   "tokens": ("B", tokens)},
            {"x": _in(A, ops.embedding_forward(_ctx(p), wte, wpe, tokens))})
    for name, dx in _three(rng, (16, C), G, 0.05):
        tokens = _tokens(rng, 16)
        dwte, dwpe = np.zeros((VOCAB, C), np.int64), np.zeros((T_MAX, C), np.int64)
        ins = {"dx": _in(G, dx), "tokens": ("B", tokens), "dwte": _i(dwte), "dwpe": _i(dwpe)}
        ops.embedding_backward(_ctx(p), dx, tokens, dwte, dwpe)
        add("embedding_backward", name, {"T": 16}, ins, {"dwte": _i(dwte), "dwpe": _i(dwpe)})
    for name, x in _three(rng, (16, C), A, 0.7):  # rmsnorm
        y, (m, sh) = ops.rmsnorm_forward(_ctx(p), x)
        rs = np.stack([m, sh], axis=1)
        add("rmsnorm_forward", name, {"T": 16}, {"x": _in(A, x)}, {"y": _in(A, y), "rs": _i(rs)})
        dy = _partner(name, rng, x.shape, G, 0.1, _heavy)
        add("rmsnorm_backward", name, {"T": 16}, {"dy": _in(G, dy), "y": _in(A, y), "rs": _i(rs)},
            {"dx": _in(G, ops.rmsnorm_backward(_ctx(p), dy, y, (m, sh)))})
    for n_in, n_out, wide in ((N_EMBD, N_EMBD, False), (N_EMBD, MLP_HIDDEN, False),
                              (MLP_HIDDEN, N_EMBD, False), (N_EMBD, VOCAB, True)):
        dims = f"{n_in}->{n_out}"
        for name, w in _three(rng, (n_out, n_in), W, 0.3):
            x = _partner(name, rng, (16, n_in), A, 1.0, _normal)
            y = ops.linear_forward(_ctx(p), x, w, L if wide else A, "y")
            add("linear_forward", f"{dims} {name}", {"T": 16, "n_in": n_in, "n_out": n_out,
                                                     "wide": int(wide)},
                {"x": _in(A, x), "w": _in(W, w)}, {"y": ("i", y) if wide else _in(A, y)})
            dy = _partner(name, rng, (16, n_out), G, 0.05, _heavy)
            dw = np.zeros((n_out, n_in), dtype=np.int64)
            dx = ops.linear_backward(_ctx(p), dy, x, w, dw, "w")
            add("linear_backward", f"{dims} {name}", {"T": 16, "n_in": n_in, "n_out": n_out},
                {"dy": _in(G, dy), "x": _in(A, x), "w": _in(W, w), "dw": _i(np.zeros_like(dw))},
                {"dx": _in(G, dx), "dw": _i(dw)})
    for which, f in (("D", A), ("G", G)):  # add, relu
        for name, a in _three(rng, (16, C), f, 0.5):
            b = _partner(name, rng, (16, C), f, 0.5, _normal)
            add("add_forward", f"{which} {name}", {"fmt": which}, {"a": _in(f, a), "b": _in(f, b)},
                {"y": _in(f, ops.add_forward(_ctx(p), a, b, f, "y"))})
    x = np.concatenate([_normal(rng, 200, A, 1.0), [0, 0, A.lo, A.hi, 1, -1]])
    dy = _uniform(rng, x.shape, G.lo, G.hi)
    add("relu_forward", "random and limits", {}, {"x": _in(A, x)},
        {"y": _in(A, ops.relu_forward(x))})
    add("relu_backward", "random and limits", {}, {"dy": _in(G, dy), "x": _in(A, x)},
        {"dx": _in(G, ops.relu_backward(dy, x))})
    for name, q in _three(rng, (16, C), A, 1.0):  # attention
        k, v = _partner(name, rng, (16, C), A, 1.0, _normal), _uniform(rng, (16, C), A.lo, A.hi)
        if name == "ties":
            v = _tie_values(rng, (16, C), A)
        dout = _partner(name, rng, (16, C), G, 0.1, _heavy)
        o, probs = ops.attention_forward(_ctx(p), q, k, v)
        dq, dk, dv = ops.attention_backward(_ctx(p), dout, q, k, v, probs)
        add("attention_forward", name, {"T": 16}, {"q": _in(A, q), "k": _in(A, k),
                                                   "v": _in(A, v)},
            {"out": _in(A, o), "probs": _u(probs)})
        add("attention_backward", name, {"T": 16},
            {"dout": _in(G, dout), "q": _in(A, q), "k": _in(A, k), "v": _in(A, v),
             "probs": _u(probs)}, {"dq": _in(G, dq), "dk": _in(G, dk), "dv": _in(G, dv)})
    for name, logits in _three(rng, (16, VOCAB), L, 3.0):  # cross-entropy and the loss
        targets = _tokens(rng, 16)
        probs = ops.cross_entropy_forward(_ctx(p), logits, targets)
        z = logits - logits.max(axis=1, keepdims=True)
        add("cross_entropy_forward", name, {"T": 16}, {"logits": _i(logits)},
            {"probs": _i(probs), "S": _i(ops.exp_neg(z, L.frac_bits).sum(axis=1))})
        add("cross_entropy_backward", name, {"T": 16},
            {"probs": _i(probs), "targets": ("B", targets)},
            {"dlogits": _in(G, ops.cross_entropy_backward(_ctx(p), probs, targets))})
        add("loss_q16", name, {"T": 16}, {"logits": _i(logits), "targets": ("B", targets)},
            {"loss_q16": int(ops.loss_q16(logits, targets, L.frac_bits))})
    plain = not any(isinstance(f, BlockFormat) for f in (p.adam_m, p.adam_v))
    if plain:  # kahan: the op driver starts from zero compensations, as IntAdam does
        out += _adam_cases(p, label, s, rng, seed)
    return out


def _adam_cases(p, label, spec, rng, seed, n=512, i0=1000):
    """adam_update on parameters i0 .. i0+n-1: golden from IntAdam.step on the full flat
    buffers (zero state elsewhere), at a random step and the last, each class at its
    scale and at its limits."""
    cases = []
    S, P, M, V = p.weight_store, p.pgrads, p.adam_m, p.adam_v
    for name, step in (("random", int(rng.integers(0, 999))), ("limits, last step", 999)):
        if name == "random":
            store = _normal(rng, n, S, 0.3)
            g = _heavy(rng, n, P, 0.01)
            m = _heavy(rng, n, M, 0.005)
            v = np.clip(np.round(np.abs(rng.standard_t(3, n)) * 1e-4 * 2.0**V.frac_bits),
                        0, V.hi).astype(np.int64)
        else:
            store = _uniform(rng, n, S.lo, S.hi)
            g = np.where(np.arange(n) % 2, P.lo, P.hi)
            m = np.where(np.arange(n) % 3, -p.m_limit, p.m_limit)
            v = np.where(np.arange(n) % 4, 0, V.hi)
        g[:50] = 0  # absent tokens: zero gradients, m still moves the weights
        cases.append(adam_case(p, label, spec, f"{name}, step {step}", step, store, m, v, g,
                               seed, i0))
    return cases


def adam_case(p, label, spec, name, step, store, m, v, g, seed, i0=1000, num_steps=1000):
    """One adam_update case of policy p (plain adam_m and adam_v) on parameters i0 ..
    i0+n-1: golden from IntAdam.step on the full flat buffers (zero state elsewhere)."""
    from qgpt import int_model

    n = len(m)
    opt = int_model.IntAdam(p, seed)
    full = {}
    for key, a in (("store", store), ("m", m), ("v", v), ("g", g)):
        full[key] = np.zeros(N_PARAMS, dtype=np.int64)
        full[key][i0 : i0 + n] = a
    opt.m, opt.v = full["m"].copy(), full["v"].copy()
    opt.p1, opt.p2 = _beta_powers_at(step)
    before = opt.p1, opt.p2
    wstore = full["store"].copy()
    stalled = opt.step(wstore, full["g"], step, num_steps, _ctx(p))
    alpha = int_model.alpha_at(p, step, num_steps, opt.p1, opt.p2)
    part = slice(i0, i0 + n)
    S, M, V = p.weight_store, p.adam_m, p.adam_v
    return Case("adam_update", label, name, spec,
                {"step": step, "num_steps": num_steps, "p1": before[0], "p2": before[1],
                 "seed": seed, "i0": i0},
                {"store": _in(S, store), "m": _in(M, m), "v": _in(V, v), "g": _i(g)},
                {"store": _in(S, wstore[part]), "m": _in(M, opt.m[part]),
                 "v": _in(V, opt.v[part]), "alpha": alpha, "p1": opt.p1, "p2": opt.p2,
                 "stalled": stalled})
