"""Adam in integer arithmetic (docs/arithmetic.md, section 9): the moments, the step size,
the update's rounding modes and the weight store's saturation.

Speed (docs/BENCHMARKS.md, "Host training"): every line of IntAdam.step is a pass over the
N_PARAMS parameters, so the temporaries are few and reused (out=), both moments share one
(4,N) array, and the saturation checks of m, v and the store are bounds carried from step
to step. A common step (no strict, no block-scaled state) runs in int32 as the device does
(_step_int32: mul15 split in 15-bit halves; numpy's int32 shifts and multiplies take a
quarter of int64's instructions), keeping m and v as int32 rows; the general path, in
int64, takes every other step (experiments/hostperf/adam32check.py compares the two).
int_model.py re-exports these names.
"""

import math

import numpy as np

from qgpt import int_ops as ops
from qgpt import prng, qformat
from qgpt.int_ctx import _count_nonzero
from qgpt.int_shapes import ISQRT_NARROW_LIMIT, _copyto, isqrt_plus_one_int32
from qgpt.params import N_PARAMS
from qgpt.policy import ADAM_C1, ADAM_C2, KAHAN_BITS, M_LIMIT, R_FRAC, R_MAX, BlockFormat

DRAW_STEPS = 16  # stochastic rounding's draws are made for this many steps at once
DRAW_COUNTERS = np.arange(N_PARAMS, dtype=np.uint32)  # (N_PARAMS,) a draw's index in a step
KERNEL = qformat.QFormat(2, 30)  # a 32-bit format: the kernel range [-2**30, 2**30]


# Adam's constants as 0-d int64 arrays: numpy multiplies, adds and shifts a parameter
# buffer by those faster than by Python ints (no scalar conversion per call)
Q15_HALF, Q15_SHIFT = np.array(1 << 14, dtype=np.int64), np.array(15, dtype=np.int64)
B1_Q15, C1_Q15 = np.array((1 << 15) - ADAM_C1, dtype=np.int64), np.array(ADAM_C1, dtype=np.int64)
B2_Q15, C2_Q15 = np.array((1 << 15) - ADAM_C2, dtype=np.int64), np.array(ADAM_C2, dtype=np.int64)
# the factors of the rows m, v, g, gs^2 of IntAdam's (4,N) array: b1 and b2 for the
# moments, 1 - b1 and 1 - b2 for their inputs
MOMENT_FACTORS = np.array([[B1_Q15], [B2_Q15], [C1_Q15], [C2_Q15]])
ONE = np.array(1, dtype=np.int64)
R_CLAMP_ROW = np.full(N_PARAMS, R_MAX << R_FRAC, dtype=np.int64)  # 9.4's clamp, at every parameter
R_CLAMP_ROW.flags.writeable = False
# the int32 path (IntAdam._step_int32): mul15's split, as the device computes it
# (arithmetic.md, section 9), on 32-bit lanes
I32 = np.dtype(np.int32)
I32_15, I32_LOW15 = np.array(15, dtype=np.int32), np.array(0x7FFF, dtype=np.int32)
I32_HALF15 = np.array(1 << 14, dtype=np.int32)
MOMENT_FACTORS_I32 = MOMENT_FACTORS.astype(np.int32)
_I32_SHIFT = [np.array(s, dtype=np.int32) for s in range(32)]
_I32_HALF = [np.array((1 << s) >> 1, dtype=np.int32) for s in range(32)]
_U32_SHIFT = [np.array(s, dtype=np.uint32) for s in range(32)]
_U32_ONE = np.array(1, dtype=np.uint32)
B1, B2 = (1 << 15) - ADAM_C1, (1 << 15) - ADAM_C2  # (Python ints)
INT32_TOP, UINT32_TOP = (1 << 31) - 1, (1 << 32) - 1
ISQRT_DEN_MAX = 46341  # isqrt(v) + 1 for v < 2**31
R_CLAMP_ROW_U32 = R_CLAMP_ROW.astype(np.uint32)
R_CLAMP_ROW_U32.flags.writeable = False
GS_ABS_MAX = (1 << 15) - 1  # 9.2's gs: |gs| <= this on the int32 path (else the general one)


def mul_q15(x, c, out=None):
    """round half up of x * c / 2**15 for |x| <= 2**31, 0 <= c < 2**15: a new array, or
    out (which may be x itself).

    The device splits x into 15-bit halves to stay in int32 (arithmetic.md, "Adam");
    the result is the same integer, which int64 computes directly.
    """
    if out is x:  # (in-place operators: a little less call overhead than out=)
        x *= c
        y = x
    else:
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
        # the int32 path (_step_int32) keeps wide m and v as int32 rows of _x32 while
        # _wide32; m and v (properties) are then int64 copies of them
        self._wide32 = False
        self._x32 = None  # (4,N) int32: m, v, g, gs^2
        self._int32_policy = None  # _int32_path's test of the policy, once (below)
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
        self._g2_row = self._gg[1]  # gs^2
        if self.m_shift is None and self.v_shift is None:
            self.m, self.v = self._m_row, self._v_row
        self._m_max = self._v_max = 0  # max|m| and max v of the rows, or bounds of them
        self._store, self._store_max = None, None  # the store last updated, a bound of its |w|
        self._draws = (0, None)  # (first step, (DRAW_STEPS,N) uint32): _rounding_draws
        self._draw_scratch = None  # (DRAW_STEPS,N) uint32: hash30's shifted words
        # (3,N) scratch rows for step's temporaries: the same memory every step, so that
        # its arrays and isqrt's tables stay in the cache between steps
        self._scratch = np.empty((3, N_PARAMS), np.int64)
        # its rows, and their uint64 views, made once (a view costs about what a small
        # numpy call does)
        self._rows = tuple(self._scratch)
        self._rows_u64 = tuple(self._scratch.view(np.uint64))
        self._int32_policy = self._int32_path(None)

    @property
    def m(self):
        """adam_m as stored (int64; a copy while the int32 path holds it)."""
        return self._x32[0].astype(np.int64) if self._wide32 else self._m

    @m.setter
    def m(self, value):
        self._leave_int32()
        self._m = value

    @property
    def v(self):
        """adam_v as stored (int64; a copy while the int32 path holds it)."""
        return self._x32[1].astype(np.int64) if self._wide32 else self._v

    @v.setter
    def v(self, value):
        self._leave_int32()
        self._v = value

    def _leave_int32(self):
        """m and v back in int64 arrays of their own (the general path's)."""
        if self._wide32:
            self._wide32 = False
            self._m, self._v = self._x32[0].astype(np.int64), self._x32[1].astype(np.int64)

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
        if self._int32_policy and not ctx.strict:  # (_int32_path, without a call)
            stalled = self._step_int32(store, g, step, alpha, ctx)
            if stalled is not None:
                return stalled
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
        a = np.abs(m, out=self._rows[0])
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
        # isqrt(v) + 1; v <= v_wide.hi, a 32-bit signed format's: below narrow's limit
        den = ops.isqrt_plus_one(v, out=self._rows[1],
                                 narrow=p.v_wide.hi < ISQRT_NARROW_LIMIT)
        e = p.adam_e  # r = |m| * 2**e / den, e >= 0 by the validity rule
        if ctx.strict:  # the device divides only below the clamp (9.4)
            below = a * (1 << e) < den << (R_FRAC + 2)
            ctx.check("adam", "(|m| << e) + den/2", (a << e) + (den >> 1), where=below)
            ctx.check("adam", "den << 15", den << (R_FRAC + 2))
        a <<= ops._SHIFT[e]
        r = a
        r += np.right_shift(den, ONE, out=self._rows[2])
        # both operands are >= 0: divided as uint64 (the same quotient; numpy's unsigned
        # division skips the signed one's sign fix-ups, about half its cost), and clamped
        # by an (N,) array of the clamp (numpy's minimum of two equal shapes is vectorised,
        # with a 0-d operand it is not: a third of the cost)
        r_u64 = self._rows_u64[0] if r is self._rows[0] else r.view(np.uint64)
        r_u64 //= self._rows_u64[1]  # den is the row isqrt_plus_one filled
        np.minimum(r, R_CLAMP_ROW, out=r)
        delta = r  # r * alpha, with the sign of m: Q(alpha_frac + 13), |delta| <= 2**30
        delta *= np.int64(alpha)  # (a numpy scalar: no conversion of a Python int)
        delta *= np.sign(m, out=self._rows[2])
        ctx.check("adam", "delta", delta, -(1 << 30), 1 << 30)
        # 9.6: the state as stored (block-scaled: v through its square root)
        self.m, self.v = m, v
        if self.m_shift is not None:
            self.m, self.m_shift = block_encode(m, p.adam_m, signed=True)
        if self.v_shift is not None:
            self.v, self.v_shift = block_encode(den - 1, p.adam_v, signed=False)  # the root
        return self._update(store, delta, step, ctx, alpha)

    def _int32_path(self, ctx):
        """True if _step_int32 may take this step: no strict (it checks the device's
        intermediates), no block-scaled state, g at m's fractional bits (gm = g), gs a
        right shift of g, and 9.4's e <= 15 (its int32 form, below). ctx None: the
        policy's part alone (step() keeps it)."""
        p = self.p
        return ((ctx is None or not ctx.strict) and self.m_shift is None and self.v_shift is None
                and p.pgrads.frac_bits == p.m_wide.frac_bits and p.pgrads.bits <= 32
                and 0 <= p.pgrads.frac_bits - p.sqrt_frac <= 31 and p.adam_e <= 15)

    def _step_int32(self, store, g, step, alpha, ctx):
        """9.1 to 9.5 in int32, as the device computes them (arithmetic.md, section 9):
        mul15 split into 15-bit halves, isqrt, the ratio clamped before its division, the
        update's rounding; the same integers as the int64 lines of step(), with a
        quarter of their instructions for a shift or a multiply. Returns the number of
        stalled updates, or None (nothing changed) where gs would clip: the general path
        then saturates it.

        int32 holds every value: g (pgrads, at most 32 bits), |gs| <= 2**15 - 1 (checked
        here), mul15's two products (< 2**30 each), m + the new term (< 1.15 * 2**30 for
        |m| <= 2**30 - 1), v + the new term (< 2**31 for v < 2**31), den = isqrt(v) + 1
        <= 46341; |m| clamped to den << (15 - e) first (the ratio is then 2**15, the
        clamp, exactly), so that |m| << e <= den << 15 < 2**31; |delta| < 2**30, and
        delta plus a rounding addend below 2**u <= 2**30."""
        p = self.p
        x = self._x32
        if x is None:  # (4,N) m, v, g, gs^2; (4,N) high halves; (3,N) scratch rows
            x = self._x32 = np.zeros((4, N_PARAMS), np.int32)
            self._h32 = np.empty((4, N_PARAMS), np.int32)
            self._s32 = np.empty((3, N_PARAMS), np.int32)
            self._s32_rows = tuple(self._s32)
            self._s32_u32 = tuple(self._s32.view(np.uint32))
        g32, gs = x[2], x[3]
        _copyto(g32, g, casting="unsafe")  # within int32: pgrads has at most 32 bits
        g_hi, g_lo = int(np.maximum.reduce(g32)), int(np.minimum.reduce(g32))
        s = p.pgrads.frac_bits - p.sqrt_frac  # 9.2's gs = rnd(g, s)
        half = (1 << s) >> 1
        gs_hi, gs_lo = (g_hi + half) >> s, (g_lo + half) >> s  # rnd grows with g
        if gs_hi > GS_ABS_MAX or gs_lo < -GS_ABS_MAX:
            return None  # gs clips (or is -2**15): the general path
        if not self._wide32:  # the state from the general path, a load, or a new run
            m_old, v_old = self._m, self._v
            m_abs = max(int(np.maximum.reduce(m_old)), -int(np.minimum.reduce(m_old)))
            if m_abs > p.m_limit or int(np.minimum.reduce(v_old)) < 0 or \
                    int(np.maximum.reduce(v_old)) > p.v_wide.hi:
                return None  # out of its range (a loaded state): the general path clips it
            np.copyto(x[0], m_old, casting="unsafe")
            np.copyto(x[1], v_old, casting="unsafe")
            self._wide32 = True
            self._m = self._v = None
            self._m_max = self._v_max = None
        if s == 0:
            np.copyto(gs, g32)
        elif g_hi <= INT32_TOP - half:  # g + half within int32
            np.add(g32, _I32_HALF[s], out=gs)
            gs >>= _I32_SHIFT[s]
        else:  # ((g >> (s - 1)) + 1) >> 1: the same rounding, no overflow
            np.right_shift(g32, _I32_SHIFT[s - 1], out=gs)
            gs += _I32_SHIFT[1]
            gs >>= _I32_SHIFT[1]
        gs *= gs
        g2_max = max(gs_hi * gs_hi, gs_lo * gs_lo)
        # 9.1, 9.2: mul15(x, c) = (x >> 15) * c + (((x & 0x7FFF) * c + 2**14) >> 15) on the
        # rows m, v, g, gs^2 with their factors, then m = row 0 + row 2, v = row 1 + row 3
        h = np.right_shift(x, I32_15, out=self._h32)
        x &= I32_LOW15
        x *= MOMENT_FACTORS_I32
        x += I32_HALF15
        x >>= I32_15
        h *= MOMENT_FACTORS_I32
        h += x
        np.add(h[:2], h[2:], out=x[:2])
        m, v = x[0], x[1]
        g_max = max(g_hi, -g_lo)
        # _q15_bound's, inline (Python ints; a call costs more than the arithmetic)
        m_bound = None if self._m_max is None else \
            ((self._m_max * B1) >> 15) + ((g_max * ADAM_C1) >> 15) + 2
        v_bound = None if self._v_max is None else \
            ((self._v_max * B2) >> 15) + ((g2_max * ADAM_C2) >> 15) + 2
        rows, rows_u32 = self._s32_rows, self._s32_u32
        a = np.abs(m, out=rows[0])
        self._m_max = int(np.maximum.reduce(a)) if m_bound is None or m_bound > p.m_limit \
            else m_bound
        if self._m_max > p.m_limit:
            np.copyto(m, ctx.clip(m, p.adam_m_range, "adam.m"))
            self._m_max = p.m_limit
            np.abs(m, out=a)
        else:
            ctx.saturations.setdefault("adam.m", 0)
        ctx.saturations.setdefault("adam.gs", 0)
        self._v_max = int(np.maximum.reduce(v)) if v_bound is None or v_bound > p.v_wide.hi \
            else v_bound
        if self._v_max > p.v_wide.hi:  # v >= 0: only the top can clip
            np.copyto(v, ctx.clip(v, p.v_wide, "adam.v"))
            self._v_max = p.v_wide.hi
        else:
            ctx.saturations.setdefault("adam.v", 0)
        # 9.3, 9.4: den = isqrt(v) + 1; r = min(((|m| << e) + den/2) // den, 2**15), as
        # ((min(|m|, den << (15 - e)) << e) + den/2) // den (uint32: every value >= 0)
        e = p.adam_e
        den = isqrt_plus_one_int32(v, rows_u32[1], rows[2])
        a_u32 = rows_u32[0]
        clamp_after = (self._m_max << e) + (ISQRT_DEN_MAX >> 1) <= UINT32_TOP
        if not clamp_after:  # (else no |m| << e leaves uint32: clamped after the division)
            np.minimum(a_u32, np.left_shift(den, _U32_SHIFT[15 - e], out=rows_u32[2]),
                       out=a_u32)
        a_u32 <<= _U32_SHIFT[e]
        a_u32 += np.right_shift(den, _U32_ONE, out=rows_u32[2])
        a_u32 //= den
        if clamp_after:  # (an (N,) clamp: numpy's minimum with a 0-d operand is not vectorised)
            np.minimum(a_u32, R_CLAMP_ROW_U32, out=a_u32)
        delta = a  # 9.5: r * alpha with the sign of m
        delta *= np.int32(alpha)
        delta *= np.sign(m, out=rows[1])
        return self._update_int32(store, delta, step, ctx, alpha)

    def _update_int32(self, store, delta, step, ctx, alpha):
        """_update for the int32 path's delta: nearest, floor and stochastic in int32;
        the other modes through _update on an int64 copy."""
        p, u = self.p, self.p.update_shift
        d = self._s32_rows[2]
        if p.rounding == "nearest" and u > 0:
            np.add(delta, _I32_HALF[u], out=d)
            d >>= _I32_SHIFT[u]
        elif p.rounding == "stochastic" and 0 < u <= 30:
            np.add(delta, self._rounding_draws(step, 30 - u).view(np.int32), out=d)
            d >>= _I32_SHIFT[u]
        elif p.rounding == "floor" and u > 0:
            np.right_shift(delta, _I32_SHIFT[u], out=d)
        else:
            return self._update(store, delta.astype(np.int64), step, ctx, alpha)
        store -= d
        self._saturate_store(store, alpha, ctx)
        return int(_count_nonzero(delta)) - int(_count_nonzero(d))  # count_stalled's

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
        g2 = ops.rnd(g, gs_shift, out=self._g2_row)
        g2 *= g2
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
            d = np.add(delta, self._rounding_draws(step, 30 - u), out=self._rows[2])
            d >>= ops._SHIFT[u]
        elif p.rounding == "nearest":
            d = ops.rnd(delta, u, out=self._rows[2])
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
            keys = prng.keys(self.seed, prng.STREAM_ROUND, range(step, step + DRAW_STEPS))
            if rows is None:  # the same two buffers for every batch: no allocation
                rows = np.empty((DRAW_STEPS, N_PARAMS), np.uint32)
                self._draw_scratch = np.empty_like(rows)
            np.add(np.array(keys, dtype=np.uint32)[:, None], DRAW_COUNTERS, out=rows)
            # keys are 30-bit: key + counter is below 2**30 unless a key is within N_PARAMS
            # of the top (hash30's mask then matters)
            prng.hash30_uint32(rows, self._draw_scratch,
                               below_2_30=max(keys) + N_PARAMS - 1 <= prng.M30)
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
    return int(_count_nonzero(delta)) - int(_count_nonzero(d))
