"""The integer training step's two reported losses, one step at a time or many at once.

Every step reports the float64 loss of its integer logits (losses.csv holds every step's)
and loss_q16, the device's integer loss (arithmetic.md, section 8). Neither feeds back into
training. A step's logits are small (T <= 16 rows of 27), so the per-step computation is
mostly numpy's call overhead: reported_losses_of_steps computes the losses of many steps
in one pass, the same floats and integers (tests/test_int_fast_paths.py compares the two).
"""

import math

import numpy as np

from qgpt.int_shapes import bit_length, exp_of_gap

# --- the integer loss (reported by the firmware; arithmetic.md, "loss"); int_ops re-exports
# these (ops.loss_q16, ops.ln_q16, ...) ---

LOG2_TABLE = [round(math.log2(1 + k / 64) * 65536) for k in range(65)]
LN2_Q15, LN2_Q16 = 22713, 45426


def ln_q16(s):
    """ln(s / 2**15) in Q16 for an int s >= 2**15 (a softmax denominator)."""
    n = s.bit_length() - 1
    mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)
    idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF
    lo, hi = LOG2_TABLE[idx], LOG2_TABLE[idx + 1]
    lg = lo + (((hi - lo) * rem + (1 << 14)) >> 15)  # log2 of the mantissa, Q16
    return (n - 15) * LN2_Q16 + ((lg * LN2_Q15 + (1 << 14)) >> 15)


def loss_q16(logits, targets, frac):
    """The step's mean loss in Q16 nats, from raw logits: per position
    (max - l_target) + ln(sum_j exp(l_j - max)), summed, then divided by T half up.
    Scalar code on unbounded ints (plain Python on the device)."""
    logits = np.asarray(logits, dtype=np.int64)
    mx = logits.max(axis=-1)
    sums = exp_of_gap(mx[:, None] - logits, frac).sum(axis=-1)  # exp_neg(logits - max)
    gaps = mx - logits[np.arange(len(targets)), targets]
    return loss_q16_of_sums(gaps.tolist(), sums.tolist(), frac)


def loss_q16_of_sums(gaps, sums, frac):
    """loss_q16 from each position's max - l_target and sum of exps (lists of ints; the
    training step has both from softmax_sums). ln_q16 inline: a step's T calls of it
    cost more than its arithmetic."""
    total, table = sum(gaps) << (16 - frac), LOG2_TABLE
    for s in sums:  # ln_q16(s)
        n = s.bit_length() - 1
        mant = s << (29 - n) if n <= 29 else s >> (n - 29)
        idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF
        lo = table[idx]
        lg = lo + (((table[idx + 1] - lo) * rem + (1 << 14)) >> 15)
        total += (n - 15) * LN2_Q16 + ((lg * LN2_Q15 + (1 << 14)) >> 15)
    t = len(gaps)
    if len(sums) != t:
        raise ValueError(f"loss_q16_of_sums: {t} gaps but {len(sums)} sums")
    return (2 * total + t) // (2 * t)


def reported_losses(logits, targets, frac, row_max, exp_sums, gaps=None):
    """A step's two reported losses from its raw logits (T,V) and softmax's row max and
    sum of exps (T,1) each (and the gaps row max - logits, if the caller has it): the mean
    -log softmax(logits)[target] in float64 from the integer logits, and loss_q16
    (arithmetic.md, section 8).

    The float loss is, per position, (log(sum(exp(z - m))) + m) - z[target] with z the
    logits and m their row max as floats, in that order; z - m is computed as the float
    of the integer difference, which is the same float (both are exact)."""
    t = len(targets)
    if gaps is None:
        gaps = row_max - logits
    scale = 2.0**-frac  # to_float's division by 2**frac: exact, as this product is
    target_gaps = gaps[np.arange(t), targets]  # (T,) max - l_target, >= 0
    m = row_max[:, 0]
    lse = np.multiply(gaps, -scale)  # z - m (the float of -gap times scale: exact)
    np.exp(lse, out=lse)
    lse = np.log(np.add.reduce(lse, axis=-1))
    lse += m * scale
    lse -= (m - target_gaps) * scale  # the targets' logits
    # np.mean's own sum and division, without its wrapper: the same float
    loss = float(np.add.reduce(lse) / t)
    return loss, loss_q16_of_sums(target_gaps.tolist(), exp_sums[:, 0].tolist(), frac)


def reported_losses_of_steps(steps, frac):
    """reported_losses of many steps at once: steps is a list of (targets (T,), row max
    (T,1), sums of exps (T,1), row max - logits (T,V)), one per step, with any T; returns
    [(loss, loss_q16)] in their order, each the same float and integer as reported_losses.

    Every position's log-sum-exp is an element-wise function of its own row (numpy's
    exp, log and the sum over a row do not depend on the rows around it), so the rows of
    all steps go through one pass. The mean over a step's positions is a sum whose
    rounding depends on the order numpy adds in: the steps of one length T are stacked
    (n,T) and summed along their rows, as a (T,) step alone is summed. loss_q16 is exact
    integer arithmetic, its ln_q16 vectorised."""
    lengths = [len(targets) for targets, _, _, _ in steps]
    ends = np.cumsum(lengths)
    gaps = np.concatenate([b for _, _, _, b in steps])  # (sum T, V)
    row_max = np.concatenate([m for _, m, _, _ in steps])[:, 0]
    sums = np.concatenate([s for _, _, s, _ in steps])[:, 0]
    # the target's column of each row: the row max minus its logit, >= 0
    target_gaps = gaps[np.arange(len(gaps)), np.concatenate([t for t, _, _, _ in steps])]
    scale = 2.0**-frac
    lse = np.multiply(gaps, -scale)
    np.exp(lse, out=lse)
    lse = np.log(np.add.reduce(lse, axis=-1))
    lse += row_max * scale
    lse -= (row_max - target_gaps) * scale
    losses = [0.0] * len(steps)
    by_length = {}
    for i, t in enumerate(lengths):
        by_length.setdefault(t, []).append(i)
    for t, which in by_length.items():
        starts = ends[which] - t  # (n,) first row of each step of length t
        rows = lse[starts[:, None] + np.arange(t)]  # (n,t)
        for i, loss in zip(which, (np.add.reduce(rows, axis=-1) / t).tolist(), strict=True):
            losses[i] = loss
    # loss_q16 (loss_q16_of_sums): per step, sum(max - l_target) << (16 - frac) plus the
    # sum of ln_q16(s) over its rows, divided by T half up
    # logits have at most 24 bits and 16 fractional bits (policy's validity rule): a step's
    # sum of max - l_target is below 16 * 2**24, shifted by at most 16 bits, far within int64
    first = ends - lengths
    total = np.add.reduceat(target_gaps, first) << (16 - frac)
    total += np.add.reduceat(ln_q16_array(sums), first)
    twice_t = 2 * np.array(lengths, dtype=np.int64)
    q16 = (2 * total + twice_t // 2) // twice_t
    return list(zip(losses, q16.tolist(), strict=True))


def ln_q16_array(s):
    """ln_q16 of every element of an int64 array s >= 2**15 (s < 2**62)."""
    n = bit_length(s) - 1
    mant = np.where(n <= 29, s << np.maximum(29 - n, 0), s >> np.maximum(n - 29, 0))
    idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF
    lo, hi = LOG2_TABLE_ARRAY[idx], LOG2_TABLE_ARRAY[idx + 1]
    lg = lo + (((hi - lo) * rem + (1 << 14)) >> 15)  # log2 of the mantissa, Q16
    return (n - 15) * LN2_Q16 + ((lg * LN2_Q15 + (1 << 14)) >> 15)


LOG2_TABLE_ARRAY = np.array(LOG2_TABLE, dtype=np.int64)
