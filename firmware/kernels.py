"""qgpt firmware kernels: the integer simulator's ops as MicroPython viper functions.

One module (about 1,700 lines) on purpose (issue 11): split into four along the op
families of docs/arithmetic.md it costs more heap for the whole run (after setup 77,632
against 76,960 bytes on the unix port, q4.12; heap peak 78,432 against 77,888; smallest
heap 82K against 81K; int8, with under 1 KB to spare at 56K, cannot afford it),
measured by `python firmware/tools/kernels_split_heap.py`
(firmware/README.md, "Memory"). The sections below follow those families.

Every kernel implements the section of docs/arithmetic.md named in its docstring,
bit for bit like qgpt/int_ops.py; qgpt/conformance/ compares them with `==`.
Kernels work in preallocated buffers passed in and allocate nothing. Each tensor
class of the precision policy (section 3) lives in the narrowest container of its
width (3.3), and a kernel takes each buffer's container in bytes (arguments ba, bw,
bg, by, bx, bs, bm, bv: 1 a bytearray read with ptr8, 2 an int16 array with ptr16, 4
an int32 array with ptr32), the policy's shifts and every class's (lo, hi):

    8 / 16 bits  weights W, activations A, activation gradients G (4..16 bits)
    int32        logits and scores (L: the lm_head output, the attention row),
                 probabilities (Q15; uint16 in attention), the parameter gradients
                 of a piece (P), (M, sh) rows, scratch
    8 / 16 / 32  Adam m and v, master weights; block-scaled m and v (9.6): mantissas
                 (v's unsigned) with uint8 shifts per block
    bytearray    uint8 token ids, int8 Kahan compensations

Arguments follow llm.c: outputs, inputs, dimensions, then the numbers the policy
computes once (shifts, saturation limits; firmware/policy.py). Forward kernels
compute one position t (the device goes token by token; rows 0..t of k and v
are the KV cache); backward kernels run over all T positions.

Dimension letters (qgpt/params.py): T positions, C width, NH heads, HS head width,
V vocabulary, n_in and n_out a linear layer's sizes. Buffers are row-major.

Dot products (section 3) are exact sums rounded once, so no loop order matters.
The sum S of up to 64 products of 16-bit words (|S| <= 2**36) is kept as two
int32 halves, each product p added as

    hh += p >> 16;  ll += p & 0xFFFF        S = hh * 2**16 + ll, |hh| <= 2**20, ll < 2**22

and sat(rnd(S, s), lo, hi), 0 <= s <= 19, is the contract's recipe:

    hh += ll >> 16;  ll &= 0xFFFF
    s >= 16:  q = (hh + ((ll + half) >> 16)) >> (s - 16)
    s < 16:   q = hi if hh >= lim, lo if hh < 0 - lim, else (hh << (16 - s)) + ((ll + half) >> s)
    q = sat(q, lo, hi)

with half = (1 << s) >> 1 and lim = 1 << (14 + s), set once per call. Sums the
contract leaves unsaturated (pd, dW) use lo, hi = -2**30, 2**30.
One function, dot_rows, does this for any strides and widths; every kernel's dot
products go through it, except these fast paths (issue 15), each with a comment
saying why it is exact:

    bounded sums   where a bound proves |S| < 2**30 (3.7: then a plain int32 sum is the
                   same integer), one int32 accumulator and sat(rnd(S, s)) directly:
                   the linear kernels check L1 norm times max magnitude per row (max |W|
                   from the model, abs_max), attention's scores from L1 of q's row (16-bit
                   words), p v and pd from softmax's sums
    16-bit loops   the linear kernels' fast paths read int16 operands only (four
                   accumulators sharing each load, sixteen in linear_backward, byte
                   addresses with constant offsets: ptr16(int(p) + offset)); 8-bit
                   operands take dot_rows
    short sums     rmsnorm's sums of C <= 16 products (|S| <= 2**34) as 16 H + L, H the
                   sum of p >> 4 (within 2**30) and L of p & 15, rounded from the pair
    attention      the heads' sums inline (HS = 4 words a row, each row loaded once; a
                   call of dot_rows would cost more than its products): the pair, or
                   the bounded sums above; backward only over the pairs s <= t

A kernel makes one buffer-protocol call per buffer (ptr8(b)); its other widths are
casts of that address (ptr16(int(p8))), which cost nothing.

Portability (shared/notes/micropython-viper.md): viper ints are 32 bits on the
ESP32 and 64 bits on the x86-64 unix port, so every intermediate stays inside
int32 by the contract's bounds, and:

    int16 load   (p[i] ^ 0x8000) - 0x8000        ptr16 loads are unsigned
    int32 load   (p[i] ^ s32) - s32              s32 = one << 31 from a variable: the
                                                 identity on 32 bits, sign extension on 64
    rnd(x, s)    (x + ((1 << s) >> 1)) >> s      s >= 0: the half is 0 for s = 0

No literal beyond +-(2**30 - 1) (limits are built from `one = 1` at run time), no
unary minus or ~ on a variable (`0 - x`, `x ^ -1`), shift counts 0..31, `//`
only with a positive divisor and operands within +-2**30, no builtin calls in
loops. tests/test_firmware_lint.py checks what it can.
"""

from array import array

import micropython
from micropython import const

# 2**(k/64) in Q15, k = 0..64: round(2**(k/64) * 2**15) (section 5, exp). The
# same literals as qgpt.int_ops.EXP2_TABLE (tests/test_firmware_ops.py). A list: a
# tuple of constants would stay in the module's constant table, a second copy in memory.
EXP2_Q15 = array("i", [
    32768, 33125, 33486, 33850, 34219, 34591, 34968, 35349, 35734, 36123, 36516,
    36914, 37316, 37722, 38133, 38548, 38968, 39392, 39821, 40255, 40693, 41136,
    41584, 42037, 42495, 42958, 43425, 43898, 44376, 44859, 45348, 45842, 46341,
    46846, 47356, 47871, 48393, 48920, 49452, 49991, 50535, 51085, 51642, 52204,
    52773, 53347, 53928, 54515, 55109, 55709, 56316, 56929, 57549, 58176, 58809,
    59449, 60097, 60751, 61413, 62081, 62757, 63441, 64132, 64830, 65536,
])

_LOG2E_Q14 = const(23637)  # log2(e) in Q14 (section 5, exp)
_EXP_ZERO_BELOW = const(16)  # exp(z) = 0 for z <= -16
# 1.0 in unsigned Q15; public (conform_ops reads it): the module's one global constant, which
# the int8 preset's resume at 56K needs (with one global less kernels' import lays out the
# heap so that the Model's 192-byte table finds no hole; tests/test_firmware_train.py)
PROB_ONE = const(32768)
_G_LO = const(-32768)  # G = q2.14, the activation gradients (section 7)
_G_HI = const(32767)
_DS_SHIFT = const(16)  # attention backward: p * diff, Q15 * Q14 -> Q14, and the /2 of the score
_HALF_MASK = const(0xFFFF)  # the low half of a dot product's pair
_L1_FIT = const(32767)  # attention: L1 of a row of 16-bit words bounding |S| < 2**30
_HS = const(4)  # the head width HS (params.HEAD_DIM): attention's loops are written for it

# Adam (section 9): 1 - beta in Q15, the clamp of m, the ratio's limit 4.0 in Q13
_ADAM_C1 = const(4915)
_ADAM_C2 = const(328)
_ADAM_K1 = const(27853)  # 2**15 - C1
_ADAM_K2 = const(32440)  # 2**15 - C2
_M_LIMIT = const(1073741823)  # 2**30 - 1
_R_MAX = const(32768)  # 4.0 in Q13
_ROUND_NEAREST = const(0)  # update rounding modes (firmware/policy.py ROUNDINGS)
_ROUND_FLOOR = const(1)
_ROUND_STOCHASTIC = const(2)
_ROUND_PSEUDO = const(3)
_ROUND_KAHAN = const(4)
_KAHAN_BITS = const(8)  # the compensation below the weight's LSB (9.6)
_KAHAN_HALF = const(128)  # 2**(KAHAN_BITS - 1): c in [-128, 127]

# the PRNG (section 4), for Adam's stochastic rounding
_M30 = const(1073741823)  # 2**30 - 1
_HASH_MUL = const(0x045D9F3B)


# --- integer functions (section 5 softmax; rsqrt and its isqrt are inlined in rmsnorm_forward) ---


@micropython.viper
def softmax(j: int, e: int, p, z, row: int, n: int, f: int) -> int:
    """softmax (section 5) of row `row` of z (rows of n int32, f fractional bits: z[off :
    off+n], off = row * n) into p[off : off+n] (int32, unsigned Q15); p may be z. Returns
    the denominator S = sum_j exp_neg(z_j - max z) (for the loss, section 8). Masked
    positions are the caller's: it passes only the unmasked n (and row 0). exp_neg itself
    is no kernel (the device computes it only here): conform_ops checks it as S - 2**15 of
    the row [0, z]. Also cross_entropy_forward (below).
    j and e: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    off = row * n
    pp = ptr32(p)
    pz = ptr32(z)
    e2 = ptr32(EXP2_Q15)
    one = 1
    s32 = one << 31
    zero_at = 0 - (_EXP_ZERO_BELOW << f)
    # exp_neg's z12 = rnd(z, f - 12): right by rs12 = f - 12 with its half, or left by ls12
    s12 = f - 12
    rs12 = s12 if s12 > 0 else 0
    ls12 = rs12 - s12
    half12 = (1 << rs12) >> 1
    end = off + n
    mx = (pz[off] ^ s32) - s32
    for j in range(off + 1, end):
        zj = (pz[j] ^ s32) - s32
        if zj > mx:
            mx = zj
    total = 0
    for j in range(off, end):
        d = ((pz[j] ^ s32) - s32) - mx  # <= 0
        e = 0
        if d > zero_at:  # exp_neg(d, f), inlined
            z12 = ((d + half12) >> rs12) << ls12
            w = z12 * _LOG2E_Q14
            ip = w >> 26
            idx = (w >> 20) & 63  # w's fraction below 2**26: idx its top 6 bits, rem the next 15
            rem = (w & 0xFFFFF) >> 5
            lo = e2[idx]
            e = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)
            sh = 0 - ip  # ip <= 0: e = rnd(e, sh)
            e = (e + ((1 << sh) >> 1)) >> sh
        pp[j] = e
        total += e  # in [2**15, 27 * 2**15] for n <= 27
    bias = (total >> 1) - total
    for j in range(off, end):
        # p = ((e << 15) + S/2) // S, written as ((e << 15) + S/2 - S) // S + 1 so that
        # the dividend stays within +-2**30 (e << 15 alone reaches 2**30)
        pp[j] = ((pp[j] << 15) + bias) // total + 1
    return total


# --- dot products, rounded once (section 3.7) ---


@micropython.viper
def dot_rows(hh: int, ll: int, y, yi: int, ys: int, by: int, a, ai: int, ar: int, ak: int,
             ba: int, b, bi: int, bc: int, bk: int, bb: int, rows: int, cols: int, n: int,
             sh: int, lo: int, hi: int):
    """The general dot product of the kernels, row r < rows of a against column c < cols
    of b: y[yi + r ys + c] = sat(rnd(S, sh), lo, hi),
    S = sum_{k<n} a[ai + r ar + k ak] * b[bi + c bc + k bk],
    or with by = -4 (y int32): sat(y + rnd(S, sh), lo, hi), the contract's dW (7). Any
    strides, so one call serves the dot products of a matrix-vector or a matrix-matrix
    product, over rows, columns or a head's slice. Element widths in bytes: 1 and 2
    signed, -2 (a only) unsigned 16-bit (attention's probabilities); y also 4 and -4
    (int32); n <= 64, ak >= 1, [lo, hi] within +-2**30.
    The exact S is kept as the int32 pair of 3.7, so no bound on the values is needed:
    the linear kernels use it where their bound fails and for 8-bit words. One loop for
    every width (a second loop for 16-bit words at byte addresses took 388 bytes more
    xtensawin code and saved no measurable instructions: the fast paths take those words).
    hh and ll: pass 0 (scratch: viper keeps a function's first two locals in registers when
    mpy-cross compiles it (MAX_REGS_FOR_LOCAL_VARS, py/emitnative.c), and the loops' pair is
    read and written most: with it there the pair loop costs about what the one-accumulator
    loop of a proven bound did, which it replaces). The product p is a stack local either
    way, so it is no argument: each int argument costs a call about 55 instructions (boxed by
    the caller, converted back here)."""
    py8 = ptr8(y)
    py16 = ptr16(int(py8))
    py32 = ptr32(int(py8))
    pa8 = ptr8(a)
    pa16 = ptr16(int(pa8))
    pb8 = ptr8(b)
    pb16 = ptr16(int(pb8))
    one = 1
    s32 = one << 31
    # a 16-bit word w of a is (w ^ sa) + na, signed (sa = 0x8000, na = -0x8000) or unsigned
    # (sa = na = 0); not (w ^ sa) - sa, the shape of the int32 sign extension (the int32
    # target reads that as the identity)
    sa = 0 if ba < 0 else 0x8000
    a8 = ba == 1  # (a bool: its test costs less than a comparison, per product)
    b16 = bb == 2
    na = 0 - sa
    half = (1 << sh) >> 1
    lim = 1 << (14 + sh) if sh < 16 else 0
    q = 0
    for r in range(rows):
        for c in range(cols):
            hh = 0
            ll = 0
            ka = ai + r * ar
            kb = bi + c * bc
            for _ in range(n):
                if a8:
                    x = (pa8[ka] ^ 0x80) - 0x80
                else:
                    x = (pa16[ka] ^ sa) + na
                if b16:
                    p = x * ((pb16[kb] ^ 0x8000) - 0x8000)
                else:
                    p = x * ((pb8[kb] ^ 0x80) - 0x80)
                hh += p >> 16
                ll += p & _HALF_MASK
                ka += ak
                kb += bk
            hh += ll >> 16
            ll &= _HALF_MASK
            if sh >= 16:
                q = (hh + ((ll + half) >> 16)) >> (sh - 16)
            elif hh >= lim:
                q = hi
            elif hh < 0 - lim:
                q = lo
            else:
                q = (hh << (16 - sh)) + ((ll + half) >> sh)
            k = yi + r * ys + c
            if by < 0:
                q += (py32[k] ^ s32) - s32  # |rnd(S)|, |y| <= 2**30: as the contract's dW
            if q > hi:
                q = hi
            if q < lo:
                q = lo
            if by == 2:
                py16[k] = q
            elif by == 1:
                py8[k] = q
            else:
                py32[k] = q


# --- embedding (sections 6, 7) ---


@micropython.viper
def embedding_forward(i: int, v: int, x, wte, wpe, token: int, t: int, C: int, sh: int,
                      lo: int, hi: int,
                      ba: int, bw: int):
    """x[t] = req(wte[token] + wpe[t], sh, A), sh = Fw - Fa (either sign; |sum| <= 2**16).
    x (T, C) A; wte (V, C), wpe (BLOCK, C) W; ba, bw: their container bytes (1 or 2).
    i and v: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    px8 = ptr8(x)
    px16 = ptr16(int(px8))
    pe8 = ptr8(wte)
    pe16 = ptr16(int(pe8))
    pp8 = ptr8(wpe)
    pp16 = ptr16(int(pp8))
    i = t * C  # x's and wpe's index: row t, column i - t * C
    te = token * C - i  # wte's row token, column i - t * C, at te + i
    rs = sh if sh > 0 else 0
    ls = 0 - sh if sh < 0 else 0
    half = (1 << rs) >> 1
    end = i + C
    while i < end:
        if bw == 2:
            v = (pe16[te + i] ^ 0x8000) + (pp16[i] ^ 0x8000) - 0x10000  # both signed
        else:
            v = (pe8[te + i] ^ 0x80) + (pp8[i] ^ 0x80) - 0x100
        # within int32: -2**16 <= v < 2**16 before, ls = Fa - Fw <= 15 (3.4: Fa <= 15)
        v = ((v + half) >> rs) << ls
        if v > hi:
            v = hi
        elif v < lo:
            v = lo
        if ba == 2:
            px16[i] = v
        else:
            px8[i] = v
        i += 1


@micropython.viper
def embedding_backward(i: int, w: int, dwte, dwpe, dx, tokens, T: int, C: int, sh: int,
                       lo: int, hi: int, bg: int):
    """Forward was x[t] = wte[tokens[t]] + wpe[t]: d = req(dx[t], sh, P), sh = Fg - Fp
    (a left shift when Fp > Fg); then for t = 0 .. T-1 in order both rows become
    sat(row + d, P). dwte (V, C), dwpe (BLOCK, C) int32 P, [lo, hi] within +-2**30;
    dx (T, C) G (bg bytes); tokens (T,) uint8.
    i and w: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    pwte = ptr32(dwte)
    pwpe = ptr32(dwpe)
    pdx8 = ptr8(dx)
    pdx16 = ptr16(int(pdx8))
    ptok = ptr8(tokens)
    one = 1
    s32 = one << 31
    rs = sh if sh > 0 else 0
    ls = 0 - sh if sh < 0 else 0
    half = (1 << rs) >> 1
    i = 0  # dx's and wpe's index: row t, column i - t * C
    for t in range(T):
        te = int(ptok[t]) * C - i  # wte's row tokens[t], column i - t * C, at te + i
        end = i + C
        while i < end:
            if bg == 2:
                d = (pdx16[i] ^ 0x8000) - 0x8000
            else:
                d = (pdx8[i] ^ 0x80) - 0x80
            # |d| <= 2**30: |d| <= 2**15 before, ls = Fp - Fg <= Fa <= 15 (3.4: Fp <= Fg + Fa)
            d = ((d + half) >> rs) << ls
            if d > hi:
                d = hi
            elif d < lo:
                d = lo
            w = ((pwte[te + i] ^ s32) - s32) + d
            if w > hi:
                w = hi
            elif w < lo:
                w = lo
            pwte[te + i] = w
            w = ((pwpe[i] ^ s32) - s32) + d
            if w > hi:
                w = hi
            elif w < lo:
                w = lo
            pwpe[i] = w
            i += 1


# --- rmsnorm (sections 6, 7) ---


@micropython.viper
def rmsnorm_forward(i: int, xi: int, y, rs, x, t: int, C: int, g: int, fm: int, eps: int,
                    lo: int, hi: int,
                    ba: int):
    """y[t] = sat(rnd(x[t] * M, sh), A) with (M, sh) = rsqrt(rnd(dot(x, x), g) + eps, fm),
    kept in rs[t] for the backward pass. g = guard(16, ba, ba) rounded up to even (<= 4).
    y, x (T, C) A (ba bytes), C <= 16; rs (T, 2) int32 (M, sh). rsqrt (section 5) is
    computed here only (conform_ops checks it as this kernel of a zero row with eps = ms).
    i and xi: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    py8 = ptr8(y)
    py16 = ptr16(int(py8))
    pr = ptr32(rs)
    px8 = ptr8(x)
    px16 = ptr16(int(px8))
    row = t * C
    a16 = ba == 2  # (a bool: its test costs less than a comparison, per value)
    # the mean square: S = sum x_i^2 (<= 2**34) as 16 H + L with H = sum (x_i^2 >> 4) and
    # L = sum (x_i^2 & 15) (C <= 16: H <= 2**30, L < 2**8); as g <= 4, rnd(S, g) is
    # (H << (4 - g)) + ((L + half) >> g), which the guard keeps within 2**30 (not saturated)
    hh = 0
    ll = 0
    for ph in range(2):  # 0: the sum, 1: y (one loop shares x's loads: -89 bytes xtensawin)
        if ph:
            ms = (hh << (4 - g)) + ((ll + ((1 << g) >> 1)) >> g) + eps  # in [1, 2**31)
            # (M, sh) = rsqrt(ms, fm): a = ms >> 2k (or << -2k) in [2**28, 2**30), k =
            # floor((bitlen(ms) - 29) / 2), taken a power of 4 at a time, and sh = 29 + k - fm/2
            a = ms
            sh = 29 - (fm >> 1)
            while a > 0x3FFFFFFF:
                a >>= 2
                sh += 1
            while a < 0x10000000:
                a <<= 2
                sh -= 1
            # s = isqrt(a) in [2**14, 2**15), digit by digit (two bits a round, from a's top
            # digit 2**28), in the registers: i is the digit, xi the root s
            i = 0x10000000
            xi = 0
            while i:
                if a >= xi + i:
                    a -= xi + i
                    xi = (xi >> 1) + i
                else:
                    xi >>= 1
                i >>= 2
            m = ((1 << 29) + (xi >> 1)) // xi  # M = rnd(2**29 / s) in (2**14, 2**15]
            pr[t + t] = m
            pr[t + t + 1] = sh  # >= 0 (section 6: fm <= 30), indeed >= 6 (eps)
            # y = sat(rnd(x * M, sh)), |x * M| <= 2**30
            half = (1 << sh) >> 1
        for i in range(row, row + C):
            xi = (px16[i] ^ 0x8000) - 0x8000 if a16 else (px8[i] ^ 0x80) - 0x80
            if ph:
                v = (xi * m + half) >> sh
                if v > hi:
                    v = hi
                if v < lo:
                    v = lo
                if a16:
                    py16[i] = v
                else:
                    py8[i] = v
            else:
                v = xi * xi
                hh += v >> 4
                ll += v & 15


@micropython.viper
def rmsnorm_backward(i: int, v: int, dx, dy, y, rs, T: int, C: int, sh_c: int, f: int,
                     glo: int, ghi: int, bg: int, ba: int):
    """Forward was y = x * r (r = M / 2**sh): dx = r * (dy - y * mean(dy * y)).
    c = sat(rnd(dot(dy, y), sh_c), G), sh_c = Fa + 4 (the mean);
    t_i = sat(dy_i - rnd(y_i * c, f), G), f = Fa; dx_i = sat(rnd(t_i * M, sh), G), the
    forward's (M, sh). dx, dy (T, C) G = [glo, ghi] (bg bytes); y (T, C) A (ba bytes);
    rs (T, 2) int32 from the forward; C <= 16, sh_c >= 4.
    i and v: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    pdx8 = ptr8(dx)
    pdx16 = ptr16(int(pdx8))
    pdy8 = ptr8(dy)
    pdy16 = ptr16(int(pdy8))
    py8 = ptr8(y)
    py16 = ptr16(int(py8))
    pr = ptr32(rs)
    half_f = (1 << f) >> 1
    g16 = bg == 2  # (a bool: its test costs less than a comparison, per value)
    half_c = (1 << sh_c) >> 1
    for t in range(T):
        row = t * C
        # in the forward pass y = x * r, so dy flows back through the mean of y^2: c = mean(dy * y),
        # the exact sum S as 16 H + L (as in rmsnorm_forward; |H| <= 2**30) and sh_c >= 4:
        # rnd(S, sh_c) = (H + ((L + half) >> 4)) >> (sh_c - 4). Two passes over the row (ph
        # 0: the sum, 1: dx) share the loads of dy and y (about 190 bytes of xtensawin code)
        hh = 0
        ll = 0
        for ph in range(2):
            if ph:
                c = (hh + ((ll + half_c) >> 4)) >> (sh_c - 4)
                if c > ghi:
                    c = ghi
                if c < glo:
                    c = glo
                m = pr[t + t]  # the forward's (M, sh), both positive
                sh = pr[t + t + 1]
                half = (1 << sh) >> 1
            for i in range(row, row + C):
                di = (pdy16[i] ^ 0x8000) - 0x8000 if g16 else (pdy8[i] ^ 0x80) - 0x80
                yi = (py16[i] ^ 0x8000) - 0x8000 if ba == 2 else (py8[i] ^ 0x80) - 0x80
                if ph:
                    # t_i = dy_i - y_i * c, then the forward's scale r; |y * c| <= 2**30
                    ti = di - ((yi * c + half_f) >> f)
                    if ti > ghi:
                        ti = ghi
                    if ti < glo:
                        ti = glo
                    v = (ti * m + half) >> sh
                    if v > ghi:
                        v = ghi
                    if v < glo:
                        v = glo
                    if g16:
                        pdx16[i] = v
                    else:
                        pdx8[i] = v
                else:
                    v = di * yi
                    hh += v >> 4
                    ll += v & 15


# --- linear (sections 6, 7) ---
#
# The fast paths. With 16-bit operands a dot product of n <= 64 terms can reach 2**36,
# hence the int32 pair (3.7). But |S| <= sum_i |a_i| * max |b|: when the L1 norm of one
# operand's vector times a bound on the other's magnitude is below 2**30 (checked with a
# division, never a product that could overflow), every partial sum fits one int32 and
# sat(rnd(S, s)) is computed from S directly, the same integer as the pair's recipe
# (3.7: "a plain int32 sum gives the same integer"). Several accumulators share each load
# of the operand that they have in common, read through byte addresses with constant
# offsets: four rows of W against each word of x[t] for y; two rows of dy against eight
# words of a row of W (dx) or x (dW), so n_in is a multiple of 8 there (16 and 64; another
# goes to dot_rows). W's rows for y are blocked by 4, lm_head's 27 with an overlapping last
# block. dot_rows takes everything the bound does not cover and 8-bit words. The same bound
# rounded, top = rnd(L1 * max, s) (per pair of rows, the larger L1), holds every rounded
# sum in [-top - 1, top]: where [lo, hi] contains that, nothing can saturate and the tests
# are skipped (dW into P always, dx and y where L1 is small). A dW added to the old one
# (add_dw: conformance's cases only, the model stores) takes dot_rows, which adds.


@micropython.viper
def abs_max(x: int, at: int, buf, n: int, nb: int) -> int:
    """max |buf[i]| for i < n (n even) of an int16 buffer (nb = 2): the magnitude bound of
    the linear kernels' fast paths, which read 16-bit words only; 0 (no bound) for other
    widths. x and at: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and
    ll)."""
    if nb != 2:
        return 0
    # the extremes of w ^ 0x8000 = v + 2**15 (w the uint16 word of v): no sign extension;
    # two words a round (n even)
    hi = 0x8000
    lo = 0x8000
    p16 = ptr16(buf)
    at = int(p16)
    end = at + n + n
    while at < end:
        p = ptr16(at)
        x = p[0] ^ 0x8000
        if x > hi:
            hi = x
        if x < lo:
            lo = x
        x = p[1] ^ 0x8000
        if x > hi:
            hi = x
        if x < lo:
            lo = x
        at += 4
    # max v = hi - 2**15 against -min v = 2**15 - lo
    return hi - 0x8000 if hi + lo > 0x10000 else 0x8000 - lo


@micropython.viper
def linear_forward(u: int, w_at: int, y, x, w, t0: int, t1: int, n_in: int, n_out: int,
                   sh: int, lo: int, hi: int, by: int, ba: int, bw: int, wmax: int):
    """y[t] = sat(rnd(W x[t], sh), out) for the positions t0 <= t < t1, sh = Fw + Fa - F_out
    (0..31): out is A (q, k, v, projections, MLP) or L (lm_head). y (T, n_out) in by bytes
    (1, 2, or 4: int32); x (T, n_in) A (ba bytes); w (n_out, n_in) W (bw bytes), n_in <= 64
    and a multiple of 4; n_out >= 4; wmax >= max |W| (abs_max), for the fast path. The
    model's forward pass calls it once a step for all positions (a call costs about 1,500
    instructions), sampling for one. u and w_at: pass 0 (scratch in registers, as
    dot_rows's hh and ll: the fast path's W word and W's address, read most)."""
    py16 = ptr16(y)
    px16 = ptr16(x)
    pw16 = ptr16(w)
    one = 1
    half = 1 << (sh - 1) if sh > 0 else 0
    # fast path (above): 16-bit W and x with |S| <= L1(x[t]) * max |W| < 2**30, two
    # positions t, t+1 at a time (t again when t+1 is past t1: the same values stored
    # twice) against four rows of W, each W word loaded once for both (-13% instructions a
    # MAC against one position); blocks o .. o+3; when n_out is not a multiple of 4
    # (lm_head's 27) the last block is rows n_out-4 .. n_out-1, which overlaps the one
    # before (its rows are stored twice, the same values). Both positions' L1 bounds must
    # hold, else the pair takes dot_rows
    l1_max = ((one << 30) - 1) // wmax if bw == 2 and ba == 2 and wmax > 0 else -1
    row_bytes = n_in + n_in
    for t in range(t0, t1, 2):
        rows = 2 if t + 1 < t1 else 1
        x_at = int(px16) + t * row_bytes  # &x[t, 0]
        x_end = x_at + row_bytes
        e_off = row_bytes if rows == 2 else 0  # from x[t] to x[t + 1] (or x[t] again)
        # the L1 norms of x[t] and of x[t + 1] (z0..z3 below)
        l1x = 0
        l1z = 0
        xa = x_at
        while xa < x_end and l1_max >= 0:
            xv = (ptr16(xa)[0] ^ 0x8000) - 0x8000
            l1x += xv if xv >= 0 else 0 - xv
            xv = (ptr16(xa + e_off)[0] ^ 0x8000) - 0x8000
            l1z += xv if xv >= 0 else 0 - xv
            xa += 2
        if l1_max < 0 or l1x > l1_max or l1z > l1_max:  # the general loop: the int32 pair
            dot_rows(0, 0, y, t * n_out, n_out, by, x, t * n_in, n_in, 1, ba, w, 0, n_in, 1,
                     bw, rows, n_out, n_in, sh, lo, hi)
            continue
        e_y = n_out * by if rows == 2 else 0  # from y[t] to y[t + 1] (or y[t] again)
        # |S| <= L1 * wmax <= 2**30 - 1 rounds into [-top - 1, top]: the saturation only
        # where [lo, hi] does not hold that
        top = ((l1x if l1x > l1z else l1z) * wmax + half) >> sh  # half <= 2**30: < 2**31
        clamp = 1 if top > hi or 0 - top - 1 < lo else 0
        for ob in range(0, n_out, 4):
            o = ob if ob + 4 <= n_out else n_out - 4  # the block's first row
            w_at = int(pw16) + o * row_bytes  # &W[o, 0]
            a0 = 0
            a1 = 0
            a2 = 0
            a3 = 0
            b0 = 0
            b1 = 0
            b2 = 0
            b3 = 0
            xa = x_at
            while xa < x_end:  # four words of x[t] and of x[t + 1], four rows of W
                px = ptr16(xa)
                x0 = (px[0] ^ 0x8000) - 0x8000
                x1 = (px[1] ^ 0x8000) - 0x8000
                x2 = (px[2] ^ 0x8000) - 0x8000
                x3 = (px[3] ^ 0x8000) - 0x8000
                px = ptr16(xa + e_off)
                z0 = (px[0] ^ 0x8000) - 0x8000
                z1 = (px[1] ^ 0x8000) - 0x8000
                z2 = (px[2] ^ 0x8000) - 0x8000
                z3 = (px[3] ^ 0x8000) - 0x8000
                u = (ptr16(w_at)[0] ^ 0x8000) - 0x8000
                a0 = u * x0 + a0
                b0 = u * z0 + b0
                u = (ptr16(w_at)[1] ^ 0x8000) - 0x8000
                a0 = u * x1 + a0
                b0 = u * z1 + b0
                u = (ptr16(w_at)[2] ^ 0x8000) - 0x8000
                a0 = u * x2 + a0
                b0 = u * z2 + b0
                u = (ptr16(w_at)[3] ^ 0x8000) - 0x8000
                a0 = u * x3 + a0
                b0 = u * z3 + b0
                pw = ptr16(w_at + row_bytes)
                u = (pw[0] ^ 0x8000) - 0x8000
                a1 = u * x0 + a1
                b1 = u * z0 + b1
                u = (pw[1] ^ 0x8000) - 0x8000
                a1 = u * x1 + a1
                b1 = u * z1 + b1
                u = (pw[2] ^ 0x8000) - 0x8000
                a1 = u * x2 + a1
                b1 = u * z2 + b1
                u = (pw[3] ^ 0x8000) - 0x8000
                a1 = u * x3 + a1
                b1 = u * z3 + b1
                pw = ptr16(w_at + row_bytes + row_bytes)
                u = (pw[0] ^ 0x8000) - 0x8000
                a2 = u * x0 + a2
                b2 = u * z0 + b2
                u = (pw[1] ^ 0x8000) - 0x8000
                a2 = u * x1 + a2
                b2 = u * z1 + b2
                u = (pw[2] ^ 0x8000) - 0x8000
                a2 = u * x2 + a2
                b2 = u * z2 + b2
                u = (pw[3] ^ 0x8000) - 0x8000
                a2 = u * x3 + a2
                b2 = u * z3 + b2
                pw = ptr16(w_at + row_bytes + row_bytes + row_bytes)
                u = (pw[0] ^ 0x8000) - 0x8000
                a3 = u * x0 + a3
                b3 = u * z0 + b3
                u = (pw[1] ^ 0x8000) - 0x8000
                a3 = u * x1 + a3
                b3 = u * z1 + b3
                u = (pw[2] ^ 0x8000) - 0x8000
                a3 = u * x2 + a3
                b3 = u * z2 + b3
                u = (pw[3] ^ 0x8000) - 0x8000
                a3 = u * x3 + a3
                b3 = u * z3 + b3
                xa += 8
                w_at += 8
            w_at = int(py16) + (t * n_out + o) * by  # y's address (by 2 or 4: A or L)
            for _ in range(4):  # the four sums of both positions in turn: sat(rnd(S, sh))
                u = (a0 + half) >> sh
                v = (b0 + half) >> sh
                if clamp:
                    if u > hi:
                        u = hi
                    if u < lo:
                        u = lo
                    if v > hi:
                        v = hi
                    if v < lo:
                        v = lo
                if by == 2:
                    ptr16(w_at)[0] = u
                    ptr16(w_at + e_y)[0] = v
                else:
                    ptr32(w_at)[0] = u
                    ptr32(w_at + e_y)[0] = v
                w_at += by
                a0 = a1
                a1 = a2
                a2 = a3
                b0 = b1
                b1 = b2
                b2 = b3


@micropython.viper
def linear_backward(u: int, at: int, dx, dw, dy, x, w, T: int, n_in: int, n_out: int,
                    sh: int, sh_w: int, o0: int, o1: int, with_dx: int, add_dw: int, glo: int,
                    ghi: int, plo: int, phi: int, bg: int, ba: int, bw: int, wmax: int):
    """Forward was y = W x: dx_i = sat(rnd(sum_o W_oi * dy_o, sh), G), sh = Fw;
    dW_oi = sat(dW_oi + rnd(sum_t dy_o[t] * x_i[t], sh_w), P), sh_w = Fg + Fa - Fp (0..31):
    the exact sum over the T positions of the step rounded once into P, added to dw if
    add_dw (the contract's dW; by dot_rows: the fast path stores only), else stored:
    sat(rnd(...), P), the contract's value for a zeroed dw, what the model needs for a
    step's gradient (dw is not read: -2% instructions a step against zeroing it and adding).
    Only rows o0 .. o1-1 of dW, into dw from its start (the whole matrix: 0, n_out; the
    device's training step takes a large gradient a few rows at a time); dx only if
    with_dx (it sums over every o whatever the rows).
    dx (T, n_in) G = [glo, ghi]; dw (o1 - o0, n_in) int32 P = [plo, phi] (within +-2**30);
    dy (T, n_out) G (bg bytes); x (T, n_in) A (ba bytes); w (n_out, n_in) W (bw bytes);
    n_out <= 64, T <= 16, n_in a multiple of 4 (of 8 for the fast path); wmax >= max |W|
    (abs_max), for the fast path.

    Both are rows of sums of dy's words times rows of a matrix: dx's row t sums
    dy[t, o] * W[o, :] over o, dW's row o sums dy[t, o] * x[t, :] over t. One loop does
    both (pass 0: dx, pass 1: dW), two rows at a time: dy's words of the two rows are two
    streams (d, e) read at a step of d_step bytes, the matrix's rows one stream (u), so
    each load of eight u serves sixteen sums (-8% instructions against four u and eight
    sums, 407 bytes more xtensawin code). u and at: pass 0 (scratch in registers, as
    dot_rows's hh and ll: the matrix word and the address of its row in the inner loop,
    read most; with dy's address there instead, -9% (dW) to -14% (dx) instructions
    against none in registers, and the row's address takes 1% more off both)."""
    pdx16 = ptr16(dx)
    pdw32 = ptr32(dw)
    pdy16 = ptr16(dy)
    px16 = ptr16(x)
    pw16 = ptr16(w)
    one = 1
    fit = (one << 30) - 1
    row_bytes = n_in + n_in
    out_bytes = n_out + n_out
    for ph in range(0 if with_dx else 1, 2):
        if not ph:  # dx: rows t, sums over o of dy[t, o] W[o, :]
            r0 = 0
            r1 = T
            terms = n_out
            d_row = out_bytes  # from dy's stream of row r to row r + 1
            d_step = 2
            u0 = int(pw16)
            yb = dx  # the output and the matrix, for dot_rows: buffers and bytes a word
            yw = bg
            ub = w
            uw = bw
            y_at = int(pdx16)  # y's first byte and bytes a word
            y_step = 2
            big = wmax if bw == 2 and bg == 2 else 0
            s = sh
            lo = glo
            hi = ghi
        else:  # dW: rows o, sums over t of dy[t, o] x[t, :]
            r0 = o0
            r1 = o1
            terms = T
            d_row = 2
            d_step = out_bytes
            u0 = int(px16)
            yb = dw
            yw = -4 if add_dw else 4  # int32, added to (or stored)
            ub = x
            uw = ba
            y_at = int(pdw32)
            y_step = 4
            big = int(abs_max(0, 0, x, T * n_in, 2)) if bg == 2 and ba == 2 and not add_dw else 0
            s = sh_w
            lo = plo
            hi = phi
        half = (1 << s) >> 1
        # fast path (above the linear kernels): |S| <= L1(the row's dy words) * big < 2**30
        l1_max = fit // big if big > 0 and not n_in & 7 else -1
        for r in range(r0, r1, 2):
            rows = 2 if r + 1 < r1 else 1
            d_at = int(pdy16) + r * d_row  # dy's stream of row r
            e_off = d_row if rows == 2 else 0  # and of row r + 1 (row r again when alone)
            d_end = d_at + terms * d_step
            l1d = 0
            l1e = 0
            at = d_at
            while at < d_end and l1_max >= 0:
                v = (ptr16(at)[0] ^ 0x8000) - 0x8000
                l1d += v if v >= 0 else 0 - v
                v = (ptr16(at + e_off)[0] ^ 0x8000) - 0x8000
                l1e += v if v >= 0 else 0 - v
                at += d_step
            if l1d > l1_max or l1e > l1_max:  # the exact path: dot_rows, both rows
                dot_rows(0, 0, yb, (r - r0) * n_in, n_in, yw, dy, r * (d_row >> 1), d_row >> 1,
                         d_step >> 1, bg, ub, 0, 1, n_in, uw, rows, n_in, terms, s, lo, hi)
                continue
            # |S| <= L1 * big <= fit rounds into [-top - 1, top]: the saturation only where
            # [lo, hi] does not hold that
            top = ((l1d if l1d > l1e else l1e) * big + half) >> s  # half <= 2**30: < 2**31
            clamp = 1 if top > hi or 0 - top - 1 < lo else 0
            k = (r - r0) * n_in  # the output's index of row r, column 0
            e_y = n_in * y_step if rows == 2 else 0  # from row r to row r + 1 of y
            for i in range(0, n_in, 8):  # eight columns of both rows (n_in % 8 == 0 here)
                a0 = 0
                a1 = 0
                a2 = 0
                a3 = 0
                a4 = 0
                a5 = 0
                a6 = 0
                a7 = 0
                b0 = 0
                b1 = 0
                b2 = 0
                b3 = 0
                b4 = 0
                b5 = 0
                b6 = 0
                b7 = 0
                da = d_at
                at = u0 + i + i  # the matrix's row of the term, in a register
                while da < d_end:
                    d = (ptr16(da)[0] ^ 0x8000) - 0x8000
                    e = (ptr16(da + e_off)[0] ^ 0x8000) - 0x8000
                    u = (ptr16(at)[0] ^ 0x8000) - 0x8000
                    a0 = u * d + a0
                    b0 = u * e + b0
                    u = (ptr16(at)[1] ^ 0x8000) - 0x8000
                    a1 = u * d + a1
                    b1 = u * e + b1
                    u = (ptr16(at)[2] ^ 0x8000) - 0x8000
                    a2 = u * d + a2
                    b2 = u * e + b2
                    u = (ptr16(at)[3] ^ 0x8000) - 0x8000
                    a3 = u * d + a3
                    b3 = u * e + b3
                    u = (ptr16(at)[4] ^ 0x8000) - 0x8000
                    a4 = u * d + a4
                    b4 = u * e + b4
                    u = (ptr16(at)[5] ^ 0x8000) - 0x8000
                    a5 = u * d + a5
                    b5 = u * e + b5
                    u = (ptr16(at)[6] ^ 0x8000) - 0x8000
                    a6 = u * d + a6
                    b6 = u * e + b6
                    u = (ptr16(at)[7] ^ 0x8000) - 0x8000
                    a7 = u * d + a7
                    b7 = u * e + b7
                    da += d_step
                    at += row_bytes
                at = y_at + (k + i) * y_step  # y's address (at read dy's stream above)
                for j in range(8):  # sat(rnd(S, s)) in turn
                    u = (a0 + half) >> s  # row r
                    v = (b0 + half) >> s  # row r + 1, or row r again (the same value)
                    if clamp:
                        if u > hi:
                            u = hi
                        if u < lo:
                            u = lo
                        if v > hi:
                            v = hi
                        if v < lo:
                            v = lo
                    if ph:
                        ptr32(at)[0] = u
                        ptr32(at + e_y)[0] = v
                    else:
                        ptr16(at)[0] = u
                        ptr16(at + e_y)[0] = v
                    at += y_step
                    a0 = a1
                    a1 = a2
                    a2 = a3
                    b0 = b1
                    b1 = b2
                    b2 = b3
                    if j == 3:  # the second four sums
                        a0 = a4
                        a1 = a5
                        a2 = a6
                        a3 = a7
                        b0 = b4
                        b1 = b5
                        b2 = b6
                        b3 = b7


# --- element-wise: residual add, relu (sections 6, 7) ---


@micropython.viper
def add_forward(v: int, i: int, y, a, b, start: int, n: int, lo: int, hi: int, bx: int):
    """y[i] = sat(a[i] + b[i]) for i in start .. start+n-1: the residual add in A,
    and where two gradient paths meet, in G. y, a, b in bx bytes (1 or 2).
    v and i: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    py8 = ptr8(y)
    py16 = ptr16(int(py8))
    pa8 = ptr8(a)
    pa16 = ptr16(int(pa8))
    pb8 = ptr8(b)
    pb16 = ptr16(int(pb8))
    i = start
    end = start + n
    while i < end:
        if bx == 2:
            v = (pa16[i] ^ 0x8000) + (pb16[i] ^ 0x8000) - 0x10000  # both signed
        else:
            v = (pa8[i] ^ 0x80) + (pb8[i] ^ 0x80) - 0x100
        if v > hi:
            v = hi
        elif v < lo:
            v = lo
        if bx == 2:
            py16[i] = v
        else:
            py8[i] = v
        i += 1


@micropython.viper
def relu_backward(i: int, xi: int, dx, x, start: int, n: int, bg: int, ba: int):
    """dx[i] = dy[i] where the forward input x[i] > 0, else 0, in place: dx holds dy on
    entry and dx after (G, bg bytes); x A (ba bytes).
    i and xi: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    pdx8 = ptr8(dx)
    pdx16 = ptr16(int(pdx8))
    px8 = ptr8(x)
    px16 = ptr16(int(px8))
    i = start
    end = start + n
    while i < end:
        xi = (px16[i] ^ 0x8000) - 0x8000 if ba == 2 else (px8[i] ^ 0x80) - 0x80
        if xi <= 0:
            if bg == 2:
                pdx16[i] = 0
            else:
                pdx8[i] = 0
        i += 1


# --- attention (sections 6, 7) ---


@micropython.viper
def attention_forward(x: int, w: int, out, probs, srow, q, k, v, t: int, T: int, NH: int,
                      sh_s: int, lo_l: int, hi_l: int, f: int, sh_o: int, lo: int, hi: int,
                      ba: int):
    """Position t of causal attention, all heads (rows 0..t of k and v are the cache):
    score[s] = sat(rnd(dot(q_h[t], k_h[s]), sh_s), L), sh_s = 2 Fa + 1 - Fl (the +1 is
    the 1/sqrt(4)); p = softmax(score[0..t], f = Fl); out_h[t] = sat(rnd(sum_s p[s] v_h[s],
    sh_o), A), sh_o = 15. out (T, C) A; probs (NH, T, T) uint16 Q15 (p <= 2**15 fits), rows
    [h, t, :] written, 0 after t (T is the row stride); srow (T,) int32 scratch: one head's
    scores, then probabilities; q, k, v (T, C) A, C = NH * HS, HS = _HS = 4; A in ba bytes
    (1 or 2); T <= 16.
    The dot products are inline, each row's four words loaded once (a call of dot_rows
    costs about 1,700 instructions, against four to sixteen products): a score's sum in
    one int32 where L1(q_h[t]) < 2**15 bounds it (16-bit words: |k| <= 2**15; 8-bit words
    always), else the head's scores by dot_rows (the int32 pair); out's four sums in one
    int32 each (below).
    x and w: pass 0 (scratch that viper keeps in registers: the value rounded, and the
    probability of the out loop; of the pairs of locals tried, the fewest instructions
    and bytes)."""
    pp = ptr16(probs)
    pr = ptr32(srow)
    head = _HS * ba  # bytes of one head's slice of a row
    row_bytes = NH * head  # from a row of q, k, v or out to the next
    pq8 = ptr8(q)  # the buffers (int(pq8): an address, for the bytecode build's rewrite)
    pk8 = ptr8(k)
    pv8 = ptr8(v)
    po8 = ptr8(out)
    q_at = int(pq8) + t * row_bytes  # &q[t, 0]
    k_at = int(pk8)
    v_at = int(pv8)
    o_at = int(po8) + t * row_bytes  # &out[t, 0]
    half_s = (1 << sh_s) >> 1
    half_o = (1 << sh_o) >> 1
    a16 = ba == 2  # (a bool: its test costs less than a comparison, per row)
    sm = softmax  # (in a local: a global is a dictionary lookup a call)
    for h in range(NH):
        # scores of position t against positions 0..t: srow[s] = q_h[t] . k_h[s]
        b_at = q_at
        for s in range(-1, t + 1):  # s = -1: q_h[t]'s words, then k_h[s]'s
            if a16:
                pa = ptr16(b_at)
                x0 = (pa[0] ^ 0x8000) - 0x8000
                x1 = (pa[1] ^ 0x8000) - 0x8000
                x2 = (pa[2] ^ 0x8000) - 0x8000
                x3 = (pa[3] ^ 0x8000) - 0x8000
            else:
                pb = ptr8(b_at)
                x0 = (pb[0] ^ 0x80) - 0x80
                x1 = (pb[1] ^ 0x80) - 0x80
                x2 = (pb[2] ^ 0x80) - 0x80
                x3 = (pb[3] ^ 0x80) - 0x80
            if s < 0:
                q0 = x0
                q1 = x1
                q2 = x2
                q3 = x3
                l1 = x0 if x0 >= 0 else 0 - x0
                l1 += x1 if x1 >= 0 else 0 - x1
                l1 += x2 if x2 >= 0 else 0 - x2
                l1 += x3 if x3 >= 0 else 0 - x3
                if l1 > _L1_FIT:  # the bound fails: dot_rows's int32 pair, rows 0..t of k
                    dot_rows(0, 0, srow, 0, 1, 4, k, h * _HS, NH * _HS, 1, ba, q,
                             (t * NH + h) * _HS, 0, 1, ba, t + 1, 1, _HS, sh_s, lo_l, hi_l)
                    break
                b_at = k_at
                continue
            b_at += row_bytes
            # |S| <= L1(q_h[t]) max |k| < 2**15 * 2**15 = 2**30: one int32 (3.7), and with the
            # half (<= 2**30) below 2**31
            x = (q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3 + half_s) >> sh_s
            if x > hi_l:
                x = hi_l
            if x < lo_l:
                x = lo_l
            pr[s] = x
        sm(0, 0, srow, srow, 0, t + 1, f)
        row = (h * T + t) * T  # probs[h, t, 0]
        for s in range(row + t + 1, row + T):  # future positions are masked: p = 0
            pp[s] = 0
        # out_h[t][d] = sum_s p[s] v_h[s][d], each in one int32: softmax rounds each p once,
        # so sum_s p[s] <= 2**15 + (t + 1) / 2 <= 2**15 + 8, and |v| <= 2**15: |S| <= 2**30 +
        # 2**18, and with the half (2**14) below 2**31 (3.7: the same integer as the pair's)
        a0 = 0
        a1 = 0
        a2 = 0
        a3 = 0
        b_at = v_at
        for s in range(t + 1):
            w = pr[s]
            pp[row + s] = w  # p in [0, 2**15]: a uint16
            if a16:
                pa = ptr16(b_at)
                a0 += w * ((pa[0] ^ 0x8000) - 0x8000)
                a1 += w * ((pa[1] ^ 0x8000) - 0x8000)
                a2 += w * ((pa[2] ^ 0x8000) - 0x8000)
                a3 += w * ((pa[3] ^ 0x8000) - 0x8000)
            else:
                pb = ptr8(b_at)
                a0 += w * ((pb[0] ^ 0x80) - 0x80)
                a1 += w * ((pb[1] ^ 0x80) - 0x80)
                a2 += w * ((pb[2] ^ 0x80) - 0x80)
                a3 += w * ((pb[3] ^ 0x80) - 0x80)
            b_at += row_bytes
        for _ in range(_HS):  # the four sums in turn: sat(rnd(S, sh_o), A)
            x = (a0 + half_o) >> sh_o
            if x > hi:
                x = hi
            if x < lo:
                x = lo
            if a16:
                ptr16(o_at)[0] = x
            else:
                ptr8(o_at)[0] = x
            o_at += ba
            a0 = a1
            a1 = a2
            a2 = a3
        q_at += head
        k_at += head
        v_at += head


@micropython.viper
def attention_backward(hh: int, p: int, dq, dk, dv, dout, q, k, v, probs, scratch, T: int,
                       NH: int, sh_dp: int, sh_p: int, sh_qk: int, glo: int, ghi: int,
                       bg: int, ba: int):
    """Forward: score = q.k / 2, p = softmax(score), out = p v. Per head (section 7):
    1. dp[t,s] = sat(rnd(dot(dout[t], v[s]), sh_dp), G) for s <= t, sh_dp = Fa
    2. dv[s] = sat(rnd(sum_{t>=s} p[t,s] * dout[t], sh_p), G), sh_p = 15
    3. pd[t] = rnd(sum_{s<=t} p[t,s] * dp[t,s], sh_p) (|pd| <= 2**15, not saturated);
       diff = sat(dp - pd, G); ds[t,s] = rnd(p[t,s] * diff, 16)
    4. dq[t] = sat(rnd(sum_{s<=t} ds[t,s] * k[s], sh_qk), G),
       dk[s] = sat(rnd(sum_{t>=s} ds[t,s] * q[t], sh_qk), G), sh_qk = Fa
    dq, dk, dv, dout (T, C) G = [glo, ghi] (bg bytes: 1 or 2); q, k, v (T, C) A (ba bytes:
    1 or 2), C = NH * HS, HS = _HS = 4; probs (NH, T, T) uint16 Q15 as the forward wrote
    them (each row's sum at most 2**15 + T/2, softmax's); scratch (T, T) int16: dp (in G),
    then ds (|ds| <= 2**14), of one head. T <= 16; sh_dp = sh_qk = Fa <= 15, sh_p = 15.
    Only the pairs s <= t: p[t,s] = 0 for s > t (the forward's mask), and so ds[t,s] =
    rnd(0, 16) = 0 there: those terms add nothing to the exact sums. The dot products are
    inline, each row's four words loaded once (a call of dot_rows costs about 1,700
    instructions): dp, dv, dq and dk as the int32 pair of 3.7, rounded by its recipe for
    shifts below 16; pd's sum in one int32 (below).
    hh and p: pass 0 (scratch that viper keeps in registers: a pair's high half and the
    product)."""
    pp16 = ptr16(probs)  # uint16 loads: p in [0, 2**15]
    pw16 = ptr16(scratch)
    pg8 = ptr8(dout)  # the other buffers (int(pg8): an address, as attention_forward's)
    pq8 = ptr8(q)
    pk8 = ptr8(k)
    pv8 = ptr8(v)
    pdq8 = ptr8(dq)
    pdk8 = ptr8(dk)
    pdv8 = ptr8(dv)
    a_head = _HS * ba  # bytes of one head's slice of a row of A
    g_head = _HS * bg  # and of G
    a_row = NH * a_head  # from a row of q, k or v to the next
    g_row = NH * g_head  # from a row of dout, dq, dk or dv to the next
    g_at = int(pg8)
    v_at = int(pv8)
    half_p = (1 << sh_p) >> 1
    half_dp = (1 << sh_dp) >> 1
    lim_dp = 1 << (14 + sh_dp)
    for h in range(NH):
        base = h * T * T  # probs[h, 0, 0]
        # 1. out = p v, so dp[t,s] = dout[t] . v[s]; 3. p = softmax(score): ds = p * (dp -
        # sum_s p dp), and the /2 of the score; row t of dp, then of ds, in the scratch
        for t in range(T):
            row = t * T
            # pd's exact sum fits one int32: sum_s p[t,s] <= 2**15 + T/2 (softmax rounds each
            # p once) and |dp| <= 2**15, so |S| < 2**31; rnd(S, sh_p) is within +-2**16, the
            # value the int32 pair gives (3.7, pd unsaturated)
            acc = 0
            b_at = g_at + t * g_row
            bx = bg
            for s in range(row - 1, row + t + 1):  # s = row - 1: dout[t]'s words, then v[s]'s
                if bx == 2:
                    pa = ptr16(b_at)
                    x0 = (pa[0] ^ 0x8000) - 0x8000
                    x1 = (pa[1] ^ 0x8000) - 0x8000
                    x2 = (pa[2] ^ 0x8000) - 0x8000
                    x3 = (pa[3] ^ 0x8000) - 0x8000
                else:
                    pb = ptr8(b_at)
                    x0 = (pb[0] ^ 0x80) - 0x80
                    x1 = (pb[1] ^ 0x80) - 0x80
                    x2 = (pb[2] ^ 0x80) - 0x80
                    x3 = (pb[3] ^ 0x80) - 0x80
                if s < row:
                    g0 = x0
                    g1 = x1
                    g2 = x2
                    g3 = x3
                    b_at = v_at
                    bx = ba
                    continue
                b_at += a_row
                p = g0 * x0
                hh = p >> 16
                ll = p & _HALF_MASK
                p = g1 * x1
                hh += p >> 16
                ll += p & _HALF_MASK
                p = g2 * x2
                hh += p >> 16
                ll += p & _HALF_MASK
                p = g3 * x3
                hh += p >> 16
                ll += p & _HALF_MASK
                hh += ll >> 16  # sat(rnd(S, sh_dp), G) from the pair (3.7, sh_dp < 16)
                ll &= _HALF_MASK
                if hh >= lim_dp:
                    x = ghi
                elif hh < 0 - lim_dp:
                    x = glo
                else:
                    x = (hh << (16 - sh_dp)) + ((ll + half_dp) >> sh_dp)
                    if x > ghi:
                        x = ghi
                    if x < glo:
                        x = glo
                pw16[s] = x
                acc += pp16[base + s] * x
            pd = (acc + half_p) >> sh_p
            for s in range(row, row + t + 1):
                diff = ((pw16[s] ^ 0x8000) - 0x8000) - pd
                if diff > ghi:
                    diff = ghi
                if diff < glo:
                    diff = glo
                pw16[s] = (pp16[base + s] * diff + (1 << (_DS_SHIFT - 1))) >> _DS_SHIFT
        # 2. out = p v, so dv[s] = sum_{t>=s} p[t,s] dout[t] (which = 0); 4. score = q.k / 2
        # (the /2 is in ds): dk[s] = sum_{t>=s} ds[t,s] q[t] (1), dq[t] = sum_{s<=t} ds[t,s]
        # k[s] (2). Output row o sums over j: w[j, o] x[j] (columns) or w[o, j] x[j] (rows),
        # four pairs, one a column d of the head
        for which in range(3):
            if not which:
                w0 = int(pp16) + base + base  # p's words, unsigned: (w ^ 0) + 0
                sw = 0
                x_at = g_at
                x_row = g_row
                bx = bg
                y_at = int(pdv8)
                sh = sh_p
            else:
                w0 = int(pw16)  # ds's words, signed
                sw = 0x8000
                x_at = int(pq8) if which == 1 else int(pk8)
                x_at += h * a_head
                x_row = a_row
                bx = ba
                y_at = int(pdk8) if which == 1 else int(pdq8)
                sh = sh_qk
            nw = 0 - sw  # a word w is (w ^ sw) + nw (not (w ^ sw) - sw: see dot_rows)
            half = (1 << sh) >> 1
            lim = 1 << (14 + sh)
            y_at += h * g_head
            w_j = T + T if which < 2 else 2  # bytes from w[j, o] to w[j + 1, o] (w[o, j + 1])
            for o in range(T):
                j0 = o if which < 2 else 0
                j1 = T if which < 2 else o + 1
                a_at = w0 + (o * T + j0) * 2  # &w[j0, o] (o = j0) or &w[o, j0] (j0 = 0)
                b_at = x_at + j0 * x_row
                hh = 0
                ll = 0
                h1 = 0
                l1 = 0
                h2 = 0
                l2 = 0
                h3 = 0
                l3 = 0
                for _ in range(j0, j1):
                    w = (ptr16(a_at)[0] ^ sw) + nw
                    if bx == 2:
                        pa = ptr16(b_at)
                        x0 = (pa[0] ^ 0x8000) - 0x8000
                        x1 = (pa[1] ^ 0x8000) - 0x8000
                        x2 = (pa[2] ^ 0x8000) - 0x8000
                        x3 = (pa[3] ^ 0x8000) - 0x8000
                    else:
                        pb = ptr8(b_at)
                        x0 = (pb[0] ^ 0x80) - 0x80
                        x1 = (pb[1] ^ 0x80) - 0x80
                        x2 = (pb[2] ^ 0x80) - 0x80
                        x3 = (pb[3] ^ 0x80) - 0x80
                    a_at += w_j
                    b_at += x_row
                    p = w * x0
                    hh += p >> 16
                    ll += p & _HALF_MASK
                    p = w * x1
                    h1 += p >> 16
                    l1 += p & _HALF_MASK
                    p = w * x2
                    h2 += p >> 16
                    l2 += p & _HALF_MASK
                    p = w * x3
                    h3 += p >> 16
                    l3 += p & _HALF_MASK
                for _ in range(_HS):  # the four sums in turn: sat(rnd(S, sh), G), sh < 16
                    hh += ll >> 16
                    ll &= _HALF_MASK
                    if hh >= lim:
                        x = ghi
                    elif hh < 0 - lim:
                        x = glo
                    else:
                        x = (hh << (16 - sh)) + ((ll + half) >> sh)
                        if x > ghi:
                            x = ghi
                        if x < glo:
                            x = glo
                    if bg == 2:
                        ptr16(y_at)[0] = x
                    else:
                        ptr8(y_at)[0] = x
                    y_at += bg
                    hh = h1
                    ll = l1
                    h1 = h2
                    l1 = l2
                    h2 = h3
                    l2 = l3
                y_at += g_row - g_head
        g_at += g_head
        v_at += a_head


# --- cross-entropy over the vocabulary (sections 6, 7) ---


# cross_entropy_forward(j, e, probs, logits, t, V, f): probs[t] = softmax(logits[t], f = Fl),
# returns the softmax denominator S for the loss (section 8); probs (T, V) int32 Q15, logits
# (T, V) int32 L. Exactly softmax of row t: the same function (no second function object, no
# call); j and e: pass 0.
cross_entropy_forward = softmax


@micropython.viper
def cross_entropy_backward(j: int, d: int, dlogits, probs, targets, T: int, V: int, s: int,
                           glo: int, ghi: int, bg: int):
    """loss = mean over T positions of 0 - log p[t, target]: d = p - 2**15 onehot (Q15),
    dlogits = sat((d + ((T << s) >> 1)) // (T << s), G), s = 15 - Fg (round half up of
    d / T, Q15 -> Fg bits; for q2.14 (d + T) // (2T)).
    dlogits (T, V) G = [glo, ghi] (bg bytes); probs (T, V) int32 Q15; targets (T,) uint8.
    j and d: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    pd8 = ptr8(dlogits)
    pd16 = ptr16(int(pd8))
    pp = ptr32(probs)
    pt = ptr8(targets)
    den = T << s
    half = den >> 1
    j = 0  # row t, column j - t * V
    for t in range(T):
        target = j + int(pt[t])
        end = j + V
        while j < end:
            d = int(pp[j])  # in [0, 2**15]: no sign extension needed
            if j == target:
                d -= PROB_ONE
            d = (d + half) // den
            if d > ghi:
                d = ghi
            elif d < glo:
                d = glo
            if bg == 2:
                pd16[j] = d
            else:
                pd8[j] = d
            j += 1


# --- Adam, per parameter (section 9) ---


@micropython.viper
def adam_update(vi: int, root: int, store, m, v, g, comp, n: int, i0: int, js: int, j0: int,
                alpha: int, sh_m: int, sh_s: int, e: int, u: int, mode: int, key: int, lo: int,
                hi: int, hm: int, hv: int, bs: int, bv: int) -> int:
    """One Adam step for parameters i0 .. i0+n-1, the flat indices (g holds their n
    gradients; store and comp hold them from index js, m and v from index j0: 0 for
    buffers of those n, i0 for whole ones): section 9, 9.1-9.5, and 9.6's roundings.
    alpha (<= 2**15, Falpha bits) is the step's bias-corrected step size
    (firmware/adam.py); sh_m = Fp - Fm, sh_s = Fp - Fh (Fh = Fv / 2), either sign;
    e = 13 + Fh - Fm >= 0; u = Falpha + 13 - F_store (0..30); mode: 0 nearest, 1 floor,
    2 stochastic with r = hash30((key + i) & M30), key = key(seed, ROUND, step), i the flat
    index, 3 pseudo, 4 kahan (comp: int8 compensations, else unused). store the weight
    store S = [lo, hi] in bs bytes (1, 2, 4), a whole two's complement range where bs = 2
    (the policy's); m int32, |m| <= hm; v int32 in [0, hv], hv <= 2**30
    (bv = 4), or bv = -4: v that becomes isqrt(v) (block-scaled v's wide values, 9.6:
    block_encode stores the roots); g (n,) int32 P, |g| <= 2**30. m and v of 8 or 16 bits
    are widened to int32 by the caller and narrowed after (blockadam.gather, as block-
    scaled state): one container here, 342 bytes less xtensawin code. Returns the number of
    stalled updates (delta != 0 rounded to d = 0). vi and root: pass 0 (scratch: viper keeps
    a function's first two locals in registers; the loop keeps in them the values it reads
    most, one after the other: v and g (then gs), vn and isqrt(v), |m| and den, |r| and
    delta, the 16-bit store's word)."""
    ps8 = ptr8(store)
    pm8 = ptr8(m)
    pv8 = ptr8(v)
    pc8 = ptr8(comp)
    pg32 = ptr32(g)
    aw = int(ps8) + bs * js  # byte addresses, one step a parameter
    am = int(pm8) + 4 * j0
    av = int(pv8) + 4 * j0
    pc = ptr8(int(pc8) + js)
    ag = int(pg32)
    g0 = ag
    end = ag + 4 * n
    one = 1
    s32 = one << 31
    big = one << 30  # the kernel range of 9.1
    # req(g, sh, fmt) for a shift of either sign; rnd as (g >> s) + ((g >> (s-1)) & 1),
    # which cannot overflow for any int32 g
    m_ls = 0 - sh_m if sh_m < 0 else 0
    m_hi = big >> m_ls
    m_lo = 0 - m_hi
    gs_rs = sh_s if sh_s > 0 else 0
    gs_ls = 0 - sh_s if sh_s < 0 else 0
    gs_hi = 32767 >> gs_ls
    gs_lo = 0 - (32768 >> gs_ls)
    # mul15 without its split (below) where the bounds of int32 m and v allow it
    # (unsplit: 0 where the policy allows it, else 2**30, which fails the test below)
    unsplit = 0 if (bv == 4 and sh_m == 0 and sh_s >= 7 and hm >= 1 << 18
                    and hv >= (1 << 22) - 1) else big
    # a 16-bit store, nearest or floor; [lo, hi] is a whole two's complement range (the
    # policy's stores of 9 to 16 bits), so w is in it where (w - lo) & out_w == 0, out_w
    # = -(hi - lo + 1) = 2 lo (also within int32 for the 32-bit store's -2**30)
    out_w = lo + lo
    short = bs == 2 and mode <= _ROUND_FLOOR
    # the store's width and the rounding as bools, tested per parameter (a bool's test costs
    # less than a comparison)
    s8 = bs == 1
    s16 = bs == 2
    kahan = mode == _ROUND_KAHAN
    neg_alpha = 0 - alpha  # the update's sign with it
    roots = bv < 0
    half_s = (1 << gs_rs) >> 1
    # (a << e) + den/2 <= 2**30 for a <= a_lim (den <= 2**15 + 1): the quotient of 9.4
    # needs no test before it
    a_lim = (big - (1 << 14)) >> e
    # the ratio reaches 4 where a * 2**e >= den * 2**15
    big_sh = 15 - e if e <= 15 else 0
    small_sh = e - 15 if e > 15 else 0
    small_add = (1 << small_sh) - 1
    half_u = (1 << u) >> 1
    add_u = half_u if mode == _ROUND_NEAREST else 0  # nearest and floor: (delta + add_u) >> u
    rand_sh = 30 - u
    ph = u >> 1  # pseudo: the low ph bits of delta stand in for the random number
    ph_mask = (1 << ph) - 1
    ph_sh = u - ph
    uk = u - _KAHAN_BITS  # kahan: rnd(delta, u - 8), u >= 13
    half_uk = 1 << (uk - 1) if uk > 0 else 0
    key += i0
    stalled = 0
    while ag < end:
        root = (ptr32(ag)[0] ^ s32) - s32  # g (root: a register, free until 9.3)
        mi = (ptr32(am)[0] ^ s32) - s32
        vi = int(ptr32(av)[0])  # v >= 0: no sign extension needed
        if not ((mi + 262144) | (root + 262144) | (vi >> 3) | unsplit) >> 19:
            # int32 m and v with |m|, |g| <= 2**18 (m, g in [-2**18, 2**18)) and v < 2**22:
            # every product below is under 2**31 - 2**14 (2**18 C1, 2**22 C2, gs**2 C2 with
            # |gs| <= 2**(18 - sh_s) <= 2**11), so mul15 needs no split, and with
            # x (2**15 - c) = x 2**15 - x c, mul15(x, 2**15 - c) = x + ((2**14 - x c) >> 15);
            # gs = rnd(g, sh_s) as (g + half) >> sh_s (no overflow), within 16 bits. After,
            # m in [-2**18, 2**18 - 1] (at m = g = -2**18, 2**18 - 1) and v <= 2**22 - 1 (at
            # v = 2**22 - 1, |gs| = 2**11): within hm and hv, no saturation
            mi = mi + ((16384 - mi * _ADAM_C1) >> 15) + ((root * _ADAM_C1 + 16384) >> 15)
            root = (root + half_s) >> sh_s  # gs
            vi = vi + ((16384 - vi * _ADAM_C2) >> 15) + ((root * root * _ADAM_C2 + 16384) >> 15)
            ptr32(am)[0] = mi
            ptr32(av)[0] = vi
        else:
            gi = root
            # 9.1 m = b1 m + (1 - b1) gm, gm = req(g, Fp - Fm, +-2**30), each product by
            # mul15(x, c) split in 16-bit halves, saturated to [-hm, hm]
            gm = gi  # sh_m = 0: gm = g, already within +-2**30
            if sh_m > 0:  # within +-2**30 as g is
                gm = (gi >> sh_m) + ((gi >> (sh_m - 1)) & 1)
            elif sh_m < 0:  # a left shift, saturated to +-2**30
                if gi > m_hi:
                    gm = big
                elif gi < m_lo:
                    gm = 0 - big
                else:
                    gm = gi << m_ls
            mi = ((mi >> 15) * _ADAM_K1 + (((mi & 0x7FFF) * _ADAM_K1 + 16384) >> 15)
                  + (gm >> 15) * _ADAM_C1 + (((gm & 0x7FFF) * _ADAM_C1 + 16384) >> 15))
            if mi > hm:
                mi = hm
            if mi < 0 - hm:
                mi = 0 - hm
            # 9.2 v = b2 v + (1 - b2) gs^2 with gs = req(g, Fp - Fs, 16-bit word), in [0, hv]
            gs = gi
            if gs_rs > 0:
                gs = (gi >> gs_rs) + ((gi >> (gs_rs - 1)) & 1)
            if gs > gs_hi:
                gs = 32767
            elif gs < gs_lo:
                gs = 0 - 32768
            else:
                gs = gs << gs_ls
            g2 = gs * gs
            vi = ((vi >> 15) * _ADAM_K2 + (((vi & 0x7FFF) * _ADAM_K2 + 16384) >> 15)
                  + (g2 >> 15) * _ADAM_C2 + (((g2 & 0x7FFF) * _ADAM_C2 + 16384) >> 15))
            if vi > hv:
                vi = hv
            ptr32(av)[0] = vi  # (bv = -4: the root below takes v's place)
            ptr32(am)[0] = mi
        # 9.3 den = isqrt(v) + 1. root takes vn, v normalized by an even shift 2 s2 into
        # [64, 256) (v < 256: vn = v); 16 sqrt(vn) from one parabola, vn (1003 - vn) / 2**10
        # + 71 (within 2 of it on [64, 256)), scaled back is within -2..+4 of the root for
        # s2 <= 4 (v < 2**16, exact corrections both ways after); for v >= 2**16 one
        # Newton step brings it to 0..+3 above the root (integer Newton never goes below
        # isqrt(v)): corrections down only. The ranges from every v < 2**22, all k*k-1..
        # k*k+1 up to 2**30 and 200K random v in each 2**k, k = 24..29; every product below
        # 2**31 (root <= 2**15 + 4)
        root = vi
        if root >= 1 << 16:
            root >>= 10
            s2 = 5
            while root >= 1 << 8:
                root >>= 2
                s2 += 1
            root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4
            root = (root + vi // root) >> 1
            while root * root > vi:
                root -= 1
        else:
            # rs = 4 - s2: (16 sqrt(vn)) << s2 >> 4 as one right shift
            if root >= 1 << 12:
                if root >= 1 << 14:
                    root >>= 8
                    rs = 0
                else:
                    root >>= 6
                    rs = 1
            elif root >= 1 << 8:
                if root >= 1 << 10:
                    root >>= 4
                    rs = 2
                else:
                    root >>= 2
                    rs = 3
            else:
                rs = 4
            root = (((root * (1003 - root)) >> 10) + 71) >> rs
            while root * root > vi:
                root -= 1
            while root * root + root + root < vi:  # (root + 1)**2 <= v
                root += 1
        if roots:
            ptr32(av)[0] = root
        # 9.4 r = m / den in Q13, clamped to +-4. The registers from here: root = den,
        # vi = a = |m| (v is stored), then vi = |r| (r's sign in alpha_s)
        root += 1
        if mi < 0:
            vi = 0 - mi
            alpha_s = neg_alpha
        else:
            vi = mi
            alpha_s = alpha
        if vi > a_lim:
            # the clamp's test, a << e >= den << 15, written as a >= den << (15 - e)
            # (e <= 15) or a >= ceil(den / 2**(e - 15)), free of overflow (one shift is 0)
            if vi >= ((root << big_sh) + small_add) >> small_sh:
                vi = _R_MAX
            else:
                # ((a << e) + den/2) // den from the shortfall s = (den << 15) - (a << e):
                # 2**15 + (den/2 - s) // den. Here a << e < den << 15 <= 2**30 + 2**15
                # (int32) and a << e > 2**30 - 2**14 (a > a_lim), so 0 < s < 2**15 + 2**14:
                # the dividend within +-2**16 ((a << e) + den/2 itself can pass 2**30, the
                # bound of viper's `//` operands), the quotient <= 2**15
                vi = _R_MAX + ((root >> 1) - ((root << 15) - (vi << e))) // root
        else:
            vi = ((vi << e) + (root >> 1)) // root
            if vi > _R_MAX:
                vi = _R_MAX
        # 9.5 the update in Falpha + 13 bits, |delta| <= 2**30, requantized by u bits with
        # the run's rounding mode, then store - d, saturated. The registers: root = delta,
        # vi = the short store's word
        root = alpha_s * vi
        d = (root + add_u) >> u  # nearest and floor; the other modes below
        if short:  # a 16-bit store minus d (|d| <= 2**30) stays within int32
            vi = ((ptr16(aw)[0] ^ 0x8000) - 0x8000) - d
            if (vi - lo) & out_w:  # outside [lo, hi]
                vi = hi if vi > hi else lo
            ptr16(aw)[0] = vi
        else:
            delta = root
            j = (ag - g0) >> 2
            if s8:  # (int8's container first)
                w = (ptr8(aw)[0] ^ 0x80) - 0x80
            elif s16:
                w = (ptr16(aw)[0] ^ 0x8000) - 0x8000
            else:
                w = (ptr32(aw)[0] ^ s32) - s32
            if kahan:
                # 9.6: t = (w << 8) + c - rnd(delta, u - 8); w = sat(rnd(t, 8), W) below;
                # c = clamp(t - (w << 8), -2**7, 2**7 - 1)
                d = (delta + half_uk) >> uk
                t = (w << _KAHAN_BITS) + ((pc[j] ^ 0x80) - 0x80) - d
                w = (t + _KAHAN_HALF) >> _KAHAN_BITS
            else:
                if mode == _ROUND_PSEUDO:  # 9.6: RNG-free, the low bits of delta itself
                    d = (delta + ((delta & ph_mask) << ph_sh)) >> u
                elif mode == _ROUND_STOCHASTIC:  # r30 = hash30((key + i) & M30), from prng
                    x = (key + j) & _M30
                    for _ in range(2):
                        x = ((x ^ (x >> 16)) * _HASH_MUL) & _M30
                    d = (delta + ((x ^ (x >> 16)) >> rand_sh)) >> u
                # (u = 0: every mode gives d = delta, the random or pseudo addend being 0)
                # store - d in int32 for every store of up to 32 bits
                if d < 0 and w > hi + d:
                    w = hi
                else:
                    w = w - d
            if w > hi:
                w = hi
            if w < lo:
                w = lo
            if kahan:
                c = t - (w << _KAHAN_BITS)
                if c > _KAHAN_HALF - 1:
                    c = _KAHAN_HALF - 1
                if c < 0 - _KAHAN_HALF:
                    c = 0 - _KAHAN_HALF
                pc[j] = c
            if s8:
                ptr8(aw)[0] = w
            elif s16:
                ptr16(aw)[0] = w
            else:
                ptr32(aw)[0] = w
        if not d and root:  # delta != 0
            stalled += 1
        ag += 4
        am += 4
        av += 4
        aw += bs
    return stalled


# --- buffer helpers: containers to int32 and back, copies (no allocation) ---


@micropython.viper
def widen(ao: int, at: int, out, src, off: int, n: int, nb: int):
    """out[0:n] (int32) = src[off:off+n]: nb = 1, 2 or 4 bytes a signed value (sign-
    extended), -1 or -2 an unsigned one.
    ao and at: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    step = nb if nb > 0 else 0 - nb
    sx = 0x8000 if nb == 2 else (0x80 if nb == 1 else 0)  # a signed value's sign bit
    nsx = 0 - sx  # (x ^ sx) + nsx: x sign-extended (written so, not as the s32 idiom)
    po32 = ptr32(out)
    ps8 = ptr8(src)
    ao = int(po32)  # byte addresses, one step a value
    at = int(ps8) + step * off
    end = ao + 4 * n
    while ao < end:
        if step == 2:
            x = int(ptr16(at)[0])
        elif step == 1:
            x = int(ptr8(at)[0])
        else:
            x = int(ptr32(at)[0])  # (stored as its low 32 bits below)
        ptr32(ao)[0] = (x ^ sx) + nsx
        ao += 4
        at += step


@micropython.viper
def narrow(x: int, ao: int, dst, off: int, src, n: int, lo: int, hi: int, nb: int) -> int:
    """dst[off:off+n] (nb bytes a value; -1, -2 as 1, 2) = src[0:n] (int32); returns how
    many values lay outside [lo, hi] (a checkpoint that does not fit the class's format).
    x and ao: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    step = nb if nb > 0 else 0 - nb
    pd8 = ptr8(dst)
    ps32 = ptr32(src)
    at = int(pd8) + step * off  # byte addresses, one step a value
    ao = int(ps32)
    end = ao + 4 * n
    one = 1
    s32 = one << 31
    bad = 0
    while ao < end:
        x = (ptr32(ao)[0] ^ s32) - s32
        if x > hi or x < lo:
            bad += 1
        if step == 2:
            ptr16(at)[0] = x
        elif step == 1:
            ptr8(at)[0] = x
        else:
            ptr32(at)[0] = x
        ao += 4
        at += step
    return bad


@micropython.viper
def copy32(ad: int, at: int, dst, d0: int, src, s0: int, n: int):
    """dst[d0:d0+n] = src[s0:s0+n], int32 buffers.
    ad and at: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    ad = int(ptr32(dst)) + 4 * d0  # byte addresses, one step a value
    at = int(ptr32(src)) + 4 * s0
    end = at + 4 * n
    while at < end:
        ptr32(ad)[0] = ptr32(at)[0]
        ad += 4
        at += 4


# --- block-scaled Adam state (section 9.6) ---


@micropython.viper
def block_decode(x: int, aw: int, w, q, k, a: int, n: int, nblk: int, nb: int, sq: int):
    """w[0:n] (int32) = the wide values of parameters a .. a+n-1 (a a multiple of nblk):
    q_i << k_j, signed mantissas q (m), or with sq (v, stored through its square root)
    (q_i << k_j)**2 of unsigned ones; q in nb bytes (1 or 2), k (blocks,) uint8 shifts.
    x and aw: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    pk = ptr8(k)
    sx = 0 if sq else (0x8000 if nb == 2 else 0x80)  # m's sign bit (v's mantissas: unsigned)
    nsx = 0 - sx  # (x ^ sx) + nsx: x sign-extended (written so, not as the s32 idiom)
    blk = a // nblk
    aw = int(ptr32(w))  # byte addresses, one step a value
    aq = int(ptr8(q)) + nb * a
    last = aw + 4 * n
    while aw < last:  # a block at a time
        kj = int(pk[blk])
        blk += 1
        end = aw + 4 * nblk
        if end > last:
            end = last
        while aw < end:
            x = int(ptr16(aq)[0]) if nb == 2 else int(ptr8(aq)[0])
            x = ((x ^ sx) + nsx) << kj
            if sq:
                x = x * x  # (2**15)**2 at most: decoded roots stay <= 2**15
            ptr32(aw)[0] = x
            aw += 4
            aq += nb


@micropython.viper
def block_encode(x: int, aw: int, q, k, w, a: int, n: int, nblk: int, bits: int, nb: int, sq: int):
    """Store the wide values w[0:n] of parameters a .. a+n-1 (a a multiple of nblk)
    block-scaled (9.6): per block the smallest shift k_j whose rounded maximum fits the
    mantissa, then q_i = rnd(x_i, k_j) with x = w: m (signed, |q| <= 2**(bits-1) - 1), or
    with sq the roots isqrt(v) that adam_update left for bv = -4 (unsigned,
    q <= 2**bits - 1). q in nb bytes, k (blocks,) uint8.
    x and aw: pass 0 (scratch that viper keeps in registers, as dot_rows's hh and ll)."""
    aw = int(ptr32(w))  # byte addresses, one step a value
    aq = int(ptr8(q)) + nb * a
    pk = ptr8(k)
    one = 1
    s32 = one << 31
    tbits = bits if sq else bits - 1  # bitlen(top)
    top = (1 << tbits) - 1
    blk = a // nblk
    last = aw + 4 * n
    while aw < last:  # a block at a time
        end = aw + 4 * nblk
        if end > last:
            end = last
        big = 0
        at = aw
        while at < end:
            x = (ptr32(at)[0] ^ s32) - s32
            if x < 0:
                x = 0 - x
            if x > big:
                big = x
            at += 4
        x = 0  # max(0, bitlen(big) - tbits)
        while (big >> x) > top:
            x += 1
        half = (1 << x) >> 1
        if ((big + half) >> x) > top:
            half = 1 << x
            x += 1
        kj = x
        while aw < end:
            x = (((ptr32(aw)[0] ^ s32) - s32) + half) >> kj
            if nb == 2:
                ptr16(aq)[0] = x
            else:
                ptr8(aq)[0] = x
            aw += 4
            aq += nb
        pk[blk] = kj
        blk += 1
