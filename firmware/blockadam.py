"""Adam with block-scaled state (docs/arithmetic.md 9.6) on the device: the fused update
of model.py gets a weight's gradient a few rows at a time, in the backward pass's order,
but a block's shift needs all of its values. So the gradients gather in unit-sized slots
(U = lcm of the two block sizes, from a multiple of U) and Adam runs on a unit when its
gradient is complete: m and v decoded to wide values, 9.1 to 9.5 (kernels.adam_update),
then encoded again. Elementwise, this is the simulator's update after the whole backward
pass. Plain m or v of 8 or 16 bits take the same path, in units of layout's _WIDE_UNIT
values, widened and narrowed, as kernels.adam_update takes int32 m and v only.
Imported by model.Model.weight_backward only for those policies.
"""

import kernels as K
from micropython import const

_N = const(4192)


def gather(mdl, off, n, grad, alpha, key):
    """Block-scaled state: the gradients of parameters off .. off+n-1 go to the slots
    of their units (U parameters from a multiple of U); a unit whose gradient is
    complete runs Adam and frees its slot: m and v decoded to wide values (block-scaled)
    or widened, 9.1 to 9.5 on them, then stored again (encoded per block: 9.6).

    One function on purpose: a MicroPython function whose frame holds more than a few
    values allocates it on the heap at every call (about 6 K instructions in a full
    heap), so the per-unit work stays inline, and refresh_data is called only where it
    has work (master weights)."""
    mk, vk, mw, vw, slots, su, sc, U, blocks, comp = mdl.blk
    sh_m, sh_s, e, u, mode, s_lo, s_hi, hm, hv, _, _, _ = mdl.opt
    _, _, _, bm, bv, bs = mdl.nb
    bits_m, n_m, bits_v, n_v = blocks
    for unit in range((off // U), (off + n - 1) // U + 1):
        a = unit * U
        size = U if a + U <= _N else _N - a
        lo = off if off > a else a
        hi = off + n if off + n < a + size else a + size
        s = -1
        for i in range(len(su)):
            if su[i] == unit:
                s = i
        if s < 0:
            s = su.index(-1)  # model's plan needs at most layout.block_bytes's slots
            su[s], sc[s] = unit, 0
        K.copy32(0, 0, slots[s], lo - a, grad, lo - off, hi - lo)
        sc[s] += hi - lo
        if sc[s] < size:
            continue
        su[s] = -1
        # the unit's gradient is complete: Adam on parameters a .. a+size-1
        if n_m:
            K.block_decode(0, 0, mw, mdl.m, mk, a, size, n_m, bm, 0)
        else:
            K.widen(0, 0, mw, mdl.m, a, size, bm)
        if n_v:
            K.block_decode(0, 0, vw, mdl.v, vk, a, size, n_v, bv, 1)
        else:
            K.widen(0, 0, vw, mdl.v, a, size, bv)
        # bv = -4 for block-scaled v: adam_update leaves isqrt(v) in vw, which block_encode
        # stores (9.6: the roots of the same isqrt as 9.3)
        mdl.counts[2] += K.adam_update(0, 0, mdl.store, mw, vw, slots[s], comp, size, a, a,
                                       0, alpha, sh_m, sh_s, e, u, mode, key, s_lo, s_hi,
                                       hm, hv, bs, -4 if n_v else 4)
        if n_m:
            K.block_encode(0, 0, mdl.m, mk, mw, a, size, n_m, bits_m, bm, 0)
        else:
            K.narrow(0, 0, mdl.m, a, mw, size, 0 - hm, hm, bm)
        if n_v:
            K.block_encode(0, 0, mdl.v, vk, vw, a, size, n_v, bits_v, bv, 1)
        else:
            K.narrow(0, 0, mdl.v, a, vw, size, 0, hv, bv)
        if mdl.nums[3]:  # master weights: the data weights the forward pass sees
            mdl.refresh_data(a, size)
