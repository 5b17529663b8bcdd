"""Golden cases of the model's kernels (docs/arithmetic.md): exp_neg and softmax,
rsqrt, embedding, rmsnorm, linear, add and relu, attention, cross-entropy, forward
and backward, random and at the edges of the format."""

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.inputs import (
    T_MAX,
    C,
    Case,
    _b,
    _ctx,
    _fmt_spec,
    _grad,
    _h,
    _i,
    _normal,
    _ties,
    _tokens,
    _u,
    _uniform,
)
from qgpt.params import MLP_HIDDEN, N_EMBD, VOCAB
from qgpt.policy import GRAD


def _cases_exp_softmax(fmt, policy, rng):
    F, L = policy.data.frac_bits, policy.logits
    cases = []
    cut = 16 << F  # exp_neg is 0 at and below -16
    z = [0, -1, -2, -3, 1 - cut, -cut, -cut - 1, -cut - 2**F, L.lo - L.hi]
    # where w = z12 * log2(e) crosses whole powers of two, and z12 rounding ties
    for k in range(24):
        c = -round(k * np.log(2) * 2**F)
        z += [c - 1, c, c + 1]
    if F > 12:
        z += [-(j << (F - 12)) - (1 << (F - 13)) for j in range(8)]
    z += list(_uniform(rng, 300, -(17 << F), 0)) + list(_uniform(rng, 100, -(1 << F), 0))
    z = np.array(z)
    z = np.clip(z, L.lo - L.hi, 0)  # the domain: z <= 0
    cases.append(Case("exp_neg", fmt, "edges and random", None, {"frac": F},
                      {"z": _i(z)}, {"e": _i(ops.exp_neg(z, F))}))

    def softmax_case(name, rows):
        rows = np.asarray(rows, dtype=np.int64)
        r, n = rows.shape
        p = ops.softmax(rows, F)
        s = ops.exp_neg(rows - rows.max(axis=1, keepdims=True), F).sum(axis=1)
        return Case("softmax", fmt, name, None, {"rows": r, "n": n, "frac": F},
                    {"z": _i(rows)}, {"p": _i(p), "S": _i(s)})

    for n in (1, 2, 16, 27):
        cases.append(softmax_case(f"random n={n}", _normal(rng, (8, n), L, 2.0)))
    cases.append(softmax_case("full range n=27", _uniform(rng, (8, 27), L.lo, L.hi)))
    cases.append(softmax_case("all equal", np.repeat(_uniform(rng, (6, 1), L.lo, L.hi), 16, 1)))
    one_hot = np.full((4, 27), L.lo)
    one_hot[np.arange(4), [0, 5, 13, 26]] = L.hi
    cases.append(softmax_case("one-hot", one_hot))
    ties = _normal(rng, (6, 16), L, 1.0)
    ties[:, 3] = ties[:, 7] = ties.max(axis=1) + 1  # two equal maxima
    cases.append(softmax_case("two maxima", ties))
    edge = np.zeros((3, 4), dtype=np.int64)
    edge[:, 1], edge[:, 2], edge[:, 3] = -cut, 1 - cut, -cut - 1  # around the exp cut-off
    edge[1] += L.hi - 1
    edge[2] += L.lo + cut + 1
    cases.append(softmax_case("exp cut-off", edge))
    return cases


def _cases_rsqrt(fmt, policy, rng):
    g, fm = ops.rmsnorm_shape(_ctx(policy))
    ms = [1, 2, 3, 4, 5, ops.rmsnorm_eps(fm), 2**31 - 1]
    for k in range(31):
        ms += [(1 << k) - 1, 1 << k, (1 << k) + 1]
    ms += list(np.exp2(rng.uniform(0, 31, 300)).astype(np.int64))
    ms = np.clip(np.array(ms, dtype=np.int64), 1, 2**31 - 1)
    m, sh = ops.rsqrt(ms, fm)
    return [Case("rsqrt", fmt, f"fm={fm}", None, {"fm": fm}, {"ms": _i(ms)},
                 {"rs": _i(np.stack([m, sh], axis=1))})]


def _cases_embedding(fmt, policy, rng):
    D, cases = policy.data, []
    op = "embedding_forward"
    for name, T, wte, wpe in (
        ("random T=16", 16, _normal(rng, (VOCAB, C), D, 0.5), _normal(rng, (T_MAX, C), D, 0.3)),
        ("random T=1", 1, _normal(rng, (VOCAB, C), D, 0.5), _normal(rng, (T_MAX, C), D, 0.3)),
        ("full range", 16, _uniform(rng, (VOCAB, C), D.lo, D.hi),
         _uniform(rng, (T_MAX, C), D.lo, D.hi)),
        ("limits", 16, np.tile([D.lo, D.hi, D.hi, 0], (VOCAB, 4)),
         np.tile([D.lo, D.hi, 1, -1], (T_MAX, 4))),
    ):
        tokens = _tokens(rng, T)
        x = ops.embedding_forward(_ctx(policy), wte, wpe, tokens)
        cases.append(Case(op, fmt, name, _fmt_spec(policy), {"T": T},
                          {"wte": _h(wte), "wpe": _h(wpe), "tokens": _b(tokens)}, {"x": _h(x)}))
    op = "embedding_backward"
    for name, T, dx, tokens in (
        ("random T=16", 16, _grad(rng, (16, C)), _tokens(rng, 16)),
        ("random T=1", 1, _grad(rng, (1, C)), _tokens(rng, 1)),
        ("limits, one token", 16, np.tile([GRAD.lo, GRAD.hi], (16, C // 2)), np.full(16, 26)),
    ):
        dwte = np.zeros((VOCAB, C), dtype=np.int64)  # each step starts them at 0 (section 7)
        dwpe = np.zeros((T_MAX, C), dtype=np.int64)
        ins = {"dx": _h(dx), "tokens": _b(tokens), "dwte": _i(dwte), "dwpe": _i(dwpe)}
        ops.embedding_backward(_ctx(policy), dx, tokens, dwte, dwpe)
        cases.append(Case(op, fmt, name, _fmt_spec(policy), {"T": T}, ins,
                          {"dwte": _i(dwte), "dwpe": _i(dwpe)}))
    return cases


def _rmsnorm_inputs(rng, D):
    one_hot = np.zeros((16, C), dtype=np.int64)
    one_hot[np.arange(16), np.arange(16)] = _uniform(rng, 16, D.lo, D.hi)
    return (
        ("random T=16", _normal(rng, (16, C), D, 0.7)),
        ("random T=1", _normal(rng, (1, C), D, 0.7)),
        ("tiny", _uniform(rng, (16, C), -2, 2)),
        ("zeros", np.zeros((4, C), dtype=np.int64)),
        ("limits", np.array([[D.lo] * C, [D.hi] * C, [D.lo, D.hi] * (C // 2), [D.hi] + [0] * 15])),
        ("full range", _uniform(rng, (16, C), D.lo, D.hi)),
        ("one-hot rows", one_hot),
    )


def _cases_rmsnorm(fmt, policy, rng):
    D, cases = policy.data, []
    for name, x in _rmsnorm_inputs(rng, D):
        T = len(x)
        y, (m, sh) = ops.rmsnorm_forward(_ctx(policy), x)
        cases.append(Case("rmsnorm_forward", fmt, name, _fmt_spec(policy), {"T": T},
                          {"x": _h(x)}, {"y": _h(y), "rs": _i(np.stack([m, sh], axis=1))}))
        for dname, dy in (("dy random", _grad(rng, x.shape, 0.1)),
                          ("dy limits", np.where(rng.random(x.shape) < 0.5, GRAD.lo, GRAD.hi))):
            dx = ops.rmsnorm_backward(_ctx(policy), dy, y, (m, sh))
            cases.append(Case("rmsnorm_backward", fmt, f"{name}, {dname}", _fmt_spec(policy),
                              {"T": T},
                              {"dy": _h(dy), "y": _h(y), "rs": _i(np.stack([m, sh], axis=1))},
                              {"dx": _h(dx)}))
    return cases


LINEAR_SHAPES = (  # (n_in, n_out, into the logits): the model's four kinds of layer
    (N_EMBD, N_EMBD, False),  # q, k, v, attention projection
    (N_EMBD, MLP_HIDDEN, False),  # mlp_fc1
    (MLP_HIDDEN, N_EMBD, False),  # mlp_fc2
    (N_EMBD, VOCAB, True),  # lm_head
)


def _cases_linear(fmt, policy, rng):
    D, L, cases = policy.data, policy.logits, []
    for n_in, n_out, wide in LINEAR_SHAPES:
        dims = f"{n_in}->{n_out}"
        out_fmt = L if wide else D
        forward = (
            ("random T=16", _normal(rng, (16, n_in), D, 1.0), _normal(rng, (n_out, n_in), D, 0.3)),
            ("random T=1", _normal(rng, (1, n_in), D, 1.0), _normal(rng, (n_out, n_in), D, 0.3)),
            ("full range", _uniform(rng, (16, n_in), D.lo, D.hi),
             _uniform(rng, (n_out, n_in), D.lo, D.hi)),
            ("limits", np.full((2, n_in), D.lo),  # rows of w alternate lo, hi: +-max sums
             np.repeat(np.where(np.arange(n_out) % 2 == 0, D.lo, D.hi)[:, None], n_in, 1)),
            ("ties", _ties(rng, (16, n_in)), _ties(rng, (n_out, n_in))),
        )
        for name, x, w in forward:
            T = len(x)
            y = ops.linear_forward(_ctx(policy), x, w, out_fmt, "y")
            cases.append(Case("linear_forward", fmt, f"{dims} {name}", _fmt_spec(policy),
                              {"T": T, "n_in": n_in, "n_out": n_out, "wide": int(wide)},
                              {"x": _h(x), "w": _h(w)}, {"y": ("i" if wide else "h", y)}))
        backward = (
            ("random T=16", _grad(rng, (16, n_out)), _normal(rng, (16, n_in), D, 1.0),
             _normal(rng, (n_out, n_in), D, 0.3)),
            ("random T=1", _grad(rng, (1, n_out)), _normal(rng, (1, n_in), D, 1.0),
             _normal(rng, (n_out, n_in), D, 0.3)),
            ("full range", _uniform(rng, (16, n_out), GRAD.lo, GRAD.hi),
             _uniform(rng, (16, n_in), D.lo, D.hi), _uniform(rng, (n_out, n_in), D.lo, D.hi)),
            ("limits", np.full((16, n_out), GRAD.lo), np.full((16, n_in), D.lo),
             np.full((n_out, n_in), D.lo)),
            ("ties", _ties(rng, (16, n_out)), _ties(rng, (16, n_in)), _ties(rng, (n_out, n_in))),
        )
        for name, dy, x, w in backward:
            T = len(x)
            dw0 = _uniform(rng, (n_out, n_in), -(1 << 20), 1 << 20)
            if name == "limits":
                dw0[:] = 0  # 16 products of 2**26 each already reach 2**30
            dw = dw0.copy()
            dx = ops.linear_backward(_ctx(policy), dy, x, w, dw, "w")
            cases.append(Case("linear_backward", fmt, f"{dims} {name}", _fmt_spec(policy),
                              {"T": T, "n_in": n_in, "n_out": n_out},
                              {"dy": _h(dy), "x": _h(x), "w": _h(w), "dw": _i(dw0)},
                              {"dx": _h(dx), "dw": _i(dw)}))
            if name == "random T=16":  # rows o0..o1-1 of dW alone, as the device trains
                o0, o1 = n_out // 4, n_out // 4 + max(1, n_out // 3)
                cases.append(Case("linear_backward", fmt, f"{dims} rows {o0}..{o1 - 1}, no dx",
                                  _fmt_spec(policy), {"T": T, "n_in": n_in, "n_out": n_out,
                                                      "o0": o0, "o1": o1, "with_dx": 0},
                                  {"dy": _h(dy), "x": _h(x), "w": _h(w), "dw": _i(dw0[o0:o1]),
                                   "dx": _h(np.full(dx.shape, 7))},
                                  {"dx": _h(np.full(dx.shape, 7)), "dw": _i(dw[o0:o1])}))
        # dW added to a dw at P's limits (rows alternate hi, lo): sat(dw + dW, P) clips
        # where dW has dw's sign (arithmetic.md, linear_backward)
        P = policy.pgrads
        dy, x = _uniform(rng, (16, n_out), GRAD.lo, GRAD.hi), _uniform(rng, (16, n_in), D.lo, D.hi)
        w = _normal(rng, (n_out, n_in), D, 0.3)
        dw0 = np.repeat(np.where(np.arange(n_out) % 2 == 0, P.hi, P.lo)[:, None], n_in, 1)
        dw = dw0.copy()
        dx = ops.linear_backward(_ctx(policy), dy, x, w, dw, "w")
        cases.append(Case("linear_backward", fmt, f"{dims} dw at P's limits", _fmt_spec(policy),
                          {"T": 16, "n_in": n_in, "n_out": n_out},
                          {"dy": _h(dy), "x": _h(x), "w": _h(w), "dw": _i(dw0)},
                          {"dx": _h(dx), "dw": _i(dw)}))
    return cases


def _cases_elementwise(fmt, policy, rng):
    D, cases = policy.data, []
    for which, f in (("D", D), ("G", GRAD)):
        for name, a, b in (
            ("random", _normal(rng, (16, C), f, 0.5), _normal(rng, (16, C), f, 0.5)),
            ("full range", _uniform(rng, (16, C), f.lo, f.hi), _uniform(rng, (16, C), f.lo, f.hi)),
            ("limits", np.tile([f.hi, f.lo, f.hi, f.lo, 0, f.hi], 4),
             np.tile([f.hi, f.lo, f.lo, 1, 0, -1], 4)),
        ):
            y = ops.add_forward(_ctx(policy), a, b, f, "y")
            cases.append(Case("add_forward", fmt, f"{which} {name}", _fmt_spec(policy),
                              {"fmt": which}, {"a": _h(a), "b": _h(b)}, {"y": _h(y)}))
    x = np.concatenate([_normal(rng, 200, D, 1.0), [0, 0, D.lo, D.hi, 1, -1]])
    dy = _uniform(rng, x.shape, GRAD.lo, GRAD.hi)
    cases.append(Case("relu_forward", fmt, "random and limits", _fmt_spec(policy), {},
                      {"x": _h(x)}, {"y": _h(ops.relu_forward(x))}))
    cases.append(Case("relu_backward", fmt, "random and limits", _fmt_spec(policy), {},
                      {"dy": _h(dy), "x": _h(x)}, {"dx": _h(ops.relu_backward(dy, x))}))
    return cases


def _attention_golden(policy, q, k, v, dout):
    out, probs = ops.attention_forward(_ctx(policy), q, k, v)
    dq, dk, dv = ops.attention_backward(_ctx(policy), dout, q, k, v, probs)
    return out, probs, dq, dk, dv


def _cases_attention(fmt, policy, rng):
    D, cases = policy.data, []
    one_hot_k = np.full((16, C), D.lo)
    one_hot_k[5] = D.hi
    for name, q, k, v in (
        ("random T=16", _normal(rng, (16, C), D, 1.0), _normal(rng, (16, C), D, 1.0),
         _normal(rng, (16, C), D, 1.0)),
        ("random T=1", _normal(rng, (1, C), D, 1.0), _normal(rng, (1, C), D, 1.0),
         _normal(rng, (1, C), D, 1.0)),
        ("random T=7", _normal(rng, (7, C), D, 1.0), _normal(rng, (7, C), D, 1.0),
         _normal(rng, (7, C), D, 1.0)),
        ("full range", _uniform(rng, (16, C), D.lo, D.hi), _uniform(rng, (16, C), D.lo, D.hi),
         _uniform(rng, (16, C), D.lo, D.hi)),
        ("all equal scores", np.zeros((16, C), dtype=np.int64), _normal(rng, (16, C), D, 1.0),
         _normal(rng, (16, C), D, 1.0)),
        ("one-hot rows", np.full((16, C), D.hi), one_hot_k, _normal(rng, (16, C), D, 1.0)),
        ("limits", np.full((16, C), D.lo), np.full((16, C), D.lo), np.full((16, C), D.lo)),
    ):
        T = len(q)
        spec = _fmt_spec(policy)
        for dname, dout in (("", _grad(rng, (T, C), 0.1)),
                            (", dout limits", np.where(rng.random((T, C)) < 0.5, GRAD.lo,
                                                       GRAD.hi))):
            out, probs, dq, dk, dv = _attention_golden(policy, q, k, v, dout)
            if not dname:
                cases.append(Case("attention_forward", fmt, name, spec, {"T": T},
                                  {"q": _h(q), "k": _h(k), "v": _h(v)},
                                  {"out": _h(out), "probs": _u(probs)}))
            cases.append(Case("attention_backward", fmt, name + dname, spec, {"T": T},
                              {"dout": _h(dout), "q": _h(q), "k": _h(k), "v": _h(v),
                               "probs": _u(probs)},
                              {"dq": _h(dq), "dk": _h(dk), "dv": _h(dv)}))
    return cases


def _cases_cross_entropy(fmt, policy, rng):
    L, F, cases = policy.logits, policy.data.frac_bits, []
    one_hot = np.full((16, VOCAB), L.lo)
    hot = _tokens(rng, 16)
    one_hot[np.arange(16), hot] = L.hi
    ties = _normal(rng, (16, VOCAB), L, 2.0)
    ties[:, 4] = ties[:, 9] = ties.max(axis=1)
    for name, logits, targets in (
        ("random T=16", _normal(rng, (16, VOCAB), L, 3.0), _tokens(rng, 16)),
        ("random T=1", _normal(rng, (1, VOCAB), L, 3.0), _tokens(rng, 1)),
        ("random T=5", _normal(rng, (5, VOCAB), L, 3.0), _tokens(rng, 5)),
        ("full range", _uniform(rng, (16, VOCAB), L.lo, L.hi), _tokens(rng, 16)),
        ("all equal", np.repeat(_uniform(rng, (16, 1), L.lo, L.hi), VOCAB, 1), _tokens(rng, 16)),
        ("one-hot, target hot", one_hot, hot),
        ("one-hot, target cold", one_hot, (hot + 1) % VOCAB),
        ("two maxima", ties, np.full(16, 4)),
    ):
        T, spec = len(logits), _fmt_spec(policy)
        probs = ops.cross_entropy_forward(_ctx(policy), logits, targets)
        s = ops.exp_neg(logits - logits.max(axis=1, keepdims=True), F).sum(axis=1)
        cases.append(Case("cross_entropy_forward", fmt, name, spec, {"T": T},
                          {"logits": _i(logits)}, {"probs": _i(probs), "S": _i(s)}))
        dlogits = ops.cross_entropy_backward(_ctx(policy), probs, targets)
        cases.append(Case("cross_entropy_backward", fmt, name, spec, {"T": T},
                          {"probs": _i(probs), "targets": _b(targets)}, {"dlogits": _h(dlogits)}))
        cases.append(Case("loss_q16", fmt, name, spec, {"T": T},
                          {"logits": _i(logits), "targets": _b(targets)},
                          {"loss_q16": int(ops.loss_q16(logits, targets, F))}))
    return cases
