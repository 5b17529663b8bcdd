"""The counter-based PRNG on the device (docs/arithmetic.md, section 4).

The same numbers as qgpt/prng.py: every random number is a pure function of
(seed, stream, counters). hash30 works modulo 2**30: on a 32-bit viper word the
product x * K wraps, on a 64-bit one it does not (it stays below 2**57), and the
low 30 bits, all that `& M30` keeps, are the same.

hash30 and the weight init are viper; key, the data order (a Feistel network
with cycle walking) and the rest are per-step scalars in plain Python (permute in viper
saved about 23 K instructions a step for 584 bytes of native code, which the budget of
issue 15's point 4 did not allow).
"""

import micropython
from micropython import const

M30 = const(1073741823)  # 2**30 - 1
_HASH_MUL = const(0x045D9F3B)

# streams: one per use
STREAM_INIT = const(1)
STREAM_DATA = const(2)
STREAM_ROUND = const(3)
STREAM_SAMPLE = const(4)

# weight init: Irwin-Hall sum of 12 uniforms of 12 bits, N(0, 1) in Q12, times 0.08 in Q16
_INIT_DRAWS = const(12)
_INIT_DRAW_SHIFT = const(18)  # 30 - 12: the top 12 bits of a draw
_INIT_OFFSET = const(24576)  # 12 * 2**11
_INIT_STD_Q16 = const(5243)  # round(0.08 * 2**16)
INIT_FRAC = const(28)  # the init weight z * 5243 is exact in Q28


@micropython.viper
def hash30(x: int) -> int:
    """A bijection of [0, 2**30) that mixes all bits."""
    x &= M30
    x ^= x >> 16
    x = (x * _HASH_MUL) & M30
    x ^= x >> 16
    x = (x * _HASH_MUL) & M30
    x ^= x >> 16
    return x


def key(seed, stream, *counters):
    """The 30-bit key of one use: hash30 chained over seed, stream and counters."""
    h = hash30(seed & M30)
    h = hash30(h ^ (stream & M30))
    for c in counters:
        h = hash30(h ^ (c & M30))
    return h


def draw(k, i):
    """Number i of the stream with key k."""
    return hash30((k + i) & M30)


@micropython.viper
def init_tensor(out, k: int, n: int, sh: int, lo: int, hi: int, nb: int):
    """Initial weights of one tensor (section 4, init): element i is
    z = sum_{d<12} (draw(k, 12 i + d) >> 18) - 12 * 2**11 (N(0, 1) in Q12),
    w28 = z * 5243 (Q28, |w28| < 2**27), stored as sat(rnd(w28, sh), [lo, hi])
    with sh = 28 - F_store (a left shift of at most 2 for wide master formats).
    k = key(seed, INIT, j) for tensor j. out (n,) in nb bytes a value (1, 2 or 4).
    Runs once per run: it calls hash30 12 times an element."""
    p8 = ptr8(out)
    p16 = ptr16(int(p8))
    p32 = ptr32(int(p8))
    rs = sh if sh > 0 else 0
    ls = 0 - sh if sh < 0 else 0
    half = (1 << rs) >> 1
    for i in range(n):
        z = 0 - _INIT_OFFSET
        c = k + i * _INIT_DRAWS
        for d in range(_INIT_DRAWS):
            z += int(hash30((c + d) & M30)) >> _INIT_DRAW_SHIFT
        w = (((z * _INIT_STD_Q16) + half) >> rs) << ls
        if w > hi:
            w = hi
        elif w < lo:
            w = lo
        if nb == 2:
            p16[i] = w
        elif nb == 4:
            p32[i] = w
        else:
            p8[i] = w


def permute(i, n, k):
    """Element i of the pseudo-random permutation of range(n) under key k: a 4-round
    Feistel network on 2h bits, h = max(1, ceil(bitlen(n - 1) / 2)), cycle walking
    (applied again while the result is >= n)."""
    b = 0  # bitlen(n - 1)
    x = n - 1
    while x:
        x >>= 1
        b += 1
    h = max(1, (b + 1) // 2)
    mask = (1 << h) - 1
    x = i
    while True:
        left, right = x >> h, x & mask
        for r in range(4):
            left, right = right, left ^ (hash30(k ^ (r << 24) ^ right) & mask)
        x = (left << h) | right
        if x < n:
            return x


def doc_index(step, n, seed):
    """The training document of a step (of n): each epoch walks its own permutation, of
    key(seed, STREAM_DATA, epoch), its hash30 chain written out here (a step leaves no
    garbage here: qgpt_train collects it only every few steps; and key's frame, with its
    tuple of counters, would go on the heap at each call)."""
    k = hash30(hash30(seed & M30) ^ STREAM_DATA)  # key(seed, STREAM_DATA)
    return permute(step % n, n, hash30(k ^ ((step // n) & M30)))
