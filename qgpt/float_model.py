"""microgpt's forward and backward pass in float64, built from float_ops.

forward() runs all positions of one name at once (or of a batch of names of one
length, inputs (B,T)); causal masking makes that equal to microgpt's token-by-token
pass with a KV cache. backward() calls the
ops in the exact reverse order of forward(), so the two read side by side.
"""

import numpy as np

from qgpt import float_ops as ops
from qgpt import prng
from qgpt.params import BLOCK, N_PARAMS, SLOTS, views


def init_params(seed):
    """The float initial weights: exactly the integer init (prng.init_raw) / 2**28."""
    flat = np.empty(N_PARAMS)
    for j, s in enumerate(SLOTS):
        flat[s.offset : s.offset + s.size] = prng.init_raw(seed, j, s.size) / 2.0**prng.INIT_FRAC
    return flat


def split_tokens(tokens):
    """Inputs and targets of one training sequence: at most BLOCK positions."""
    n = min(BLOCK, len(tokens) - 1)
    return np.asarray(tokens[:n]), np.asarray(tokens[1 : n + 1])


def forward(flat, inputs, targets=None):
    """Logits (T,V); with targets also the mean loss and the cache for backward."""
    p = views(flat)
    x = ops.embedding_forward(p["wte"], p["wpe"], inputs)
    x0, rstd0 = ops.rmsnorm_forward(x)
    # attention block
    x1, rstd1 = ops.rmsnorm_forward(x0)
    q = ops.linear_forward(x1, p["layer0.attn_wq"])
    k = ops.linear_forward(x1, p["layer0.attn_wk"])
    v = ops.linear_forward(x1, p["layer0.attn_wv"])
    att, probs = ops.attention_forward(q, k, v)
    x2 = ops.add_forward(ops.linear_forward(att, p["layer0.attn_wo"]), x0)
    # MLP block
    x3, rstd3 = ops.rmsnorm_forward(x2)
    h = ops.linear_forward(x3, p["layer0.mlp_fc1"])
    hr = ops.relu_forward(h)
    x4 = ops.add_forward(ops.linear_forward(hr, p["layer0.mlp_fc2"]), x2)
    logits = ops.linear_forward(x4, p["lm_head"])
    if targets is None:
        return logits
    loss, probs_out = ops.cross_entropy_forward(logits, targets)
    cache = dict(inputs=inputs, targets=targets, x0=x0, rstd0=rstd0, x1=x1, rstd1=rstd1, q=q,
                 k=k, v=v, probs=probs, att=att, x3=x3, rstd3=rstd3, h=h, hr=hr, x4=x4,
                 probs_out=probs_out)
    return logits, loss, cache


def backward(flat, c, dflat):
    """Add the gradient of the mean loss into dflat (a flat buffer like flat)."""
    p, d = views(flat), views(dflat)
    dlogits = ops.cross_entropy_backward(c["probs_out"], c["targets"])
    dx4 = ops.linear_backward(dlogits, c["x4"], p["lm_head"], d["lm_head"])
    # MLP block: x4 = fc2(relu(fc1(rmsnorm(x2)))) + x2
    dmlp, dx2 = ops.add_backward(dx4)
    dhr = ops.linear_backward(dmlp, c["hr"], p["layer0.mlp_fc2"], d["layer0.mlp_fc2"])
    dh = ops.relu_backward(dhr, c["h"])
    dx3 = ops.linear_backward(dh, c["x3"], p["layer0.mlp_fc1"], d["layer0.mlp_fc1"])
    dx2 = dx2 + ops.rmsnorm_backward(dx3, c["x3"], c["rstd3"])
    # attention block: x2 = wo(attention(q, k, v)) + x0, with q, k, v from rmsnorm(x0)
    dproj, dx0 = ops.add_backward(dx2)
    datt = ops.linear_backward(dproj, c["att"], p["layer0.attn_wo"], d["layer0.attn_wo"])
    dq, dk, dv = ops.attention_backward(datt, c["q"], c["k"], c["v"], c["probs"])
    dx1 = ops.linear_backward(dq, c["x1"], p["layer0.attn_wq"], d["layer0.attn_wq"])
    dx1 = dx1 + ops.linear_backward(dk, c["x1"], p["layer0.attn_wk"], d["layer0.attn_wk"])
    dx1 = dx1 + ops.linear_backward(dv, c["x1"], p["layer0.attn_wv"], d["layer0.attn_wv"])
    dx0 = dx0 + ops.rmsnorm_backward(dx1, c["x1"], c["rstd1"])
    # embedding: x0 = rmsnorm(wte[token] + wpe[t])
    dx = ops.rmsnorm_backward(dx0, c["x0"], c["rstd0"])
    ops.embedding_backward(dx, c["inputs"], d["wte"], d["wpe"])


def loss_and_grad(flat, tokens):
    inputs, targets = split_tokens(tokens)
    _, loss, cache = forward(flat, inputs, targets)
    dflat = np.zeros_like(flat)
    backward(flat, cache, dflat)
    return loss, dflat
