"""The float64 reference against independent oracles.

1. Every op's backward against central differences of its own forward.
2. The whole model's loss and all 4,192 gradients against microgpt rebuilt on a
   scalar autograd (micrograd_oracle.py, which imports nothing from qgpt).
3. Twenty Adam steps against the same oracle's training loop.
"""

from collections.abc import Callable
from dataclasses import dataclass

import micrograd_oracle as oracle
import numpy as np
import pytest

from qgpt import float_ops as ops
from qgpt.data import encode
from qgpt.float_model import init_params, loss_and_grad
from qgpt.optim import AdamConfig, FloatAdam
from qgpt.params import BLOCK, BOS, MLP_HIDDEN, N_EMBD, N_PARAMS, PARAMS, VOCAB, views

# --- 1. every op's backward vs central differences ---

# Central differences (f(x+h) - f(x-h)) / 2h err by ~h^2 f''' / 6 (truncation) plus
# ~1e-16 |f| / h (rounding, with |f| up to ~100 here): h = 1e-4 keeps both near 1e-10.
FD_STEP = 1e-4
OP_RTOL = 1e-6  # on |backward - numerical| / max(|backward|, |numerical|, OP_FLOOR)
OP_FLOOR = 1e-3  # so entries below 1e-3 are held to 1e-9 absolute, above rounding noise
KINK_GAP = 1e-2  # inputs are moved at least this far from a kink, beyond FD_STEP
TOKENS = np.array([BOS, 4, 12, 12, 0, 12, 25])  # repeats: their gradients must accumulate
TARGETS = np.array([4, 12, 12, 0, 12, 25, BOS])


@dataclass(frozen=True)
class OpCase:
    """One op under test, built from float_ops' forward/backward pair.

    inputs: the shapes of the tensors to differentiate, by name; "T" stands for
        the number of positions.
    forward(t): the op's output from the tensors t, which also hold the integer
        "tokens" and "targets" of the T positions (not differentiated).
    backward(t, dout, d): the input gradients, by name, given the output
        gradient dout; parameter gradients are added into the buffers d.
    params: the names whose gradients backward adds into d, not returns.
    kinked: the inputs at which the op has a kink at 0 (relu), where a
        central difference across it would be meaningless.
    """

    inputs: dict
    forward: Callable
    backward: Callable
    params: tuple = ()
    kinked: tuple = ()


def _embedding_backward(t, dout, d):
    ops.embedding_backward(dout, t["tokens"], d["wte"], d["wpe"])
    return {}


def _rmsnorm_backward(t, dout, d):
    y, rstd = ops.rmsnorm_forward(t["x"])
    return {"x": ops.rmsnorm_backward(dout, y, rstd)}


def _linear_backward(t, dout, d):
    return {"x": ops.linear_backward(dout, t["x"], t["w"], d["w"])}


def _add_backward(t, dout, d):
    da, db = ops.add_backward(dout)
    return {"a": da, "b": db}


def _attention_backward(t, dout, d):
    _, probs = ops.attention_forward(t["q"], t["k"], t["v"])
    dq, dk, dv = ops.attention_backward(dout, t["q"], t["k"], t["v"], probs)
    return {"q": dq, "k": dk, "v": dv}


def _cross_entropy_backward(t, dout, d):
    # cross-entropy ends the graph (dloss = 1); dout scales it like any upstream gradient
    _, probs = ops.cross_entropy_forward(t["logits"], t["targets"])
    return {"logits": ops.cross_entropy_backward(probs, t["targets"]) * dout}


OP_CASES = {
    "embedding": OpCase(
        inputs={"wte": (VOCAB, N_EMBD), "wpe": (BLOCK, N_EMBD)},
        forward=lambda t: ops.embedding_forward(t["wte"], t["wpe"], t["tokens"]),
        backward=_embedding_backward,
        params=("wte", "wpe"),
    ),
    "rmsnorm": OpCase(
        inputs={"x": ("T", N_EMBD)},
        forward=lambda t: ops.rmsnorm_forward(t["x"])[0],
        backward=_rmsnorm_backward,
    ),
    "linear": OpCase(  # not square, so a transposed weight cannot pass
        inputs={"x": ("T", MLP_HIDDEN), "w": (N_EMBD, MLP_HIDDEN)},
        forward=lambda t: ops.linear_forward(t["x"], t["w"]),
        backward=_linear_backward,
        params=("w",),
    ),
    "add": OpCase(
        inputs={"a": ("T", N_EMBD), "b": ("T", N_EMBD)},
        forward=lambda t: ops.add_forward(t["a"], t["b"]),
        backward=_add_backward,
    ),
    "attention": OpCase(
        inputs={"q": ("T", N_EMBD), "k": ("T", N_EMBD), "v": ("T", N_EMBD)},
        forward=lambda t: ops.attention_forward(t["q"], t["k"], t["v"])[0],
        backward=_attention_backward,
    ),
    "relu": OpCase(
        inputs={"x": ("T", MLP_HIDDEN)},
        forward=lambda t: ops.relu_forward(t["x"]),
        backward=lambda t, dout, d: {"x": ops.relu_backward(dout, t["x"])},
        kinked=("x",),
    ),
    "softmax": OpCase(
        inputs={"z": ("T", VOCAB)},
        forward=lambda t: ops.softmax(t["z"]),
        backward=lambda t, dout, d: {"z": ops.softmax_backward(dout, ops.softmax(t["z"]))},
    ),
    "cross_entropy": OpCase(
        inputs={"logits": ("T", VOCAB)},
        forward=lambda t: np.asarray(ops.cross_entropy_forward(t["logits"], t["targets"])[0]),
        backward=_cross_entropy_backward,
    ),
}


def numerical_grad(loss, x):
    """d loss() / d x by central differences, nudging x in place one entry at a time."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + FD_STEP
        up = loss()
        x[i] = saved - FD_STEP
        down = loss()
        x[i] = saved
        grad[i] = (up - down) / (2 * FD_STEP)
    return grad


def helper_test_op(op, n_pos, seed=0):
    """Check every gradient of one op against central differences.

    The op's output is reduced to a scalar by a random projection,
    loss = sum(out * R), so that the output gradient is R.
    """
    case = OP_CASES[op]
    rng = np.random.default_rng(seed)
    t = {"tokens": TOKENS[:n_pos], "targets": TARGETS[:n_pos]}
    for name, shape in case.inputs.items():
        t[name] = rng.normal(size=tuple(n_pos if s == "T" else s for s in shape))
    for name in case.kinked:
        t[name][np.abs(t[name]) < KINK_GAP] += 2 * KINK_GAP
    R = rng.normal(size=np.shape(case.forward(t)))

    # parameter buffers start non-zero: backward must add into them, not overwrite
    d = {name: np.ones_like(t[name]) for name in case.params}
    analytic = case.backward(t, R, d)
    analytic.update({name: d[name] - 1.0 for name in case.params})
    assert sorted(analytic) == sorted(case.inputs), f"{op}: backward gave {sorted(analytic)}"

    for name in case.inputs:
        numerical = numerical_grad(lambda: float(np.sum(case.forward(t) * R)), t[name])
        a = analytic[name]
        assert a.shape == numerical.shape, f"{op}: d{name} is {a.shape}, want {numerical.shape}"
        scale = np.maximum(np.maximum(np.abs(a), np.abs(numerical)), OP_FLOOR)
        rel = np.abs(a - numerical) / scale
        i = np.unravel_index(np.argmax(rel), rel.shape)
        assert rel[i] < OP_RTOL, (
            f"{op} (T={n_pos}): d{name}[{', '.join(map(str, i))}]: backward {float(a[i])!r}, "
            f"central difference {float(numerical[i])!r}, "
            f"relative error {rel[i]:.2e} >= {OP_RTOL:g} "
            f"({np.sum(rel >= OP_RTOL)} of {rel.size} entries off)"
        )


@pytest.mark.parametrize("n_pos", [1, len(TOKENS)])
@pytest.mark.parametrize("op", list(OP_CASES))
def test_op_backward_matches_central_differences(op, n_pos):
    helper_test_op(op, n_pos)


# --- 2. the whole model vs the scalar-autograd oracle ---

# Tolerance: |float - oracle| <= MODEL_RTOL * scale, entry by entry, where scale is
# the largest |oracle value| of the whole quantity compared (the loss itself, all
# 4,192 gradients, or all 4,192 weights). Float64 rounding in either
# implementation is ~1e-15 of that scale.
MODEL_RTOL = 1e-10
TRAIN_RTOL = 1e-9
NAMES = ["x", "ava", "isabella", "christopherjame"]  # 1, 3, 8 and 15 letters: 2..16 positions
TRAIN_DOCS = ["emma", "x", "olivia", "ava", "mia"]  # cycled: docs[step % len(docs)]
TRAIN_STEPS = 20


def state_dict(flat):
    """The oracle's input: {name: nested lists [out][in]} from a flat buffer."""
    return {name: view.tolist() for name, view in views(flat).items()}


def flatten(state):
    """A flat buffer laid out by PARAMS from the oracle's {name: nested lists}."""
    return np.concatenate([np.asarray(state[name], dtype=float).ravel() for name, _ in PARAMS])


def assert_params_close(got, want, rtol, what):
    """got, want: flat buffers; on failure name the tensor, the index and both values."""
    scale = max(np.max(np.abs(want)), np.finfo(float).tiny)
    got_v, want_v = views(got), views(want)
    for name, _ in PARAMS:
        err = np.abs(got_v[name] - want_v[name])
        i = np.unravel_index(np.argmax(err), err.shape)
        assert err[i] <= rtol * scale, (
            f"{what}: {name}[{i[0]}, {i[1]}]: "
            f"float {float(got_v[name][i])!r}, oracle {float(want_v[name][i])!r}, "
            f"|diff| {err[i]:.3e} > {rtol:g} * {scale:.3e} "
            f"({np.sum(err > rtol * scale)} of {err.size} entries off)"
        )


def test_oracle_tokenizer_matches_encode():
    for name in NAMES + TRAIN_DOCS:
        assert encode(name) == oracle.tokenize(name), name


@pytest.mark.parametrize("name", NAMES)
def test_model_loss_and_gradients_match_oracle(name):
    # larger weights than init's N(0, 0.08), so attention and ReLU are far from their
    # near-uniform, near-linear start and every term of the gradient matters
    flat = np.random.default_rng(len(name)).normal(0.0, 0.3, N_PARAMS)
    loss, grad = loss_and_grad(flat, encode(name))
    want_loss, want_grad = oracle.loss_and_grad(state_dict(flat), name)
    assert abs(loss - want_loss) <= MODEL_RTOL * abs(want_loss), (
        f"{name!r}: loss float {loss!r}, oracle {want_loss!r}"
    )
    assert_params_close(grad, flatten(want_grad), MODEL_RTOL, f"{name!r}: gradient")


def test_training_matches_oracle():
    flat = init_params(42)
    init_state = state_dict(flat)
    opt = FloatAdam(AdamConfig(), N_PARAMS)
    losses = []
    for step in range(TRAIN_STEPS):
        loss, grad = loss_and_grad(flat, encode(TRAIN_DOCS[step % len(TRAIN_DOCS)]))
        losses.append(loss)
        opt.step(flat, grad, step, TRAIN_STEPS)
    want_losses, want_state = oracle.train(init_state, TRAIN_DOCS, TRAIN_STEPS)
    for step, (loss, want) in enumerate(zip(losses, want_losses, strict=True)):
        assert abs(loss - want) <= TRAIN_RTOL * abs(want), (
            f"step {step} ({TRAIN_DOCS[step % len(TRAIN_DOCS)]!r}): "
            f"loss float {loss!r}, oracle {want!r}"
        )
    assert_params_close(flat, flatten(want_state), TRAIN_RTOL, f"weights after {TRAIN_STEPS} steps")
