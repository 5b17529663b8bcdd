"""Conformance of the firmware with the integer simulator: levels "ops", "steps", "run".

Level "ops" (below): every kernel on golden vectors. Levels "steps" and "run"
(further down): whole training steps and a whole run of firmware/qgpt_train.py
against qgpt.int_model.IntModel, compared after each step.

The simulator (qgpt/int_ops.py, int_model.py, prng.py, policy.py) makes golden
vectors for every firmware kernel: random inputs at realistic scale and edge
cases (range limits, saturation, rounding ties, zeros, the largest magnitudes,
all-equal and one-hot softmax rows, T = 1 and T = 16), for each data format.
The firmware computes the same cases, and every output is compared with `==`;
a mismatch names the level, the op, the format, the case, the tensor, the index
and both values, and the run's exit code is 1.

Transport (board-ready: the device side uses only json, array, binascii, sys, gc):
the host writes one request file per format (firmware/conform_ops.py documents
it: a JSON header line per case followed by the raw little-endian input arrays);
the device prints one hex line per output tensor; the host compares. Targets:

    unix   micropython -X heapsize=96K -m conform_ops REQUEST, with the firmware
           compiled by mpy-cross for the host (as a board gets it) on MICROPYPATH
    int32  the same firmware and driver run by CPython, every viper intermediate
           checked against int32 (the x86-64 unix port computes in 64 bits and
           cannot show an overflow; a 32-bit board would)

    run_ops(formats, micropython=None, seed=0) -> OpsReport   (the function API)
    conformance_ops(formats, micropython=None, seed=0) -> exit code, prints a summary
    run_steps(...) -> TrainReport; conformance_steps(...) -> exit code
    run_run(data=None, ...) -> TrainReport; conformance_run(...) -> exit code
    conformance(level, formats, micropython, seed, heapsize, build, target, data)
        -> exit code: the CLI's dispatcher, level ops | steps | run | all
    python -m qgpt.conformance [--level ops|steps|run|all] [--formats q4.12,q8.8]
                               [--target unix|int32] [--micropython PATH] [--data NAMES]
"""

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qgpt import int_model, prng
from qgpt import int_ops as ops
from qgpt.params import BLOCK, MLP_HIDDEN, N_EMBD, N_PARAMS, SLOTS, VOCAB
from qgpt.policy import GRAD, GS_FRAC, PROB_FRAC, R_FRAC, guard, make_policy
from qgpt.qformat import QFormat, parse

LEVEL = "ops"
TARGETS = ("unix", "int32")
FORMATS = ("q8.8", "q4.12", "q6.10", "q3.13", "q2.14", "q12.4", "q4.8")
NO_FORMAT = "-"  # the group of format-free cases (isqrt, the PRNG, Adam's scalars)
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
FIRMWARE_MODULES = ("kernels", "policy", "prng", "adam", "loss", "params", "conform_ops",
                    "model", "ckpt", "qgpt_train", "runcfg", "restore", "sampling", "dump")
REQUEST_MAGIC = b"QGPT-OPS 1\n"
REQUEST_END = b"END\n"
HEAPSIZE = "96K"  # the device's heap: an ESP32 without PSRAM has about 100 KB
HEAPSIZE_PY = "128K"  # --build py: the port compiles kernels.py itself, which takes more
DTYPES = {"h": "<i2", "H": "<u2", "i": "<i4", "B": "u1"}  # typecode -> little-endian numpy dtype
C, T_MAX = N_EMBD, BLOCK


# --- cases, mismatches and the report ---


@dataclass
class Case:
    """One kernel run: inputs in, expected outputs (tensors and scalars) out."""

    op: str
    fmt: str  # the data format, or NO_FORMAT
    name: str  # what the case tests, e.g. "random T=16"
    policy: dict | None  # the device's Policy spec: fmt, rounding, master, lr_q30
    params: dict  # dimensions and other small numbers the device handler reads
    inputs: dict  # name -> (typecode, int64 array)
    expected: dict  # name -> (typecode, int64 array) or int; names shared with inputs are in/out


@dataclass
class Mismatch:
    level: str
    op: str
    fmt: str
    case: str
    tensor: str
    index: tuple | None  # None for a scalar or a device error
    device: object
    simulator: object

    def __str__(self):
        where = f"{self.level} {self.op} {self.fmt} [{self.case}]"
        if self.tensor == "<device error>":
            return f"{where}: the device failed: {self.device}"
        idx = "" if self.index is None else "[" + ", ".join(str(i) for i in self.index) + "]"
        return f"{where}: {self.tensor}{idx} device {self.device} != simulator {self.simulator}"


@dataclass
class OpsReport:
    """The outcome of one op-level run."""

    cases: list
    mismatches: list = field(default_factory=list)  # the first MAX_LISTED of each tensor
    mismatch_count: dict = field(default_factory=dict)  # (op, fmt, case, tensor) -> count
    values: dict = field(default_factory=dict)  # fmt -> values compared
    heap_free_min: int | None = None  # the least free heap after a case on the device
    heapsize: str = HEAPSIZE
    seconds: float = 0.0
    device: str = ""

    @property
    def ok(self):
        return not self.mismatches

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def summary(self):
        """A table: one row per op, with its formats, cases, values and result."""
        from tabulate import tabulate

        rows = {}
        for c in self.cases:
            r = rows.setdefault(c.op, {"formats": [], "cases": 0, "values": 0, "bad": 0})
            if c.fmt not in r["formats"]:
                r["formats"].append(c.fmt)
            r["cases"] += 1
            r["values"] += _count_values(c)
        for key, n in self.mismatch_count.items():
            rows.setdefault(key[0], {"formats": [key[1]], "cases": 0, "values": 0, "bad": 0})
            rows[key[0]]["bad"] += n
        table = [[op, ",".join(r["formats"]), r["cases"], r["values"],
                  "ok" if r["bad"] == 0 else f"FAIL ({r['bad']})"] for op, r in rows.items()]
        head = tabulate(table, headers=["op", "formats", "cases", "values", "result"])
        total = sum(self.values.values())
        bad = sum(self.mismatch_count.values())
        tail = (f"level {LEVEL}: {len(self.cases)} cases, {total} values compared, "
                f"{bad} mismatches, {self.seconds:.1f} s on {self.device}")
        if self.heap_free_min is not None:
            tail += f" (least free heap {self.heap_free_min} bytes of {self.heapsize})"
        return head + "\n" + tail


MAX_LISTED = 5  # mismatches listed per tensor (all are counted)


def _count_values(case):
    return sum(1 if not isinstance(v, tuple) else v[1].size for v in case.expected.values())


# --- helpers for making inputs ---


def _fmt_spec(policy):
    m = policy.master
    return {"fmt": policy.data.name, "rounding": policy.rounding,
            "master": [m.int_bits, m.frac_bits] if m else None, "lr_q30": policy.lr_q30}


def _ctx(policy):
    return ops.Ctx(policy, strict=True)  # goldens must themselves obey the int32 rule


def _normal(rng, shape, fmt, std):
    """Real values ~ N(0, std) in fmt, rounded and saturated."""
    x = np.round(rng.normal(0.0, std, shape) * 2.0**fmt.frac_bits)
    return np.clip(x, fmt.lo, fmt.hi).astype(np.int64)


def _uniform(rng, shape, lo, hi):
    """Raw values uniform over [lo, hi]: the full range, saturation included."""
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def _grad(rng, shape, std=0.05):
    """Activation gradients in G: heavy-tailed (Student t, 3 dof), mostly small."""
    x = np.round(rng.standard_t(3, shape) * std * 2.0**GRAD.frac_bits)
    return np.clip(x, GRAD.lo, GRAD.hi).astype(np.int64)


def _ties(rng, shape):
    """Small values whose sums, shifted by a few bits, often land half way: 2**k and
    small odd numbers."""
    return rng.choice(np.array([-8, -4, -3, -2, -1, 0, 1, 2, 3, 4, 8, 64, -64, 512]), size=shape)


def _tokens(rng, T, n=VOCAB):
    return rng.integers(0, n, size=T, dtype=np.int64)


def _h(a):
    return ("h", np.array(a, dtype=np.int64))  # a copy: the simulator updates in place


def _i(a):
    return ("i", np.array(a, dtype=np.int64))


def _b(a):
    return ("B", np.array(a, dtype=np.int64))


def _u(a):
    return ("H", np.array(a, dtype=np.int64))  # uint16: softmax probabilities in [0, 2**15]


# --- golden cases, op by op ---


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
    z = np.maximum(z, L.lo - L.hi)
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
        dwte = _uniform(rng, (VOCAB, C), -(1 << 20), 1 << 20)
        dwpe = _uniform(rng, (T_MAX, C), -(1 << 20), 1 << 20)
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


def _beta_powers_at(step):
    """(b1^t, b2^t) in Q30 for t = step: what IntAdam holds before step `step`."""
    p1 = p2 = 1 << 30
    for _ in range(step):
        p1, p2 = int_model.beta_powers(p1, p2)
    return p1, p2


def master_for(fmt):
    """A master-weight format for fmt: 8 more fractional bits, within 31 bits."""
    d = parse(fmt)
    return QFormat(d.int_bits, min(d.frac_bits + 8, 31 - d.int_bits))


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


def _cases_adam(fmt, policy_nearest, rng, seed):
    cases = []
    for rounding in ("nearest", "floor", "stochastic"):
        for master in (None, master_for(fmt)):
            p = make_policy(fmt, rounding, master.name if master else "")
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
            g_e = np.array([0, 0, 0, 1, -1, 2**31 - 1, -(2**31), 2**31 - 1, -(2**31), 1 << P,
                            -(1 << P), 12345, 0, 0, 0, 0])
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
        p = make_policy(fmt, rounding, master.name if master else "", lr)
        cases.append(Case("policy", fmt, f"{rounding}, master {master.name if master else '-'},"
                          f" lr {lr}", _fmt_spec(p), {"guards": [list(t) for t in GUARD_PROBES]},
                          {}, _expected_policy(p)))
    # the initial weights of every tensor (section 4), into the data format and a master one
    for master in (None, master_for(fmt)):
        p = make_policy(fmt, "nearest", master.name if master else "")
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


def build_cases(fmt, seed=0):
    """Every op-level case of one data format (NO_FORMAT: the format-free ones)."""
    rng = np.random.default_rng([seed, sum(map(ord, fmt))])
    if fmt == NO_FORMAT:
        return _cases_no_format(rng, seed)
    policy = make_policy(fmt)
    cases = []
    for make in (_cases_exp_softmax, _cases_rsqrt, _cases_embedding, _cases_rmsnorm,
                 _cases_linear, _cases_elementwise, _cases_attention, _cases_cross_entropy):
        cases += make(fmt, policy, rng)
    cases += _cases_adam(fmt, policy, rng, seed)
    cases += _cases_policy_init(fmt, policy, rng, seed)
    return cases


# --- the transport: request file out, device text back ---


def _array_bytes(tc, a, what):
    a = np.asarray(a, dtype=np.int64).ravel()
    info = np.iinfo(DTYPES[tc])
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{what}: values outside typecode {tc!r}")
    return a.astype(DTYPES[tc]).tobytes()


def write_request(cases, path):
    """The binary request for firmware/conform_ops.py."""
    with open(path, "wb") as f:
        f.write(REQUEST_MAGIC)
        for i, c in enumerate(cases):
            out = [[n, v[0], int(v[1].size)] for n, v in c.expected.items() if isinstance(v, tuple)]
            header = {"id": i, "op": c.op, "policy": c.policy, "p": c.params,
                      "in": [[n, tc, int(a.size)] for n, (tc, a) in c.inputs.items()], "out": out}
            f.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
            for n, (tc, a) in c.inputs.items():
                f.write(_array_bytes(tc, a, f"{c.op} [{c.name}] input {n}"))
        f.write(REQUEST_END)


def parse_reply(text):
    """Device stdout -> (banner, results {id: {name: value}}, errors {id: message},
    heap {id: free bytes})."""
    banner, results, errors, heap = "", {}, {}, {}
    current = None
    for line in text.splitlines():
        parts = line.split(" ", 4)
        tag = parts[0]
        if tag == "QGPT-OPS":
            banner = line
        elif tag == "case":
            current = {}
        elif tag == "t" and current is not None and len(parts) == 5:
            name, tc, n, hexdata = parts[1], parts[2], int(parts[3]), parts[4]
            a = np.frombuffer(bytes.fromhex(hexdata), dtype=DTYPES[tc]).astype(np.int64)
            current[name] = a if a.size == n else None
        elif tag == "s" and current is not None:
            current[parts[1]] = int(line.split(" ", 2)[2])
        elif tag == "ok":
            results[int(parts[1])] = current
            heap[int(parts[1])] = int(parts[2])
            current = None
        elif tag == "error":
            errors[int(parts[1])] = line.split(" ", 2)[2] if len(parts) > 2 else "?"
            current = None
    return banner, results, errors, heap


def default_micropython():
    """The unix port next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else (shutil.which("micropython") or "micropython")


def default_mpy_cross():
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else shutil.which("mpy-cross")


def build_firmware(dest, build="mpy", mpy_cross=None, source_dir=FIRMWARE_DIR):
    """Put the device side in dest: .mpy files compiled for the host (as a board gets
    its own arch's, with the same short source names as qgpt/device.py: each is an
    interned string on the device), or the .py sources (build="py", compiled by the
    port itself)."""
    for mod in FIRMWARE_MODULES:
        src = Path(source_dir) / f"{mod}.py"
        if build == "py":
            shutil.copy(src, Path(dest) / src.name)
            continue
        cmd = [mpy_cross or default_mpy_cross(), "-march=host", "-s", f"{mod}.py", "-o",
               str(Path(dest) / f"{mod}.mpy"), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mpy-cross failed on {src}: {r.stderr.strip()}")


def _start_device(target, micropython, firmware_dir, request, heapsize):
    """The running device process, or the OSError that prevented it."""
    env = dict(os.environ, MICROPYPATH=str(firmware_dir))
    if target == "int32":
        cmd = [sys.executable, "-c", "import sys; from qgpt.conformance import emulate_int32; "
               "emulate_int32(sys.argv[1], sys.argv[2])", str(request), str(firmware_dir)]
    else:
        cmd = [micropython, "-X", f"heapsize={heapsize}", "-m", "conform_ops", str(request)]
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
    except OSError as e:
        return e


# --- the int32 target: the firmware run by CPython, every viper intermediate checked ---
#
# The x86-64 unix port computes viper ints in 64 bits, so it can never show an
# int32 overflow. This target executes the same firmware files and the same
# driver in CPython, with each viper function rewritten so that every +, -, *,
# <<, >>, //, &, |, ^ goes through _Int32.op: the result must fit int32, shift
# counts must lie in 0..31, and // must have a positive divisor and operands
# within +-2**30. ptr32 loads are signed and ptr16/ptr8 loads unsigned, as on a
# 32-bit board. Two idioms wrap by design and are recognised by their shape:
# the sign extension (x ^ s32) - s32 (the identity on 32 bits) and the hash's
# (x * K) & M30 (only the low 30 bits matter); `one << 31` gives -2**31.


class Int32Overflow(ArithmeticError):
    """A viper intermediate that would not fit a 32-bit board's int."""


class _Ptr:
    """viper's ptr8/ptr16/ptr32 on a 32-bit board: loads of 8 and 16 bits are unsigned,
    of 32 bits signed; a store keeps the low bits."""

    def __init__(self, buf, code, bits):
        self.mv = memoryview(buf).cast("B").cast(code)
        self.mask = (1 << bits) - 1
        self.bits = bits

    def __getitem__(self, i):
        return self.mv[i]

    def __setitem__(self, i, v):
        if self.bits == 32:
            if not -(2**31) <= v < 2**31:
                raise Int32Overflow(f"ptr32 store of {v}")
            self.mv[i] = v
        else:
            self.mv[i] = v & self.mask


_INT32_OPS = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mult": lambda a, b: a * b,
    "LShift": lambda a, b: a << b, "RShift": lambda a, b: a >> b,
    "BitAnd": lambda a, b: a & b, "BitOr": lambda a, b: a | b, "BitXor": lambda a, b: a ^ b,
    "FloorDiv": lambda a, b: a // b, "Mod": lambda a, b: a % b,
}


class _Int32:
    """The checked operations the rewritten viper code calls."""

    @staticmethod
    def op(name, a, b, where):
        if name in ("LShift", "RShift") and not 0 <= b <= 31:
            raise Int32Overflow(f"{where}: shift count {b}")
        if name in ("FloorDiv", "Mod") and not (0 < b <= 2**30 and -(2**30) <= a <= 2**30):
            raise Int32Overflow(f"{where}: {a} // {b} (want a positive divisor, both within 2**30)")
        r = _INT32_OPS[name](a, b)
        if name == "LShift" and r == 2**31:
            return -(2**31)  # one << 31: the sign bit, as a 32-bit word has it
        if not -(2**31) <= r < 2**31:
            raise Int32Overflow(f"{where}: {a} {name} {b} = {r} does not fit int32")
        return r

    @staticmethod
    def sext(x, where):  # (x ^ s32) - s32: the identity on a 32-bit word
        if not -(2**31) <= x < 2**31:
            raise Int32Overflow(f"{where}: {x} does not fit int32")
        return x

    @staticmethod
    def mulmask(a, b, mask, where):  # (a * b) & mask: the low bits survive a wrap
        if not (0 <= mask < 2**31 and -(2**31) <= a < 2**31 and -(2**31) <= b < 2**31):
            raise Int32Overflow(f"{where}: ({a} * {b}) & {mask}")
        return (a * b) & mask

    @staticmethod
    def arg(x, name, where):  # an int argument: a 32-bit viper function truncates it
        if not -(2**31) <= x < 2**31:
            raise Int32Overflow(f"{where}: argument {name} = {x} does not fit int32")
        return x


class _ViperToInt32(ast.NodeTransformer):
    def __init__(self, filename):
        self.filename = filename
        self.fn = ""

    def _where(self, node):
        return ast.Constant(f"{self.filename}:{node.lineno} in {self.fn}")

    def _call(self, method, args, node):
        f = ast.Attribute(ast.Name("_Int32", ast.Load()), method, ast.Load())
        return ast.copy_location(ast.Call(f, args + [self._where(node)], []), node)

    def visit_FunctionDef(self, node):
        names = [getattr(d, "attr", getattr(d, "id", "")) for d in node.decorator_list]
        if "viper" not in names:
            return node  # plain Python: unbounded ints, as on the device
        self.fn = node.name
        node.decorator_list = []
        self.generic_visit(node)
        checks = [ast.Assign([ast.Name(a.arg, ast.Store())],
                             self._call("arg", [ast.Name(a.arg, ast.Load()), ast.Constant(a.arg)],
                                        node))
                  for a in node.args.args
                  if isinstance(a.annotation, ast.Name) and a.annotation.id == "int"]
        node.body = checks + node.body
        return ast.fix_missing_locations(node)

    def visit_BinOp(self, node):
        left, right = node.left, node.right
        if (isinstance(node.op, ast.Sub) and isinstance(left, ast.BinOp)
                and isinstance(left.op, ast.BitXor) and isinstance(right, ast.Name)
                and isinstance(left.right, ast.Name) and left.right.id == right.id):
            return self._call("sext", [self.visit(left.left)], node)
        if (isinstance(node.op, ast.BitAnd) and isinstance(left, ast.BinOp)
                and isinstance(left.op, ast.Mult)):
            return self._call("mulmask", [self.visit(left.left), self.visit(left.right),
                                          self.visit(right)], node)
        self.generic_visit(node)
        return self._call("op", [ast.Constant(type(node.op).__name__), node.left, node.right],
                          node)

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        load = ast.Name(node.target.id, ast.Load())
        value = self._call("op", [ast.Constant(type(node.op).__name__), load, node.value], node)
        return ast.copy_location(ast.Assign([node.target], value), node)


def _load_int32_module(name, path, module=None):
    """Import firmware/NAME.py into sys.modules (into module, if given) with its viper
    functions checked."""
    import types

    tree = _ViperToInt32(path.name).visit(ast.parse(path.read_text(), str(path)))
    module = module or types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__.update({
        "ptr8": lambda b: _Ptr(b, "B", 8), "ptr16": lambda b: _Ptr(b, "H", 16),
        "ptr32": lambda b: _Ptr(b, "i", 32), "_Int32": _Int32})
    sys.modules[name] = module
    exec(compile(ast.fix_missing_locations(tree), str(path), "exec"), module.__dict__)
    return module


class _Int32Finder:
    """Imports firmware modules (also those the firmware imports lazily, or drops from
    sys.modules and imports again) with their viper functions int32-checked."""

    def __init__(self, firmware_dir):
        self.dir = Path(firmware_dir)

    def find_spec(self, name, path=None, target=None):
        import importlib.util

        src = self.dir / f"{name}.py"
        if path is not None or not src.exists():
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        _load_int32_module(module.__name__, self.dir / f"{module.__name__}.py", module)


def _int32_firmware(firmware_dir):
    """Make `import NAME` load firmware/NAME.py int32-checked, in this process, with
    what MicroPython has and CPython lacks: the micropython module, time.ticks_ms and
    ticks_diff, gc.mem_alloc (0: no MicroPython heap here)."""
    import gc
    import types

    shim = types.ModuleType("micropython")
    shim.viper = shim.native = lambda f: f
    shim.const = lambda x: x
    sys.modules["micropython"] = shim
    time.ticks_ms = lambda: int(time.time() * 1000)
    time.ticks_diff = lambda t, s: t - s
    gc.mem_alloc = lambda: 0
    sys.meta_path.insert(0, _Int32Finder(firmware_dir))


def emulate_int32(request, firmware_dir=FIRMWARE_DIR):
    """Run firmware/conform_ops.py on REQUEST in this (CPython) process as the int32
    target; prints what a device prints. Used in a subprocess by run_ops."""
    _int32_firmware(firmware_dir)
    import conform_ops

    conform_ops.main(str(request))


def emulate_int32_train(config, firmware_dir=FIRMWARE_DIR):
    """Run firmware/qgpt_train.py on the config file in this (CPython) process as the
    int32 target; returns its exit code. Used in a subprocess by run_training."""
    _int32_firmware(firmware_dir)
    import qgpt_train

    return qgpt_train.main(str(config))


def compare(cases, results, errors, report, fmt):
    """Compare the device's outputs with the goldens; add mismatches to report."""
    if not results and len(errors) > 1 and len(set(errors.values())) == 1:
        # the device failed as a whole (it did not start, or died at once): say it once
        msg = next(iter(errors.values()))
        report.mismatches.append(Mismatch(LEVEL, "(device)", fmt, "all cases", "<device error>",
                                          None, msg, None))
        report.mismatch_count[("(device)", fmt, "all cases", "<device error>")] = len(cases)
        return
    for i, c in enumerate(cases):
        if i in errors or i not in results:
            msg = errors.get(i, "no result (the device stopped before this case)")
            report.mismatches.append(Mismatch(LEVEL, c.op, c.fmt, c.name, "<device error>", None,
                                              msg, None))
            report.mismatch_count[(c.op, c.fmt, c.name, "<device error>")] = 1
            continue
        got = results[i]
        for name, want in c.expected.items():
            report.values[fmt] = report.values.get(fmt, 0) + (
                want[1].size if isinstance(want, tuple) else 1)
            dev = got.get(name)
            if isinstance(want, tuple):
                exp = np.asarray(want[1], dtype=np.int64)
                if dev is None or dev.size != exp.size:
                    bad = [(None, "missing" if dev is None else f"{dev.size} values",
                            f"{exp.size} values")]
                else:
                    diff = np.flatnonzero(dev != exp.ravel())
                    bad = [(np.unravel_index(j, exp.shape), int(dev[j]), int(exp.flat[j]))
                           for j in diff]
            else:
                bad = [] if dev == want else [(None, dev, want)]
            if bad:
                report.mismatch_count[(c.op, c.fmt, c.name, name)] = len(bad)
                for idx, d, s in bad[:MAX_LISTED]:
                    idx = None if idx is None else tuple(int(k) for k in idx)
                    report.mismatches.append(Mismatch(LEVEL, c.op, c.fmt, c.name, name, idx, d, s))


def run_ops(formats=FORMATS, micropython=None, seed=0, heapsize=None, build="mpy",
            cases=None, target="unix", firmware_dir=FIRMWARE_DIR, workdir=None):
    """Run the op-level conformance; returns an OpsReport.

    formats: data formats to test (the format-free group NO_FORMAT is added unless
    cases is given); cases: {format: [Case]} to run instead of building them (tests
    use it to corrupt a golden value). target: "unix", the MicroPython unix port
    (micropython: its path; heapsize; build "mpy" or "py"), or "int32", the firmware
    run by CPython with every viper intermediate checked against int32 (slower).
    firmware_dir: the firmware sources (tests point it at an altered copy).
    One device process per format, started as soon as its request is written.
    """
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown: want one of {', '.join(TARGETS)}")
    t0 = time.time()
    micropython = micropython or default_micropython()
    heapsize = heapsize or (HEAPSIZE_PY if build == "py" else HEAPSIZE)
    if cases is None:
        groups = [NO_FORMAT] + [f for f in formats if f != NO_FORMAT]
        cases_of = None
    else:
        groups, cases_of = list(cases), cases
    report = OpsReport(cases=[], heapsize=heapsize)
    with tempfile.TemporaryDirectory(prefix="qgpt-conform-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = tmp / "firmware"
        fw.mkdir()
        if target == "unix":
            build_firmware(fw, build, source_dir=firmware_dir)
        else:
            fw = Path(firmware_dir)
        running = []
        for fmt in groups:
            group = cases_of[fmt] if cases_of is not None else build_cases(fmt, seed)
            request = tmp / f"request-{fmt.replace('.', '_') if fmt != NO_FORMAT else 'none'}.bin"
            write_request(group, request)
            running.append((fmt, group,
                            _start_device(target, micropython, fw, request, heapsize)))
            report.cases += group
        for fmt, group, proc in running:
            if isinstance(proc, OSError):
                out, err, code = "", f"cannot run {micropython}: {proc}", -1
            else:
                out, err = proc.communicate(timeout=1800)
                code = proc.returncode
            banner, results, errors, heap = parse_reply(out)
            if code != 0 and not errors:
                why = err.strip().splitlines()[-1] if err.strip() else f"exit code {code}"
                errors = {i: f"the device failed: {why}" for i in range(len(group))
                          if i not in results}
            report.device = banner.split(" ", 2)[-1] if banner else f"{target} (no banner)"
            if target == "int32":
                report.device += " (CPython, int32-checked)"
            if heap and min(heap.values()) >= 0:
                low = min(heap.values())
                report.heap_free_min = low if report.heap_free_min is None else min(
                    low, report.heap_free_min)
            compare(group, results, errors, report, fmt)
    report.seconds = time.time() - t0
    return report


def conformance_ops(formats=None, micropython=None, seed=0, heapsize=None, build="mpy",
                    target="unix", out=None, corrupt=None):
    """The CLI's entry point: run, print the summary table and the first mismatches,
    return the exit code (0 all equal, 1 any mismatch or device error).
    corrupt: an op name; alters one of its golden values first (a self-test)."""
    out = out or sys.stdout
    formats = tuple(formats or FORMATS)
    cases = None
    if corrupt:
        cases = {f: build_cases(f, seed) for f in (NO_FORMAT, *formats)}
        corrupt_one(cases, corrupt)
    report = run_ops(formats, micropython, seed, heapsize, build, cases, target)
    print(report.summary(), file=out)
    for m in report.mismatches[:20]:
        print(m, file=out)
    if len(report.mismatches) > 20:
        print(f"... {len(report.mismatches) - 20} more listed mismatches", file=out)
    return report.exit_code


def corrupt_one(cases, op):
    """Add 1 to the first expected tensor value of the first case of op; returns
    (format, case, tensor, flat index) of the altered value."""
    for fmt, group in cases.items():
        for c in group:
            if c.op != op:
                continue
            for name, want in c.expected.items():
                if isinstance(want, tuple) and want[1].size:
                    a = np.array(want[1], dtype=np.int64)
                    j = a.size // 2
                    a.flat[j] += 1 if a.flat[j] < np.iinfo(DTYPES[want[0]]).max else -1
                    c.expected[name] = (want[0], a)
                    return fmt, c.name, name, j
    raise ValueError(f"no case of op {op!r} to corrupt")


# --- levels "steps" and "run": whole training steps on the device vs the simulator ---
#
# The device runs firmware/qgpt_train.py (the run protocol of firmware/README.md) on
# a packed dataset in a temporary folder; the host runs the same steps with
# qgpt.int_model.IntModel (the code `qgpt train` uses). Compared with ==:
#   steps  the loss_q16 of every step, and after steps 1, 2, 10 and 100 the weight
#          store, the step's gradient, Adam's m and v (the device dumps them: "dump"
#          lines), then the final state hash; built-in names (data/names.txt)
#   run    a whole 1000-step run on makemore's names: every loss_q16, the final state
#          hash (CRC32 of params, m, v as int32 LE), and the 20 samples

STEPS_FORMATS = ("q8.8", "q4.12")
STEPS_ROUNDINGS = ("nearest", "floor", "stochastic")
STEPS_EXTRA = (("q4.12", "stochastic", "q4.20"), ("q6.10", "nearest", ""),
               ("q12.4", "stochastic", ""), ("q2.14", "nearest", ""))  # cheap others
STEPS_DUMPS = (1, 2, 10, 100)
TRAIN_SEED = 42
TRAIN_STEPS = 1000  # the lr schedule's length (a run may stop earlier: stop_at)
TRAIN_HEAPSIZE = "96K"  # the 64-bit unix port trains from 90K: firmware/README.md, "Memory"
TRAIN_HEAPSIZE_MASTER = "112K"  # int32 master weights take 16 KB more (from 107K)
MAKEMORE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "names-makemore.txt"
STATE_ARRAYS = ("params", "grad", "adam_m", "adam_v")  # a dump file's arrays, in order


@dataclass
class TrainMismatch:
    level: str  # "steps" or "run"
    fmt: str
    case: str  # rounding (and master)
    step: int | None  # the step after which the value differs (1-based), None: at the end
    what: str  # params | grad | adam_m | adam_v | loss_q16 | hash | sample | device
    tensor: str = ""  # a name of the parameter table
    index: tuple | None = None  # within the tensor
    flat: int | None = None  # in the flat buffer
    device: object = None
    simulator: object = None

    def __str__(self):
        where = f"{self.level} {self.fmt} {self.case}"
        if self.step is not None:
            where += f", step {self.step}"
        if self.what == "device":
            return f"{where}: the device failed: {self.device}"
        idx = ""
        if self.tensor:
            idx = f" {self.tensor}" + "".join(f"[{i}]" for i in self.index)
            idx += f" (flat index {self.flat})"
        return f"{where}: {self.what}{idx} device {self.device} != simulator {self.simulator}"


@dataclass
class TrainCase:
    fmt: str
    rounding: str
    master: str = ""

    @property
    def name(self):
        return self.rounding + (f", master {self.master}" if self.master else "")


@dataclass
class TrainReport:
    level: str
    rows: list = field(default_factory=list)  # [format, case, steps, values, result]
    mismatches: list = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    heap_peak: int | None = None
    skipped: str = ""  # why the level did not run

    @property
    def ok(self):
        return not self.mismatches

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def summary(self):
        from tabulate import tabulate

        if self.skipped:
            return f"level {self.level}: SKIPPED ({self.skipped})"
        head = tabulate(self.rows, headers=["format", "case", "steps", "values", "result"])
        values = sum(r[3] for r in self.rows)
        tail = (f"level {self.level}: {len(self.rows)} runs, {values} values compared, "
                f"{len(self.mismatches)} mismatches listed, {self.seconds:.1f} s on {self.device}")
        if self.heap_peak is not None:
            tail += f" (heap peak {self.heap_peak} bytes)"
        return head + "\n" + tail


def tensor_at(flat):
    """(name, index) of a flat parameter index, from the parameter table."""
    for s in SLOTS:
        if s.offset <= flat < s.offset + s.size:
            return s.name, tuple(int(i) for i in np.unravel_index(flat - s.offset, s.shape))
    raise IndexError(flat)


def state_hash(params, m, v):
    """The device's `done ... hash`: CRC32 of params, m, v as little-endian int32."""
    import zlib

    crc = 0
    for a in (params, m, v):
        crc = zlib.crc32(np.asarray(a, dtype="<i4").tobytes(), crc)
    return crc


def pack_names(names_file, dest):
    """Pack the training split of a names file (qgpt pack); returns the train names."""
    from qgpt import data, pack

    ds = data.load(names_file)
    pack.write(dest, ds.train)
    return ds.train


@dataclass
class DeviceRun:
    """What the device printed, parsed (firmware/README.md)."""

    code: int
    stdout: str
    stderr: str
    start: str = ""
    losses: dict = field(default_factory=dict)  # step (1-based) -> loss_q16
    ckpts: list = field(default_factory=list)
    dumps: dict = field(default_factory=dict)  # step -> path
    samples: list = field(default_factory=list)
    done: dict = field(default_factory=dict)  # step, hash, heap_peak, stalled
    errors: list = field(default_factory=list)

    @property
    def failure(self):
        """Why the run failed, or ''."""
        if self.errors:
            return "; ".join(self.errors)
        if self.code != 0 or not self.done:
            tail = self.stderr.strip().splitlines()[-3:] or self.stdout.strip().splitlines()[-3:]
            return f"exit code {self.code}: " + " | ".join(tail)
        return ""


def parse_device_run(code, stdout, stderr, folder):
    r = DeviceRun(code, stdout, stderr)
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        f = rest.split()
        if tag == "qgpt" and f[:1] == ["start"]:
            r.start = line
        elif tag == "step" and len(f) >= 3 and f[1] == "loss_q16":
            r.losses[int(f[0])] = int(f[2])
        elif tag == "ckpt":
            r.ckpts.append(int(f[0]))
        elif tag == "dump":
            path = Path(folder) / rest
            r.dumps[int(path.stem.rsplit("-", 1)[1])] = path
        elif tag == "sample":
            r.samples.append(rest)
        elif tag == "done":
            r.done = {"step": int(f[1]), "hash": int(f[3], 16), "heap_peak": int(f[5]),
                      "stalled": int(f[7])}
        elif tag == "error":
            r.errors.append(rest)
    return r


def device_config(case, data, steps=TRAIN_STEPS, seed=TRAIN_SEED, **extra):
    """The qgpt.json of a device run (firmware/README.md)."""
    p = make_policy(case.fmt, case.rounding, case.master)
    cfg = {"format": case.fmt, "rounding": case.rounding, "master": case.master, "lr": p.lr,
           "lr_q30": p.lr_q30, "steps": steps, "seed": seed, "data": str(data),
           "checkpoint": "ckpt.bin", "checkpoint_every": 0, "samples": 0}
    cfg.update(extra)
    return cfg


def start_training(config, folder, micropython=None, heapsize=TRAIN_HEAPSIZE, target="unix",
                   firmware_dir=None):
    """Write config as folder/qgpt.json and start the device on it (a Popen)."""
    folder = Path(folder)
    (folder / "qgpt.json").write_text(json.dumps(config))
    env = dict(os.environ, MICROPYPATH=str(firmware_dir))
    if target == "int32":
        cmd = [sys.executable, "-c", "import sys; from qgpt.conformance import "
               "emulate_int32_train; sys.exit(emulate_int32_train(sys.argv[1], sys.argv[2]))",
               "qgpt.json", str(firmware_dir)]
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    else:
        cmd = [micropython or default_micropython(), "-X", f"heapsize={heapsize}", "-m",
               "qgpt_train", "qgpt.json"]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_training(proc, folder, timeout=3600):
    out, err = proc.communicate(timeout=timeout)
    return parse_device_run(proc.returncode, out, err, folder)


def firmware_build(dest, target="unix", build="mpy", source_dir=FIRMWARE_DIR):
    """The firmware folder a target runs: compiled into dest (unix), or the sources."""
    if target == "int32":
        return Path(source_dir)
    Path(dest).mkdir(parents=True, exist_ok=True)
    build_firmware(dest, build, source_dir=source_dir)
    return Path(dest)


def simulate(case, names, upto, steps=TRAIN_STEPS, seed=TRAIN_SEED, dump_steps=()):
    """The host's run of the same steps: (IntModel, [loss_q16 per step], {step: state}),
    state = params, grad, adam_m, adam_v after that step. The loop of qgpt/train.py."""
    from qgpt import data
    from qgpt.int_model import IntModel
    from qgpt.train import TrainConfig

    cfg = TrainConfig(steps=steps, seed=seed, format=case.fmt, rounding=case.rounding,
                      master=case.master)
    model = IntModel(cfg)
    seen = {}
    adam_step = model.opt.step

    def capture(store, g, *args):  # the step's gradient, as Adam receives it
        seen["grad"] = g.copy()
        return adam_step(store, g, *args)

    model.opt.step = capture
    losses, states = [], {}
    for step in range(upto):
        name = names[prng.doc_index(step, len(names), seed)]
        _, tele = model.train_step(data.encode(name), step, steps)
        losses.append(int(tele["loss_q16"]))
        if step + 1 in dump_steps:
            states[step + 1] = (model.store.copy(), seen["grad"], model.opt.m.copy(),
                                model.opt.v.copy())
    model.opt.step = adam_step
    return model, losses, states


def read_dump(path):
    """A device dump: params, grad, adam_m, adam_v, each N_PARAMS int32 LE."""
    raw = np.fromfile(path, dtype="<i4").astype(np.int64)
    if raw.size != 4 * N_PARAMS:
        raise ValueError(f"{path}: {raw.size} values, want {4 * N_PARAMS}")
    return tuple(raw[i * N_PARAMS : (i + 1) * N_PARAMS] for i in range(4))


def compare_state(level, case, step, device, simulator, mismatches, limit=2):
    """Compare (params, grad, m, v) tuples; the first `limit` differing values of each
    tensor of each array are listed. Returns the number of values compared."""
    for what, dev, sim in zip(STATE_ARRAYS, device, simulator, strict=True):
        dev, sim = np.asarray(dev), np.asarray(sim)
        for s in SLOTS:
            part = slice(s.offset, s.offset + s.size)
            for j in np.flatnonzero(dev[part] != sim[part])[:limit] + s.offset:
                name, idx = tensor_at(int(j))
                mismatches.append(TrainMismatch(level, case.fmt, case.name, step, what, name,
                                                idx, int(j), int(dev[j]), int(sim[j])))
    return 4 * N_PARAMS


def compare_losses(level, case, device_losses, host_losses, mismatches, start=0, limit=3):
    """Per-step loss_q16: the first `limit` differences, and missing steps."""
    bad = 0
    for i, want in enumerate(host_losses):
        got = device_losses.get(start + i + 1)
        if got != want:
            mismatches.append(TrainMismatch(level, case.fmt, case.name, start + i + 1,
                                            "loss_q16", device=got, simulator=want))
            bad += 1
            if bad >= limit:
                break
    return len(host_losses)


def _steps_cases(formats, roundings, extra):
    cases = [TrainCase(f, r) for f in formats for r in roundings]
    return cases + [TrainCase(*e) for e in extra if TrainCase(*e) not in cases]


def run_steps(formats=STEPS_FORMATS, roundings=STEPS_ROUNDINGS, extra=STEPS_EXTRA,
              dump_steps=STEPS_DUMPS, micropython=None, target="unix", seed=TRAIN_SEED,
              heapsize=None, firmware_dir=FIRMWARE_DIR, workdir=None):
    """Level "steps": each case trains max(dump_steps) steps on the device and on the
    host (lr schedule of TRAIN_STEPS), compared after every step (loss_q16) and after
    each of dump_steps (params, gradient, m, v); returns a TrainReport."""
    t0 = time.time()
    report = TrainReport("steps")
    cases = _steps_cases(formats, roundings, extra)
    upto = max(dump_steps)
    with tempfile.TemporaryDirectory(prefix="qgpt-steps-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = firmware_build(tmp / "firmware", target, source_dir=firmware_dir)
        names = pack_names(None, tmp / "names.bin")
        running = []
        for i, case in enumerate(cases):  # all devices at once, then the host
            folder = tmp / f"case{i}"
            folder.mkdir()
            cfg = device_config(case, tmp / "names.bin", seed=seed, stop_at=upto,
                                dump_steps=list(dump_steps))
            heap = heapsize or (TRAIN_HEAPSIZE_MASTER if case.master else TRAIN_HEAPSIZE)
            running.append((case, folder, start_training(cfg, folder, micropython, heap,
                                                         target, fw)))
        for case, folder, proc in running:
            model, losses, states = simulate(case, names, upto, seed=seed,
                                             dump_steps=dump_steps)
            dev = finish_training(proc, folder)
            bad_before = len(report.mismatches)
            values = 0
            if dev.failure:
                report.mismatches.append(TrainMismatch("steps", case.fmt, case.name, None,
                                                       "device", device=dev.failure))
            else:
                report.device = f"{target} ({dev.start.split('viper=')[1].split()[0]}-bit viper)"
                if dev.done.get("heap_peak"):
                    report.heap_peak = max(report.heap_peak or 0, dev.done["heap_peak"])
                values += compare_losses("steps", case, dev.losses, losses, report.mismatches)
                for step in dump_steps:
                    if step not in dev.dumps:
                        report.mismatches.append(TrainMismatch(
                            "steps", case.fmt, case.name, step, "device",
                            device=f"no dump after step {step}"))
                        continue
                    values += compare_state("steps", case, step, read_dump(dev.dumps[step]),
                                            states[step], report.mismatches)
                want = state_hash(model.store, model.opt.m, model.opt.v)
                values += 1
                if dev.done["hash"] != want:
                    report.mismatches.append(TrainMismatch(
                        "steps", case.fmt, case.name, upto, "hash",
                        device=f"{dev.done['hash']:08x}", simulator=f"{want:08x}"))
            bad = len(report.mismatches) - bad_before
            report.rows.append([case.fmt, case.name, upto, values,
                                "ok" if bad == 0 else f"FAIL ({bad})"])
    report.seconds = time.time() - t0
    return report


def run_run(data=None, fmt="q4.12", rounding="nearest", master="", steps=TRAIN_STEPS,
            seed=TRAIN_SEED, samples=20, micropython=None, target="unix",
            heapsize=None, firmware_dir=FIRMWARE_DIR, workdir=None):
    """Level "run": a whole training run on makemore's names (read in place), device vs
    host: every step's loss_q16, the final state hash (and on a mismatch the tensors
    of the device's checkpoint), the samples. Skipped if the names file is absent."""
    from qgpt import checkpoint
    from qgpt.train import sample as host_sample

    t0 = time.time()
    report = TrainReport("run")
    data = Path(data) if data else MAKEMORE
    if not data.exists():
        report.skipped = f"{data} is absent (makemore's names.txt, read in place)"
        return report
    case = TrainCase(fmt, rounding, master)
    with tempfile.TemporaryDirectory(prefix="qgpt-run-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = firmware_build(tmp / "firmware", target, source_dir=firmware_dir)
        names = pack_names(data, tmp / "names.bin")
        cfg = device_config(case, tmp / "names.bin", steps=steps, seed=seed, samples=samples,
                            log_every=1)
        heap = heapsize or (TRAIN_HEAPSIZE_MASTER if master else TRAIN_HEAPSIZE)
        proc = start_training(cfg, tmp, micropython, heap, target, fw)
        model, losses, _ = simulate(case, names, steps, steps=steps, seed=seed)
        host_names = host_sample(model, n=samples, temperature=0.5, seed=seed)
        dev = finish_training(proc, tmp)
        values = 0
        if dev.failure:
            report.mismatches.append(TrainMismatch("run", fmt, case.name, None, "device",
                                                   device=dev.failure))
        else:
            report.device = f"{target} ({dev.start.split('viper=')[1].split()[0]}-bit viper)"
            report.heap_peak = dev.done.get("heap_peak")
            values += compare_losses("run", case, dev.losses, losses, report.mismatches)
            want = state_hash(model.store, model.opt.m, model.opt.v)
            values += 1
            if dev.done["hash"] != want:
                report.mismatches.append(TrainMismatch("run", fmt, case.name, steps, "hash",
                                                       device=f"{dev.done['hash']:08x}",
                                                       simulator=f"{want:08x}"))
                meta, arrays = checkpoint.load(tmp / "ckpt.bin")
                compare_state("run", case, steps, (arrays["params"], np.zeros(N_PARAMS),
                                                   arrays["adam_m"], arrays["adam_v"]),
                              (model.store, np.zeros(N_PARAMS), model.opt.m, model.opt.v),
                              report.mismatches)
            for i, want_name in enumerate(host_names):
                got = dev.samples[i] if i < len(dev.samples) else None
                values += 1
                if got != want_name:
                    report.mismatches.append(TrainMismatch("run", fmt, case.name, None,
                                                           f"sample {i}", device=repr(got),
                                                           simulator=repr(want_name)))
        bad = len(report.mismatches)
        report.rows.append([fmt, case.name, steps, values, "ok" if bad == 0 else f"FAIL ({bad})"])
    report.seconds = time.time() - t0
    return report


def _print_report(report, out, limit=20):
    print(report.summary(), file=out)
    for m in report.mismatches[:limit]:
        print(m, file=out)
    if len(report.mismatches) > limit:
        print(f"... {len(report.mismatches) - limit} more listed mismatches", file=out)


def conformance_steps(formats=None, micropython=None, seed=TRAIN_SEED, target="unix",
                      dump_steps=STEPS_DUMPS, out=None, **kw):
    """Level "steps" for the CLI: prints the table and the first mismatches; exit code."""
    report = run_steps(tuple(formats or STEPS_FORMATS), micropython=micropython, seed=seed,
                       target=target, dump_steps=dump_steps, **kw)
    _print_report(report, out or sys.stdout)
    return report.exit_code


def conformance_run(data=None, micropython=None, seed=TRAIN_SEED, target="unix", out=None,
                    **kw):
    """Level "run" for the CLI: prints the table (or why it was skipped); exit code."""
    report = run_run(data, micropython=micropython, seed=seed, target=target, **kw)
    _print_report(report, out or sys.stdout)
    return report.exit_code


LEVELS = ("ops", "steps", "run", "all")


def conformance(level="ops", formats=None, micropython=None, seed=None, heapsize=None,
                build="mpy", target="unix", data=None, out=None):
    """The CLI's dispatcher (qgpt conformance --level ops|steps|run|all): runs the
    level(s), prints each report; exit code 0 if all equal (a skipped run counts as
    passed, and says why), 1 on any mismatch or device failure.
    seed: the golden cases' seed for ops (default 0), the training seed for steps and
    run (default 42); formats: ops and steps; data: the run level's names file."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is unknown: want one of {', '.join(LEVELS)}")
    out = out or sys.stdout
    code = 0
    if level in ("ops", "all"):
        code |= conformance_ops(formats, micropython, 0 if seed is None else seed, heapsize,
                                build, target, out=out)
    train_seed = TRAIN_SEED if seed is None else seed
    if level in ("steps", "all"):
        step_formats = formats if level == "steps" else None
        code |= conformance_steps(step_formats, micropython, train_seed, target,
                                  dump_steps=STEPS_DUMPS if target == "unix" else (1, 2),
                                  out=out, **({"heapsize": heapsize} if heapsize else {}))
    if level == "all" and target == "int32":  # about 1 s a step in CPython: ask for it alone
        print("level run: SKIPPED (the int32 target takes about 20 minutes for 1000 steps: "
              "run --level run --target int32 alone)", file=out)
    elif level in ("run", "all"):
        code |= conformance_run(data, micropython, train_seed, target, out=out,
                                **({"heapsize": heapsize} if heapsize else {}))
    return code


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qgpt.conformance",
                                 description="conformance of the firmware with the simulator")
    ap.add_argument("--level", choices=LEVELS, default="ops",
                    help="ops: every kernel on golden vectors (default); steps: training steps "
                         "(params, gradients, Adam state); run: a whole run on makemore's "
                         "names; all: the three")
    ap.add_argument("--formats", default=None,
                    help=f"ops default {','.join(FORMATS)}; steps default "
                         f"{','.join(STEPS_FORMATS)} (and a few cheap others)")
    ap.add_argument("--target", choices=TARGETS, default="unix",
                    help="unix: the MicroPython unix port (default); int32: the firmware run by "
                         "CPython with every viper intermediate checked against int32")
    ap.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    ap.add_argument("--seed", type=int, default=None,
                    help="ops: the golden cases' seed (default 0); steps, run: the training "
                         "seed (default 42)")
    ap.add_argument("--heapsize", default=None,
                    help=f"the device heap (ops default {HEAPSIZE}, {HEAPSIZE_PY} with --build "
                         f"py; steps and run default {TRAIN_HEAPSIZE})")
    ap.add_argument("--build", choices=["mpy", "py"], default="mpy",
                    help="mpy: firmware compiled by mpy-cross (default); py: the port compiles")
    ap.add_argument("--data", default=None,
                    help=f"run: the names file (default {MAKEMORE})")
    ap.add_argument("--corrupt", default=None, metavar="OP",
                    help="self-test (ops): alter one golden value of OP; the run must fail")
    a = ap.parse_args(argv)
    formats = a.formats.split(",") if a.formats else None
    if a.corrupt:
        return conformance_ops(formats, a.micropython, a.seed or 0, a.heapsize, a.build,
                               a.target, corrupt=a.corrupt)
    return conformance(a.level, formats, a.micropython, a.seed, a.heapsize, a.build, a.target,
                       a.data)


if __name__ == "__main__":
    sys.exit(main())
