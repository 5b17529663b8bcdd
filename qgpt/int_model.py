"""microgpt's forward, backward and Adam in integer arithmetic (docs/arithmetic.md).

Mirrors float_model.py line by line with int_ops. No float is used in a
training step; floats appear only to report the loss (from the model's own
logits, in float64) and to convert.
"""

import math

import numpy as np

from qgpt import int_ops as ops
from qgpt import prng, qformat
from qgpt.float_model import split_tokens
from qgpt.int_losses import reported_losses, reported_losses_of_steps
from qgpt.params import N_EMBD, N_PARAMS, QKV, SLOTS, stacked, views
from qgpt.policy import (
    ADAM_C1,
    ADAM_C2,
    KAHAN_BITS,
    M_LIMIT,
    R_FRAC,
    R_MAX,
    BlockFormat,
    from_train_config,
)

CHECKED_AFTER_A_CLIP = 8  # steps without speculation after one that clipped
DRAW_STEPS = 16  # stochastic rounding's draws are made for this many steps at once
DRAW_COUNTERS = np.arange(N_PARAMS, dtype=np.uint32)  # (N_PARAMS,) a draw's index in a step
KERNEL = qformat.QFormat(2, 30)  # a 32-bit format: the kernel range [-2**30, 2**30]


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
    att, probs = ops.attention_forward(ctx, q, k, v)
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
    probs_out, logit_max, exp_sums, below_max = ops.cross_entropy_forward(ctx, logits, targets,
                                                                          sums=True)
    cache = dict(inputs=inputs, targets=targets, x0=x0, rs0=rs0, x1=x1, rs1=rs1, q=q, k=k, v=v,
                 probs=probs, att=att, x3=x3, rs3=rs3, h=h, hr=hr, x4=x4, probs_out=probs_out,
                 logit_max=logit_max, exp_sums=exp_sums, below_max=below_max)
    return logits, cache


def backward(ctx, flat, c, dflat, p=None, d=None):
    """Add the integer gradient of the mean loss into dflat (param-grad format).
    p, d: weight_views of flat and dflat, if the caller keeps them."""
    p = weight_views(flat) if p is None else p
    d = weight_views(dflat) if d is None else d
    gf = ctx.p.grads
    dlogits = ops.cross_entropy_backward(ctx, c["probs_out"], c["targets"])
    dx4 = ops.linear_backward(ctx, dlogits, c["x4"], p["lm_head"], d["lm_head"], "lm_head")
    # MLP block: x4 = fc2(relu(fc1(rmsnorm(x2)))) + x2
    dmlp, dx2 = ops.add_backward(dx4)
    dhr = ops.linear_backward(ctx, dmlp, c["hr"], p["layer0.mlp_fc2"], d["layer0.mlp_fc2"],
                              "mlp_fc2")
    dh = ops.relu_backward(dhr, c["h"])
    dx3 = ops.linear_backward(ctx, dh, c["x3"], p["layer0.mlp_fc1"], d["layer0.mlp_fc1"],
                              "mlp_fc1")
    dx2 = ops.add_forward(ctx, dx2, ops.rmsnorm_backward(ctx, dx3, c["x3"], c["rs3"]), gf, "dx2")
    # attention block: x2 = wo(attention(q, k, v)) + x0, with q, k, v from rmsnorm(x0)
    dproj, dx0 = ops.add_backward(dx2)
    datt = ops.linear_backward(ctx, dproj, c["att"], p["layer0.attn_wo"], d["layer0.attn_wo"],
                               "attn_wo")
    dq, dk, dv = ops.attention_backward(ctx, datt, c["q"], c["k"], c["v"], c["probs"])
    # q, k, v = [wq; wk; wv] x1: the stacked weight gradient at once, then the three
    # input-gradient paths, each saturated, added in the order q, k, v
    dqkv = np.concatenate([dq, dk, dv], axis=1)
    dpaths = ops.linear_backward(ctx, dqkv, c["x1"], p["qkv"], d["qkv"], "qkv", paths=3)
    dx1 = ops.add_forward(ctx, ops.add_forward(ctx, dpaths[0], dpaths[1], gf, "dx1"),
                          dpaths[2], gf, "dx1")
    dx0 = ops.add_forward(ctx, dx0, ops.rmsnorm_backward(ctx, dx1, c["x1"], c["rs1"]), gf, "dx0")
    # embedding: x0 = rmsnorm(wte[token] + wpe[t])
    dx = ops.rmsnorm_backward(ctx, dx0, c["x0"], c["rs0"])
    ops.embedding_backward(ctx, dx, c["inputs"], d["wte"], d["wpe"])


# --- Adam in integers ---


# Adam's constants as 0-d int64 arrays: numpy multiplies, adds and shifts a parameter
# buffer by those faster than by Python ints (no scalar conversion per call)
Q15_HALF, Q15_SHIFT = np.array(1 << 14, dtype=np.int64), np.array(15, dtype=np.int64)
B1_Q15, C1_Q15 = np.array((1 << 15) - ADAM_C1, dtype=np.int64), np.array(ADAM_C1, dtype=np.int64)
B2_Q15, C2_Q15 = np.array((1 << 15) - ADAM_C2, dtype=np.int64), np.array(ADAM_C2, dtype=np.int64)
# the factors of the rows m, v, g, gs^2 of IntAdam's (4,N) array: b1 and b2 for the
# moments, 1 - b1 and 1 - b2 for their inputs
MOMENT_FACTORS = np.array([[B1_Q15], [B2_Q15], [C1_Q15], [C2_Q15]])
ONE, R_CLAMP = np.array(1, dtype=np.int64), np.array(R_MAX << R_FRAC, dtype=np.int64)


def mul_q15(x, c, out=None):
    """round half up of x * c / 2**15 for |x| <= 2**31, 0 <= c < 2**15: a new array, or
    out (which may be x itself).

    The device splits x into 15-bit halves to stay in int32 (arithmetic.md, "Adam");
    the result is the same integer, which int64 computes directly.
    """
    y = np.multiply(x, c, out=out)
    y += Q15_HALF
    y >>= Q15_SHIFT
    return y


def mul_q15_checked(ctx, x, c, tensor, out=None):
    """mul_q15, with ctx.strict checking the device's int32 form: x split as
    (x >> 15) * c + (((x & 0x7FFF) * c + 2**14) >> 15), each product within int32."""
    if ctx.strict:
        ctx.check("adam", f"({tensor} >> 15) * {c}", (x >> 15) * c)
        ctx.check("adam", f"({tensor} & 0x7FFF) * {c}", (x & 0x7FFF) * c + (1 << 14))
    return mul_q15(x, c, out)


def alpha_at(policy, step, num_steps, p1, p2):
    """The step size lr_t * sqrt(1 - b2^t) / (1 - b1^t) with alpha_frac bits, t = step + 1.

    Exact integer arithmetic on unbounded ints (a scalar a step: plain Python on the
    device too). p1, p2 are b1^t and b2^t in Q30 from beta_powers.
    """
    lr_t = policy.lr_q30 * (num_steps - step) // num_steps
    num = _isqrt_int(((1 << 30) - p2) << 30)  # sqrt(1 - b2^t) in Q30
    den = (1 << 30) - p1  # 1 - b1^t in Q30
    x = lr_t * num << policy.alpha_frac
    y = den << 30
    return (2 * x + y) // (2 * y)


def beta_powers(p1, p2):
    """(b1^t, b2^t) -> (b1^(t+1), b2^(t+1)) in Q30, each product rounded half up."""
    p1 = (p1 * ((1 << 15) - ADAM_C1) + (1 << 14)) >> 15
    p2 = (p2 * ((1 << 15) - ADAM_C2) + (1 << 14)) >> 15
    return p1, p2


def _q15_bound(x_max, c):
    """A bound of |mul_q15(x, c)| for every |x| <= x_max."""
    return ((x_max * int(c)) >> 15) + 1


def _isqrt_int(n):
    return math.isqrt(n)


def block_encode(x, fmt, signed):
    """Block-scaled storage of wide values x (section 9.6): (mantissas, shift per block).
    Per block: the smallest shift k whose rounded maximum fits the mantissa (signed:
    |q| <= 2**(B-1) - 1; unsigned: q <= 2**B - 1), each value rounded half up."""
    top = (1 << (fmt.bits - 1)) - 1 if signed else (1 << fmt.bits) - 1
    nb, n = fmt.n_blocks(), fmt.block
    padded = np.zeros(nb * n, dtype=np.int64)
    padded[: x.size] = x
    blocks = padded.reshape(nb, n)
    big = np.abs(blocks).max(axis=1)
    k = np.maximum(ops.bit_length(big) - ops.bit_length(np.int64(top)), 0)
    k = k + (((big + ((1 << k) >> 1)) >> k) > top)
    q = (blocks + ((1 << k) >> 1)[:, None]) >> k[:, None]
    return q.reshape(-1)[: x.size], k


def block_decode(q, k, fmt):
    """The wide values q << k of block-scaled storage."""
    return q << np.repeat(k, fmt.block)[: q.size]


class IntAdam:
    """Adam of section 9: m and v (wide, or block-scaled mantissas with a shift per
    block), and the compensation buffer of rounding=kahan."""

    M_LIMIT = M_LIMIT  # the symmetric limit of a 32-bit m (section 3.1)

    def __init__(self, policy, seed):
        self.p, self.seed = policy, seed
        self.m = np.zeros(N_PARAMS, dtype=np.int64)  # (N_PARAMS,) adam_m (stored form)
        self.v = np.zeros(N_PARAMS, dtype=np.int64)  # (N_PARAMS,) adam_v (stored form)
        self.m_shift = self._shifts(policy.adam_m)  # (blocks,) or None
        self.v_shift = self._shifts(policy.adam_v)
        self.comp = np.zeros(N_PARAMS, dtype=np.int64) if policy.rounding == "kahan" else None
        self.p1 = self.p2 = 1 << 30  # beta1^t, beta2^t in Q30 (t = steps taken)
        # wide m and v and their inputs g and gs^2 as the rows of one (4,N) array: the
        # four multiply-and-rounds of both moments in three numpy calls instead of twelve
        self._mvgg = np.zeros((4, N_PARAMS), np.int64)
        self._mv, self._gg = self._mvgg[:2], self._mvgg[2:]
        self._m_row, self._v_row = self._mv[0], self._mv[1]
        self._g_row = self._gg[0]  # gradient_buffer(): the model's gradient, read in place
        if self.m_shift is None and self.v_shift is None:
            self.m, self.v = self._m_row, self._v_row
        self._m_max = self._v_max = 0  # max|m| and max v of the rows, or bounds of them
        self._store, self._store_max = None, None  # the store last updated, a bound of its |w|
        self._draws = (0, None)  # (first step, (DRAW_STEPS,N) uint32): _rounding_draws
        # (3,N) scratch rows for step's temporaries: the same memory every step, so that
        # its arrays and isqrt's tables stay in the cache between steps
        self._scratch = np.empty((3, N_PARAMS), np.int64)

    @staticmethod
    def _shifts(fmt):
        return np.zeros(fmt.n_blocks(), dtype=np.int64) if isinstance(fmt, BlockFormat) else None

    def wide(self):
        """(m, v) as Adam computes with them (section 9.6's decoding)."""
        m, v = self.m, self.v
        if self.m_shift is not None:
            m = block_decode(m, self.m_shift, self.p.adam_m)
        if self.v_shift is not None:
            v = block_decode(v, self.v_shift, self.p.adam_v) ** 2
        return m, v

    def arrays(self):
        """The optimizer's state arrays in the order of checkpoints and the hash (9.6)."""
        out = {"adam_m": self.m, "adam_v": self.v}
        if self.m_shift is not None:
            out["adam_m_shift"] = self.m_shift
        if self.v_shift is not None:
            out["adam_v_shift"] = self.v_shift
        if self.comp is not None:
            out["kahan_comp"] = self.comp
        return out

    def step(self, store, g, step, num_steps, ctx):
        """Update the weight store (data or master raw ints) in place; returns the
        number of updates that rounded to zero.

        Speed: every line is a pass over N_PARAMS int64 (about fifty a step), so the
        temporaries are few and reused (out=)."""
        p = self.p
        self.p1, self.p2 = beta_powers(self.p1, self.p2)
        alpha = alpha_at(p, step, num_steps, self.p1, self.p2)
        ctx.check("adam", "g", g)
        m_old, v_old = self.wide()
        # 9.1: m = b1 m + (1 - b1) g, g brought to m's fractional bits, m saturated
        # symmetrically (|m| is kept: 9.4 divides it)
        shift = p.pgrads.frac_bits - p.m_wide.frac_bits
        gm = g if shift == 0 else ctx.req(g, shift, KERNEL, "adam.gm")
        gs_shift = p.pgrads.frac_bits - p.sqrt_frac  # 9.2's gs = rnd(g, gs_shift)
        stacked = self._stacked(m_old, v_old, gm, g, gs_shift, ctx)
        bounds = (None, None)  # known bounds of max|m| and max v (_stacked), else None
        if stacked is not None:  # both moments at once (no strict, no block, gs within)
            m, v, bounds = stacked
        else:
            m = mul_q15_checked(ctx, m_old, B1_Q15, "m")
            work = mul_q15_checked(ctx, gm, C1_Q15, "g")  # a scratch array from here on
            m += work
            ctx.check("adam", "m", m)
        a = np.abs(m, out=self._scratch[0])
        if bounds[0] is None or bounds[0] > p.m_limit:
            self._m_max = int(np.maximum.reduce(a))
        else:
            self._m_max = bounds[0]  # no |m| can exceed it: no pass over m
        if self._m_max > p.m_limit:
            m = ctx.clip(m, p.adam_m_range, "adam.m")
            a = np.abs(m)
        else:
            ctx.saturations.setdefault("adam.m", 0)
        if stacked is not None:
            ctx.saturations.setdefault("adam.gs", 0)
        else:
            # 9.2: v = b2 v + (1 - b2) gs^2, gs = g as a 16-bit word with Fh = Fv/2 bits
            gs = ctx.sat(ops.rnd(g, gs_shift), p.gs_word, "adam.gs")
            g2 = ctx.check("adam", "gs*gs", np.multiply(gs, gs, out=work))
            v = mul_q15_checked(ctx, v_old, B2_Q15, "v")
            v += mul_q15_checked(ctx, g2, C2_Q15, "gs*gs", out=g2)
            ctx.check("adam", "v", v)
        if bounds[1] is None or bounds[1] > p.v_wide.hi:
            self._v_max = int(np.maximum.reduce(v))
        else:
            self._v_max = bounds[1]
        if self._v_max > p.v_wide.hi:  # v >= 0: only the top can clip
            v = ctx.sat(v, p.v_wide, "adam.v")
        else:
            ctx.saturations.setdefault("adam.v", 0)
        # 9.3-9.4: r = m / (sqrt(v) + eps) with eps one step of sqrt(v), clamped to +-R_MAX,
        # in Q.13. The device tests a * 2**e >= den * 2**15 first to stay in int32; clamping
        # the quotient gives the same integer.
        den = ops.isqrt_plus_one(v, out=self._scratch[1])  # isqrt(v) + 1
        e = p.adam_e  # r = |m| * 2**e / den, e >= 0 by the validity rule
        if ctx.strict:  # the device divides only below the clamp (9.4)
            below = a * (1 << e) < den << (R_FRAC + 2)
            ctx.check("adam", "(|m| << e) + den/2", (a << e) + (den >> 1), where=below)
            ctx.check("adam", "den << 15", den << (R_FRAC + 2))
        r = np.left_shift(a, ops._SHIFT[e], out=a)
        r += np.right_shift(den, ONE, out=self._scratch[2])
        np.floor_divide(r, den, out=r)
        np.minimum(r, R_CLAMP, out=r)
        delta = r  # r * alpha, with the sign of m: Q(alpha_frac + 13), |delta| <= 2**30
        delta *= alpha
        delta *= np.sign(m, out=self._scratch[2])
        ctx.check("adam", "delta", delta, -(1 << 30), 1 << 30)
        # 9.6: the state as stored (block-scaled: v through its square root)
        self.m, self.v = m, v
        if self.m_shift is not None:
            self.m, self.m_shift = block_encode(m, p.adam_m, signed=True)
        if self.v_shift is not None:
            self.v, self.v_shift = block_encode(den - 1, p.adam_v, signed=False)  # the root
        return self._update(store, delta, step, ctx, alpha)

    def _stacked(self, m_old, v_old, gm, g, gs_shift, ctx):
        """9.1 and 9.2's moments as the rows of self._mv: (m, v, bounds), or None where the
        general path must run: with strict (it checks the device's int32 halves), with
        block-scaled state, or when gs clips (gs = rnd(g, gs_shift) clips nothing when
        every gs^2 <= hi^2; gs = lo exactly goes to the general path, which finds nothing
        to clip).

        bounds: upper bounds of max|m| and max v, or None where unknown. The step knows
        last step's maxima (or bounds) of the rows and its g's largest gs^2, and
        |mul_q15(x, c)| <= (X * c >> 15) + 1 for |x| <= X, so that saturation's check of m
        and v needs no pass while the bounds stay within their formats."""
        if ctx.strict or self.m_shift is not None or self.v_shift is not None:
            return None
        mv, gg = self._mv, self._gg
        g2 = ops.rnd(g, gs_shift, out=gg[1])
        np.multiply(g2, g2, out=g2)
        g2_max = int(np.maximum.reduce(g2))
        if g2_max > self.p.gs_word.hi * self.p.gs_word.hi:
            return None
        if gm is not self._g_row:
            np.copyto(self._g_row, gm)
        m_max, v_max = self._m_max, self._v_max
        if m_old is not self._m_row:  # a loaded or clipped state: into the stacked rows
            np.copyto(self._m_row, m_old)
            m_max = None
        if v_old is not self._v_row:
            np.copyto(self._v_row, v_old)
            v_max = None
        # m * b1, v * b2, g * (1 - b1), gs^2 * (1 - b2), each rounded; then the sums
        mul_q15(self._mvgg, MOMENT_FACTORS, out=self._mvgg)
        mv += gg
        # |g| from the largest |gs| = isqrt(g2_max): gs = rnd(g, k), |g| < (|gs| + 1) << k
        g_max = (_isqrt_int(g2_max) + 1) << max(gs_shift, 0) if gm is g else None
        bounds = (None if m_max is None or g_max is None else
                  _q15_bound(m_max, B1_Q15) + _q15_bound(g_max, C1_Q15),
                  None if v_max is None else
                  _q15_bound(v_max, B2_Q15) + _q15_bound(g2_max, C2_Q15))
        return self._m_row, self._v_row, bounds

    def gradient_buffer(self):
        """A zeroed (N_PARAMS,) int64 buffer for the model's gradient: step() then reads it
        in place, with no copy (and leaves it overwritten: it is its scratch space)."""
        self._g_row.fill(0)
        return self._g_row

    def _update(self, store, delta, step, ctx, alpha=None):
        """9.5 and 9.6: the weight store minus delta rounded by the run's mode (alpha: the
        step size delta was made with, for the store's bound; None: no bound)."""
        p, u = self.p, self.p.update_shift
        if p.rounding == "kahan":
            return self._kahan(store, delta, ctx)
        if p.rounding == "pseudo":  # the low h bits of delta stand in for a random number
            h = u >> 1
            d = (delta + ((delta & ((1 << h) - 1)) << (u - h))) >> u
        elif p.rounding == "stochastic" and 0 < u <= 30:  # qformat.shift_mode's
            d = np.add(delta, self._rounding_draws(step, 30 - u), out=self._scratch[2])
            d >>= ops._SHIFT[u]
        elif p.rounding == "nearest":
            d = ops.rnd(delta, u, out=self._scratch[2])
        else:
            rand = None
            if p.rounding == "stochastic":
                rand = prng.draws(prng.key(self.seed, prng.STREAM_ROUND, step), 0, N_PARAMS)
            d = qformat.shift_mode(delta, u, p.rounding, rand)
        if ctx.strict:  # delta plus the rounding's addend; store - d where the device forms it
            ctx.check("adam", "delta + rounding", delta + (
                (1 << u) - 1 if p.rounding != "floor" and u > 0 else 0))
            formed = (d >= 0) | (store <= p.weight_store.hi + d)
            ctx.check("adam", "store - d", store - d, where=formed)
        store -= d
        self._saturate_store(store, alpha, ctx)
        return count_stalled(delta, d)

    def _rounding_draws(self, step, shift):
        """The draws of stochastic rounding at step, prng.draws(key(seed, ROUND, step), 0,
        N_PARAMS) >> shift (the same shift at every call: 30 - update_shift), as uint32: a
        row of those of DRAW_STEPS steps, made together (hash30 on uint32, as prng.draws:
        the same numbers, fewer numpy calls a step)."""
        first, rows = self._draws
        if rows is None or not first <= step < first + DRAW_STEPS:
            keys = [prng.key(self.seed, prng.STREAM_ROUND, s)
                    for s in range(step, step + DRAW_STEPS)]
            rows = prng.hash30(np.array(keys, dtype=np.uint32)[:, None] + DRAW_COUNTERS)
            rows >>= np.uint32(shift)
            first, self._draws = step, (step, rows)
        return rows[step - first]

    def _saturate_store(self, store, alpha, ctx):
        """sat(store, weight_store), counted into "weights". The store's largest |w| is
        carried from step to step as a bound (the step's |d| <= (2**15 alpha >> u) + 1,
        as |delta| <= 2**15 alpha in every rounding mode): a pass over the store only when
        the bound leaves the format, or for a store this optimizer has not updated last."""
        p, limit = self.p, self.p.weight_store.abs_limit
        bound = None
        if alpha is not None and store is self._store and self._store_max is not None:
            bound = self._store_max + ((alpha << 15) >> p.update_shift) + 1
        if bound is not None and bound <= limit and not ctx.strict:
            ctx.saturations.setdefault("weights", 0)
            self._store_max = bound
            return
        self._store, self._store_max = store, int(np.maximum.reduce(np.abs(store)))
        if self._store_max <= limit:
            ctx.saturations.setdefault("weights", 0)
        else:
            store[:] = ctx.clip(store, p.weight_store, "weights")
            self._store_max = None  # |lo| may exceed the limit: measured again next step

    def _kahan(self, store, delta, ctx):
        """t = (w << 8) + c - rnd(delta, u - 8); w = sat(rnd(t, 8)); c = t - (w << 8),
        clamped to 8 bits (section 9.6)."""
        p, k = self.p, KAHAN_BITS
        upd = qformat.shift_round(delta, p.update_shift - k)
        t = ctx.check("adam", "kahan t", (store << k) + self.comp - upd)
        w = ctx.sat(qformat.shift_round(t, k), p.weights, "weights")
        lim = 1 << (k - 1)
        self.comp = np.clip(t - (w << k), -lim, lim - 1)
        store[:] = w
        return count_stalled(delta, upd)


def count_stalled(delta, d):
    """How many updates delta != 0 rounded to d = 0. Every mode rounds delta = 0 to d = 0,
    so these are the non-zero deltas less the non-zero d's."""
    return int(np.count_nonzero(delta)) - int(np.count_nonzero(d))


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
        self.grad = self.opt.gradient_buffer()  # zeroed every step; Adam reads it in place
        self.grad_views = weight_views(self.grad)
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
                                   cache["below_max"]))
            self._deferred_counts.append(counts)
            return None
        loss, loss_q16 = reported_losses(logits, targets, self.policy.logits.frac_bits,
                                         cache["logit_max"], cache["exp_sums"],
                                         cache["below_max"])
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
        deferred to one by format (Ctx.defer), and again with every check where one of
        them would clip (or the unclipped values go out of a table's range). Both give
        the same integers and counts; after a redo, a few steps go straight to the
        checked path (a run that saturates often would pay twice)."""
        ctx, grad = self.ctx, self.grad
        if self._checked_steps == 0 and not ctx.strict:
            counts, clipped = dict(ctx.saturations), ctx.clipped
            ctx.defer()
            try:
                grad.fill(0)
                logits, cache = forward(ctx, flat, inputs, targets, p)
                backward(ctx, flat, cache, grad, p, self.grad_views)
                if ctx.deferred_clip_nothing():
                    return logits, cache
            except (ArithmeticError, IndexError, ValueError):
                pass  # unclipped values out of an op's range: the checked path decides
            ctx.deferred = None
            ctx.saturations, ctx.clipped = counts, clipped
            self._checked_steps = CHECKED_AFTER_A_CLIP
        self._checked_steps = max(0, self._checked_steps - 1)
        grad.fill(0)
        logits, cache = forward(ctx, flat, inputs, targets, p)
        backward(ctx, flat, cache, grad, p, self.grad_views)
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
