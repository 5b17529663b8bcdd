"""The counter-based integer PRNG shared by host and firmware (docs/arithmetic.md, "PRNG").

Every random number is a pure function of (seed, stream, counters), never of a
generator's history, so the host may draw a whole tensor's numbers at once
while the device draws them one by one, and both get the same bits.

hash30 works modulo 2**30 with multipliers below 2**30: every step keeps the
low 30 bits exact on a 32-bit word that wraps and on a 64-bit word that does
not, so viper code on the ESP32 and on the x86-64 unix port agree.
"""

import numpy as np

from qgpt.params import INIT_STD

M30 = (1 << 30) - 1
SEED_BITS = 30  # key() keeps the low 30 bits of a seed: a larger seed would alias a smaller
MAX_SEED = M30  # one, so qgpt takes seeds 0 .. MAX_SEED only (runconfig.check_seed)
HASH_MUL = 0x045D9F3B  # odd, < 2**30: multiplication by it is a bijection mod 2**30

# streams: one per use, so no two uses ever share a number
STREAM_INIT = 1
STREAM_DATA = 2
STREAM_ROUND = 3
STREAM_SAMPLE = 4

INIT_DRAWS = 12  # Irwin-Hall: the sum of 12 uniforms has variance 1
INIT_UNIFORM_BITS = 12
INIT_Z_FRAC = 12  # z = sum of 12 draws - 12 * 2**11, an N(0, 1) sample in Q.12
INIT_STD_FRAC = 16
INIT_STD_Q = round(INIT_STD * (1 << INIT_STD_FRAC))  # 0.08 in Q.16 = 5243
INIT_FRAC = INIT_Z_FRAC + INIT_STD_FRAC  # init weights are exact in Q.28


def hash30(x):
    """A bijection of [0, 2**30) that mixes all bits; works on ints and uint64 arrays."""
    x = x & M30
    x = x ^ (x >> 16)
    x = (x * HASH_MUL) & M30
    x = x ^ (x >> 16)
    x = (x * HASH_MUL) & M30
    x = x ^ (x >> 16)
    return x


def key(seed, stream, *counters):
    """The 30-bit key of one use: hash30 chained over seed, stream and counters."""
    h = hash30(seed & M30)
    for c in (stream, *counters):
        h = hash30(h ^ (c & M30))
    return h


def keys(seed, stream, counters):
    """[key(seed, stream, c) for c in counters], the same numbers, with the part of the
    chain the counters share (seed, stream) hashed once."""
    h = hash30(hash30(seed & M30) ^ (stream & M30))
    return [hash30(h ^ (c & M30)) for c in counters]


def draws(k, start, count):
    """count 30-bit numbers hash30(k + start + i), i = 0..count-1, as int64.

    In uint32 when the counters fit it: hash30 keeps the low 30 bits exact on a 32-bit
    word that wraps, so the numbers are the same, at half the memory traffic (stochastic
    rounding draws one per parameter every step)."""
    if start + count > 1 << 32:
        i = np.arange(start, start + count, dtype=np.uint64)
        return hash30((np.uint64(k) + i) & np.uint64(M30)).astype(np.int64)
    x = np.arange(start, start + count, dtype=np.uint32)
    x += np.uint32(k & M30)  # mod 2**32: the low 30 bits of k + start + i
    return hash30_uint32(x, np.empty_like(x)).astype(np.int64)


_U32_M30, _U32_MUL, _U32_16 = np.uint32(M30), np.uint32(HASH_MUL), np.uint32(16)


def hash30_uint32(x, scratch, below_2_30=False):
    """hash30 of the low 30 bits of each element of the uint32 array x, in place (and
    returned); scratch: a uint32 array of x's shape for the shifted words; below_2_30: the
    caller knows every element is below 2**30 (hash30's first mask is then a no-op: skipped).

    hash30 keeps the low 30 bits exact on a 32-bit word that wraps, so these are hash30's
    numbers; in place, stochastic rounding's batch of draws allocates no memory."""
    if not below_2_30:
        x &= _U32_M30
    for _ in range(2):
        x ^= np.right_shift(x, _U32_16, out=scratch)
        x *= _U32_MUL  # wraps mod 2**32, exact mod 2**30
        x &= _U32_M30
    x ^= np.right_shift(x, _U32_16, out=scratch)
    return x


def init_raw(seed, tensor_index, size):
    """Initial weights of one tensor as exact integers in Q.28 (INIT_FRAC).

    Element i sums draws i*12 .. i*12+11 of key(seed, INIT, tensor_index), each
    cut to its top 12 bits: z = sum - 12 * 2**11 is N(0, 1) in Q.12 (Irwin-Hall,
    bounded by +-6), and the weight is z * round(0.08 * 2**16).
    """
    k = key(seed, STREAM_INIT, tensor_index)
    u = draws(k, 0, size * INIT_DRAWS) >> (30 - INIT_UNIFORM_BITS)
    z = u.reshape(size, INIT_DRAWS).sum(axis=1) - INIT_DRAWS * (1 << (INIT_UNIFORM_BITS - 1))
    return z * INIT_STD_Q


def _feistel(x, half_bits, k):
    mask = (1 << half_bits) - 1
    left, right = x >> half_bits, x & mask
    for r in range(4):
        left, right = right, left ^ (hash30(k ^ (r << 24) ^ right) & mask)
    return (left << half_bits) | right


def permute(i, n, k):
    """Element i of a pseudo-random permutation of range(n) under key k.

    A 4-round Feistel network on the smallest even bit width holding n, with
    cycle walking: no table, so the device shuffles a dataset it never holds.
    """
    assert 0 <= i < n
    half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
    x = _feistel(i, half_bits, k)
    while x >= n:
        x = _feistel(x, half_bits, k)
    return x


def doc_index(step, n_docs, seed):
    """The training document of a step: each epoch walks its own permutation."""
    epoch, i = divmod(step, n_docs)
    return permute(i, n_docs, key(seed, STREAM_DATA, epoch))
