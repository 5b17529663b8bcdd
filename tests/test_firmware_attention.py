"""The firmware's attention kernels (issue 15): their inline dot products (the split words
and the int32 pair, the triangle s <= t of backward) on the unix port and on the int32
target against the simulator, at the values where the sums are largest.

conformance's op cases test them in every format and policy; these put every row at the
extremes of its container (the products 2**30 of -2**15 * -2**15, the sums beyond int32)
for the shifts of the scores' recipe (0, below 16, 16 and more) and 8-bit containers.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from qgpt import conformance as cf
from qgpt import int_ops as ops
from qgpt import params
from qgpt.conformance.inputs import C, Case, _ctx, _u
from qgpt.conformance.policy_cases import _in, _spec
from qgpt.policy import parse_policy

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"

POLICIES = (
    "acts=q9.7,logits=q9.15",  # 16-bit A, the scores' shift 2 Fa + 1 - Fl = 0
    "int16",  # shift 13
    "weights=q1.15,acts=q1.15,logits=q20.4",  # shift 27 (the recipe's s >= 16)
    "int8",  # 8-bit A (ptr8), 16-bit G
    "weights=q2.6,acts=q2.6,logits=q8.4,grads=q2.6",  # 8-bit A and G
)


def _rows(kind, T, fmt, rng):
    if kind == "lo":
        return np.full((T, C), fmt.lo)
    if kind == "hi":
        return np.full((T, C), fmt.hi)
    if kind == "signs":  # lo and hi by turns: the largest negative products
        return np.where((np.arange(T)[:, None] + np.arange(C)) % 2 == 0, fmt.lo, fmt.hi)
    return rng.choice(np.array([fmt.lo, fmt.hi, fmt.lo + 1, 0, -1]), size=(T, C))


def _cases(spec, rng):
    p = parse_policy(spec)
    A, G = p.acts, p.grads
    out = []
    for T in (1, 7, 16):
        for kind in ("lo", "hi", "signs", "mixed"):
            q, k, v = (_rows(kind, T, A, rng) for _ in range(3))
            dout = _rows(kind, T, G, rng)
            o, probs = ops.attention_forward(_ctx(p), q, k, v)
            dq, dk, dv = ops.attention_backward(_ctx(p), dout, q, k, v, probs)
            name = f"T={T} {kind}"
            out.append(Case("attention_forward", spec, name, _spec(p), {"T": T},
                            {"q": _in(A, q), "k": _in(A, k), "v": _in(A, v)},
                            {"out": _in(A, o), "probs": _u(probs)}))
            out.append(Case("attention_backward", spec, name, _spec(p), {"T": T},
                            {"dout": _in(G, dout), "q": _in(A, q), "k": _in(A, k),
                             "v": _in(A, v), "probs": _u(probs)},
                            {"dq": _in(G, dq), "dk": _in(G, dk), "dv": _in(G, dv)}))
    return out


@pytest.mark.parametrize("target", ["unix", "int32"])
def test_attention_at_its_extremes_equals_the_simulator(target):
    rng = np.random.default_rng(15)
    cases = {spec: _cases(spec, rng) for spec in POLICIES}
    report = cf.run_ops(cases=cases, target=target)
    assert report.ok, report.summary() + "\n" + "\n".join(map(str, report.mismatches[:20]))
    assert len(report.cases) == 2 * 12 * len(POLICIES)
    # the extremes reach the limits: some scores saturate (probabilities of ties), and the
    # gradients hit G's limits
    lo16 = [c for c in cases["acts=q9.7,logits=q9.15"] if c.op == "attention_backward"]
    assert any(np.abs(c.expected["dk"][1]).max() == 1 << 15 for c in lo16)


def test_the_kernels_head_width_is_the_models():
    """attention's loops are written for four words a head (kernels.py's _HS)."""
    tree = ast.parse((FIRMWARE / "kernels.py").read_text())
    consts = {n.targets[0].id: ast.literal_eval(n.value.args[0]) for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
              and getattr(n.value.func, "id", "") == "const"}
    assert consts["_HS"] == params.HEAD_DIM == 4
