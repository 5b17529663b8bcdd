"""microgpt's forward, backward and Adam in integer arithmetic (docs/arithmetic.md); Adam
itself is in int_adam.py.

Mirrors float_model.py line by line with int_ops. No float is used in a
training step; floats appear only to report the loss (from the model's own
logits, in float64) and to convert.
"""

import numpy as np

from qgpt import int_ops as ops
from qgpt import prng, qformat
from qgpt.float_model import split_tokens
from qgpt.int_adam import (  # noqa: F401 (re-exported: int_model.IntAdam, alpha_at, ...)
    DRAW_STEPS,
    KERNEL,
    IntAdam,
    alpha_at,
    beta_powers,
    block_decode,
    block_encode,
    count_stalled,
    mul_q15,
    mul_q15_checked,
)
from qgpt.int_losses import reported_losses, reported_losses_of_steps
from qgpt.params import N_EMBD, N_PARAMS, QKV, SLOTS, stacked, views
from qgpt.policy import from_train_config

CHECKED_AFTER_A_CLIP = 8  # steps without speculation after one that clipped
# the linears' weights, every slot but the embeddings', one span of the flat table
LINEAR_SPAN = slice(min(s.offset for s in SLOTS if s.name not in ("wte", "wpe")), N_PARAMS)
assert sum(s.size for s in SLOTS if s.name not in ("wte", "wpe")) == N_PARAMS - LINEAR_SPAN.start


def init_params(seed, fmt):
    """The integer initial weights: the exact Q.28 init rounded half up to fmt."""
    flat = np.empty(N_PARAMS, dtype=np.int64)
    for j, s in enumerate(SLOTS):
        raw = prng.init_raw(seed, j, s.size)
        flat[s.offset : s.offset + s.size] = qformat.saturate(
            qformat.shift_round(raw, prng.INIT_FRAC - fmt.frac_bits), fmt)
    return flat


def weight_views(flat):
    """views(flat), and the stacked [wq; wk; wv] under "qkv" (build once per buffer)."""
    return {**views(flat), "qkv": stacked(flat, QKV)}


def forward(ctx, flat, inputs, targets=None, p=None):
    """Raw logits (T,V) in the logits format; with targets also probs and the cache.
    Without targets, inputs may be a batch of names of one length, (B,T) -> (B,T,V).
    p: weight_views(flat), if the caller keeps them."""
    p = weight_views(flat) if p is None else p
    data, logit_fmt = ctx.p.acts, ctx.p.logits
    x = ops.embedding_forward(ctx, p["wte"], p["wpe"], inputs)
    x0, rs0 = ops.rmsnorm_forward(ctx, x)
    # attention block
    x1, rs1 = ops.rmsnorm_forward(ctx, x0)
    # q, k, v as one linear over the stacked [wq; wk; wv] (every output element is the same)
    qkv = ops.linear_forward(ctx, x1, p["qkv"], data, "qkv")
    q, k, v = qkv[..., :N_EMBD], qkv[..., N_EMBD : 2 * N_EMBD], qkv[..., 2 * N_EMBD :]
    heads = ops.split_heads(qkv)  # the same q, k, v by head
    att, probs = ops.attention_forward(ctx, q, k, v, heads)
    proj = ops.linear_forward(ctx, att, p["layer0.attn_wo"], data, "attn_proj")
    x2 = ops.add_forward(ctx, proj, x0, data, "residual1")
    # MLP block
    x3, rs3 = ops.rmsnorm_forward(ctx, x2)
    h = ops.linear_forward(ctx, x3, p["layer0.mlp_fc1"], data, "mlp_hidden")
    hr = ops.relu_forward(h)
    mlp = ops.linear_forward(ctx, hr, p["layer0.mlp_fc2"], data, "mlp_out")
    x4 = ops.add_forward(ctx, mlp, x2, data, "residual2")
    logits = ops.linear_forward(ctx, x4, p["lm_head"], logit_fmt, "logits")
    if targets is None:
        return logits
    # probs, and each row's max and sum of exps for the reported losses
    probs_out, logit_max, exp_sums, gaps = ops.cross_entropy_forward(ctx, logits, targets,
                                                                     sums=True)
    cache = dict(inputs=inputs, targets=targets, x0=x0, rs0=rs0, x1=x1, rs1=rs1, q=q, k=k, v=v,
                 heads=heads, probs=probs, att=att, x3=x3, rs3=rs3, h=h, hr=hr, x4=x4,
                 probs_out=probs_out, logit_max=logit_max, exp_sums=exp_sums, logit_gaps=gaps)
    return logits, cache


def backward(ctx, flat, c, dflat, p=None, d=None, zeroed=False):
    """Add the integer gradient of the mean loss into dflat (param-grad format).
    p, d: weight_views of flat and dflat, if the caller keeps them; zeroed: dflat is known
    to be 0 (the ops then skip their test of it), or, where ctx.dw_fits and not strict,
    its embeddings' part is 0 and every linear's dw is written whole, whatever it held."""
    p = weight_views(flat) if p is None else p
    d = weight_views(dflat) if d is None else d
    gf = ctx.p.grads
    # nothing can clip the weight gradients: each linear leaves its exact sum, and all are
    # rounded by dw_shift in one pass at the end (the same integers, two numpy calls)
    exact_dw = zeroed and ctx.dw_fits and not ctx.strict
    dlogits = ops.cross_entropy_backward(ctx, c["probs_out"], c["targets"])
    dx4 = ops.linear_backward(ctx, dlogits, c["x4"], p["lm_head"], d["lm_head"], "lm_head",
                              zeroed=zeroed, exact_dw=exact_dw)
    # MLP block: x4 = fc2(relu(fc1(rmsnorm(x2)))) + x2
    dmlp, dx2 = ops.add_backward(dx4)
    dhr = ops.linear_backward(ctx, dmlp, c["hr"], p["layer0.mlp_fc2"], d["layer0.mlp_fc2"],
                              "mlp_fc2", zeroed=zeroed, exact_dw=exact_dw)
    dh = ops.relu_backward(dhr, c["h"])
    dx3 = ops.linear_backward(ctx, dh, c["x3"], p["layer0.mlp_fc1"], d["layer0.mlp_fc1"],
                              "mlp_fc1", zeroed=zeroed, exact_dw=exact_dw)
    dx2 = ops.add_forward(ctx, dx2, ops.rmsnorm_backward(ctx, dx3, c["x3"], c["rs3"]), gf, "dx2")
    # attention block: x2 = wo(attention(q, k, v)) + x0, with q, k, v from rmsnorm(x0)
    dproj, dx0 = ops.add_backward(dx2)
    datt = ops.linear_backward(ctx, dproj, c["att"], p["layer0.attn_wo"], d["layer0.attn_wo"],
                               "attn_wo", zeroed=zeroed, exact_dw=exact_dw)
    # (T,3C): [dq | dk | dv], the stacked linear's dy
    dqkv = ops.attention_backward(ctx, datt, c["q"], c["k"], c["v"], c["probs"], stacked=True,
                                  heads=c.get("heads"))
    # q, k, v = [wq; wk; wv] x1: the stacked weight gradient at once, then the three
    # input-gradient paths, each saturated, added in the order q, k, v
    dpaths = ops.linear_backward(ctx, dqkv, c["x1"], p["qkv"], d["qkv"], "qkv", paths=3,
                                 zeroed=zeroed, exact_dw=exact_dw)
    dx1 = ops.add_forward(ctx, ops.add_forward(ctx, dpaths[0], dpaths[1], gf, "dx1"),
                          dpaths[2], gf, "dx1")
    dx0 = ops.add_forward(ctx, dx0, ops.rmsnorm_backward(ctx, dx1, c["x1"], c["rs1"]), gf, "dx0")
    # embedding: x0 = rmsnorm(wte[token] + wpe[t])
    dx = ops.rmsnorm_backward(ctx, dx0, c["x0"], c["rs0"])
    ops.embedding_backward(ctx, dx, c["inputs"], d["wte"], d["wpe"], zeroed=zeroed)
    if exact_dw:
        linear = dflat[LINEAR_SPAN]
        shift = ctx.p.dw_shift  # rnd(linear, shift) in place (inline: a Python call less)
        if shift > 0:
            linear += ops._HALF[shift]
            linear >>= ops._SHIFT[shift]


# --- the integer model behind the training interface of train.py ---


class IntModel:
    kind = "int"
    telemetry_fields = ("loss_q16", "saturations", "stalled_updates")

    def __init__(self, cfg):
        self.cfg = cfg
        self.policy = from_train_config(cfg)
        self.ctx = ops.Ctx(self.policy, strict=cfg.strict)
        p = self.policy
        self.store = init_params(cfg.seed, p.weight_store)  # what Adam updates
        self.opt = IntAdam(p, cfg.seed)
        self.stalled_total = 0
        self.steps_taken = 0
        # the step's buffers, kept with their views: the gradient, and the forward pass's
        # weights when master weights are requantized into them
        self.grad = self.opt.gradient_buffer()  # (zeroed) every step; Adam reads it in place
        self.grad_views = weight_views(self.grad)
        self._embedding_grad = self.grad[: LINEAR_SPAN.start]  # wte's and wpe's
        self.weights = None if p.master is None else np.empty(N_PARAMS, dtype=np.int64)
        self._viewed = (None, None)  # (buffer, its weight_views)
        self._checked_steps = 0  # steps left on the checked path (_forward_backward)
        # train_step's reported losses deferred (training_steps' loss_batch), and the steps
        # whose losses are not computed yet
        self.defer_losses = False
        self._deferred, self._deferred_counts = [], []

    @property
    def flat(self):
        """The weights as the forward pass sees them (weights format)."""
        p = self.policy
        if p.master is None:
            return self.store
        return qformat.saturate(
            qformat.shift_round(self.store, p.master.frac_bits - p.weights.frac_bits), p.weights)

    def _step_weights(self):
        """The forward pass's weights for this step, and their weight_views (kept while
        the buffer stays the same)."""
        if self.weights is None:
            flat = self.store  # updated in place by Adam; load_state replaces it
        else:
            flat = self.weights
            flat[:] = self.flat
        if self._viewed[0] is not flat:
            self._viewed = (flat, weight_views(flat))
        return self._viewed

    def train_step(self, tokens, step, num_steps):
        """One training step: (loss, telemetry); with self.defer_losses, None: what the
        reported losses need is kept, and deferred_results() gives the kept steps' (loss,
        telemetry), computed together (int_losses: the same floats and integers)."""
        inputs, targets = split_tokens(tokens)
        flat, p = self._step_weights()
        clipped_before = self.ctx.clipped
        logits, cache = self._forward_backward(flat, inputs, targets, p)
        grad = self.grad
        stalled = self.opt.step(self.store, grad, step, num_steps, self.ctx)
        self.stalled_total += stalled
        self.steps_taken += 1
        counts = (self.ctx.clipped - clipped_before, stalled / N_PARAMS)
        if self.defer_losses:
            self._deferred.append((targets, cache["logit_max"], cache["exp_sums"],
                                   cache["logit_gaps"]))
            self._deferred_counts.append(counts)
            return None
        loss, loss_q16 = reported_losses(logits, targets, self.policy.logits.frac_bits,
                                         cache["logit_max"], cache["exp_sums"],
                                         cache["logit_gaps"])
        return loss, {"loss_q16": loss_q16, "saturations": counts[0],
                      "stalled_updates": counts[1]}

    def deferred_results(self):
        """[(loss, telemetry)] of the steps train_step took with defer_losses since the
        last call, in their order."""
        kept, counts = self._deferred, self._deferred_counts
        self._deferred, self._deferred_counts = [], []
        if not kept:
            return []
        losses = reported_losses_of_steps(kept, self.policy.logits.frac_bits)
        return [(loss, {"loss_q16": loss_q16, "saturations": sats, "stalled_updates": rate})
                for (loss, loss_q16), (sats, rate) in zip(losses, counts, strict=True)]

    def _forward_backward(self, flat, inputs, targets, p):
        """forward and backward into self.grad, speculatively: with the saturation checks
        deferred to one by range (Ctx.defer), and again with every check where one of
        them would clip (or the unclipped values go out of a table's range). Both give
        the same integers and counts; after a redo, a few steps go straight to the
        checked path (a run that saturates often would pay twice)."""
        ctx, grad = self.ctx, self.grad
        # the part of the gradient backward adds into: every linear's dw is written whole
        # (matmul into it) where nothing can clip it, so only the embeddings' is zeroed
        zero = self._embedding_grad if ctx.dw_fits and not ctx.strict else grad
        if self._checked_steps == 0 and not ctx.strict:
            counts, clipped = dict(ctx.saturations), ctx.clipped
            ctx.defer()
            try:
                zero.fill(0)
                logits, cache = forward(ctx, flat, inputs, targets, p)
                backward(ctx, flat, cache, grad, p, self.grad_views, zeroed=True)
                if ctx.deferred_clip_nothing():
                    return logits, cache
            except (ArithmeticError, IndexError, ValueError):
                pass  # unclipped values out of an op's range: the checked path decides
            ctx.deferred = None
            ctx.saturations, ctx.clipped = counts, clipped
            self._checked_steps = CHECKED_AFTER_A_CLIP
        self._checked_steps = max(0, self._checked_steps - 1)
        zero.fill(0)
        logits, cache = forward(ctx, flat, inputs, targets, p)
        backward(ctx, flat, cache, grad, p, self.grad_views, zeroed=True)
        return logits, cache

    def logits(self, inputs):
        raw = forward(self.ctx, self.flat, np.asarray(inputs))
        return qformat.to_float(raw, self.policy.logits.frac_bits)

    def next_token(self, inputs, temperature, u30):
        """Integer sampling: softmax of logits * round(256 / temperature) / 256 in Q15,
        then the first token whose cumulative probability exceeds u30 >> 15."""
        raw = forward(self.ctx, self.flat, np.asarray(inputs))[-1]
        inv_t = round(256 / temperature)
        z = (raw * inv_t + 128) >> 8
        probs = ops.softmax(z, self.policy.logits.frac_bits)
        cum = np.cumsum(probs)
        hit = np.nonzero(cum > (u30 >> 15))[0]
        return int(hit[0]) if len(hit) else int(np.argmax(probs))

    def float_params(self):
        return qformat.to_float(self.flat, self.policy.weights.frac_bits)

    def state(self):
        p = self.policy
        meta = {"kind": "int", "policy": p.describe(), "p1": self.opt.p1, "p2": self.opt.p2,
                "stalled_total": self.stalled_total, "saturations": self.ctx.saturations,
                "steps_taken": self.steps_taken}
        return meta, {"params": self.store, **self.opt.arrays()}

    def load_state(self, meta, arrays):
        self.store = arrays["params"].astype(np.int64)
        for name in self.opt.arrays():  # the arrays this policy's optimizer has
            setattr(self.opt, _OPT_FIELD[name], arrays[name].astype(np.int64))
        self.opt.p1, self.opt.p2 = meta["p1"], meta["p2"]
        self.stalled_total = meta["stalled_total"]
        self.ctx.saturations = dict(meta["saturations"])
        self.steps_taken = meta["steps_taken"]

    def summary_extra(self):
        return {
            "format": self.policy.weights.name,
            "rounding": self.policy.rounding,
            "policy": self.policy.describe(),
            "saturations": dict(sorted(self.ctx.saturations.items())),
            "stalled_update_rate": self.stalled_total / max(1, self.steps_taken * N_PARAMS),
        }


_OPT_FIELD = {"adam_m": "m", "adam_v": "v", "adam_m_shift": "m_shift",
              "adam_v_shift": "v_shift", "kahan_comp": "comp"}
