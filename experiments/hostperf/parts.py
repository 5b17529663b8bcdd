"""Instructions of one part of the integer training step, counted by cachegrind (parts.sh
runs it for two repeat counts and prints the difference per call).

usage: python parts.py PART REPEATS [FORMAT ROUNDING]
PART: adam (IntAdam.step), fb (speculative forward + backward + deferred check), fwd,
bwd, step (IntModel.train_step), none. The model is the one after 60 steps of seed 42,
called on "emily" (6 positions)."""

import sys

import numpy as np

from qgpt import data
from qgpt import int_model as im
from qgpt.float_model import split_tokens
from qgpt.runconfig import TrainConfig
from qgpt.train import make_model, training_steps

part, repeats = sys.argv[1], int(sys.argv[2])
fmt = sys.argv[3] if len(sys.argv) > 3 else "q4.12"
rounding = sys.argv[4] if len(sys.argv) > 4 else "nearest"
cfg = TrainConfig(data="../shared/data/names-makemore.txt", steps=1000, seed=42, format=fmt,
                  rounding=rounding)
model = make_model(cfg)
for _ in training_steps(model, data.load(cfg.data), cfg, stop=60):
    pass
tokens = data.encode("emily")
inputs, targets = split_tokens(tokens)
flat, views = model._step_weights()
ctx = model.ctx
logits, cache = model._forward_backward(flat, inputs, targets, views)
grad_copy = model.grad.copy()


def adam():
    model.grad[:] = grad_copy
    model.opt.step(model.store, model.grad, 60, 1000, ctx)


def fb():
    model._forward_backward(flat, inputs, targets, views)


def fwd():
    im.forward(ctx, flat, inputs, targets, views)


def bwd():
    model.grad.fill(0)
    im.backward(ctx, flat, cache, model.grad, views, model.grad_views, zeroed=True)


def step():
    model.train_step(tokens, 60, 1000)


def none():
    pass


def copy_only():
    model.grad[:] = grad_copy


ops = im.ops
ctx.defer()
x1, rs1 = cache["x1"], cache["rs1"]
c = cache


def rms_fwd():
    ops.rmsnorm_forward(ctx, x1)


def rms_bwd():
    ops.rmsnorm_backward(ctx, x1, x1, rs1)


def att_fwd():
    ops.attention_forward(ctx, c["q"], c["k"], c["v"], c["heads"])


def att_bwd():
    ops.attention_backward(ctx, c["att"], c["q"], c["k"], c["v"], c["probs"], stacked=True,
                           heads=c["heads"])


def ce_fwd():
    ops.cross_entropy_forward(ctx, logits, targets, sums=True)


def ce_bwd():
    ops.cross_entropy_backward(ctx, c["probs_out"], targets)


def lin_fwd():
    ops.linear_forward(ctx, c["x3"], views["layer0.mlp_fc1"], ctx.p.acts, "mlp_hidden")


def lin_bwd():
    ops.linear_backward(ctx, c["h"], c["x3"], views["layer0.mlp_fc1"],
                        model.grad_views["layer0.mlp_fc1"], "mlp_fc1", zeroed=True,
                        exact_dw=True)


def emb_bwd():
    ops.embedding_backward(ctx, c["x0"], inputs, model.grad_views["wte"],
                           model.grad_views["wpe"], zeroed=True)


def check():
    ctx.defer()
    for a in ("x0", "x1", "q", "att", "x3", "h", "x4") * 4:
        ctx.sat(c[a], ctx.p.acts, "t")
    ctx.deferred_clip_nothing()


KEEP = [c[a] for a in ("x0", "x1", "q", "att", "x3", "h", "x4") * 4]


def join_only():
    b"".join(KEEP)


def sats_only():
    ctx.defer()
    for a in ("x0", "x1", "q", "att", "x3", "h", "x4") * 4:
        ctx.sat(c[a], ctx.p.acts, "t")


def concat_only():
    np.concatenate(KEEP, axis=None)


f = globals()[part]
for _ in range(repeats):
    f()
