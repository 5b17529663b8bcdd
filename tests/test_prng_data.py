"""The counter PRNG (qgpt/prng.py) and the names data (qgpt/data.py).

1. hash30, key, draws and permute against plain-Python implementations written here from
   docs/arithmetic.md section 4; hash30 is a bijection (its inverse is written here too)
   and gives the same bits on a 32-bit word that wraps.
2. permute is a permutation; doc_index covers every name once per epoch.
3. init_raw: the contract's formula, its statistics and its bound.
4. data: the validation split (about 10%, a function of the name alone), encode / decode.
"""

import math
import zlib

import numpy as np
import pytest

from qgpt import data, prng
from qgpt.params import BLOCK, BOS

M30 = 2**30 - 1
K = 0x045D9F3B

# --- 1. the contract's PRNG in plain Python -----------------------------------


def c_hash30(x):
    x &= M30
    x ^= x >> 16
    x = (x * K) & M30
    x ^= x >> 16
    x = (x * K) & M30
    x ^= x >> 16
    return x


def c_hash30_wrapping32(x):
    """The same on a 32-bit word that wraps (the ESP32's viper ints): only the low 30 bits
    of each product are kept, and those a 32-bit multiply gets right."""
    x &= M30
    x ^= x >> 16
    x = ((x * K) & 0xFFFFFFFF) & M30
    x ^= x >> 16
    x = ((x * K) & 0xFFFFFFFF) & M30
    x ^= x >> 16
    return x


K_INV = pow(K, -1, 2**30)


def c_unhash30(y):
    """The inverse of hash30: x ^= x >> 16 undoes itself on 30 bits (16 + 16 >= 30), and
    multiplication by the odd K is undone by K's inverse mod 2**30."""
    y ^= y >> 16
    y = (y * K_INV) & M30
    y ^= y >> 16
    y = (y * K_INV) & M30
    y ^= y >> 16
    return y


def c_key(seed, stream, *counters):
    h = c_hash30(seed & M30)
    for c in (stream, *counters):
        h = c_hash30(h ^ (c & M30))
    return h


def c_draw(k, i):
    return c_hash30((k + i) & M30)


def c_perm(i, n, k):
    h = max(1, math.ceil((n - 1).bit_length() / 2))
    mask = 2**h - 1

    def feistel(x):
        left, right = x >> h, x & mask
        for r in range(4):
            left, right = right, left ^ (c_hash30(k ^ (r << 24) ^ right) & mask)
        return (left << h) | right

    x = feistel(i)
    while x >= n:
        x = feistel(x)
    return x


SAMPLE = [0, 1, 2, 3, 0xFFFF, 0x10000, 0x10001, M30 - 1, M30, 2**30, 2**31 - 1, 2**32 + 5,
          123456789, 0x2AAAAAAA, 0x15555555]


def test_hash30_equals_the_contract():
    rng = np.random.default_rng(1)
    xs = SAMPLE + rng.integers(0, 2**40, 3000).tolist()
    for x in xs:
        assert prng.hash30(x) == c_hash30(x), f"hash30({x})"
        assert c_hash30_wrapping32(x) == c_hash30(x), f"32-bit wrap of hash30({x})"
    arr = np.array(xs, dtype=np.uint64)
    assert prng.hash30(arr).tolist() == [c_hash30(x) for x in xs]


def test_hash30_is_a_bijection():
    """Proved by its inverse (on samples), and seen directly: 2**18 consecutive inputs and
    2**18 random ones give distinct outputs (a random map would collide ~32 times)."""
    rng = np.random.default_rng(2)
    for x in SAMPLE[:10] + rng.integers(0, 2**30, 2000).tolist():
        y = prng.hash30(x)
        assert 0 <= y <= M30
        assert c_unhash30(y) == x & M30, f"unhash(hash30({x})) = {c_unhash30(y)}"
    for block in (np.arange(2**18, dtype=np.uint64) + np.uint64(2**29 - 2**17),
                  np.unique(rng.integers(0, 2**30, 2**18)).astype(np.uint64)):
        out = prng.hash30(block)
        assert np.unique(out).size == block.size


@pytest.mark.parametrize("seed", [0, 42, 2**30 + 42, -1, 2**40 + 3])
def test_key_equals_the_contract(seed):
    for stream, counters in [(1, ()), (1, (0,)), (1, (8,)), (2, (0,)), (2, (7,)),
                             (3, (999,)), (4, (19,)), (3, (2**31 + 1,))]:
        assert prng.key(seed, stream, *counters) == c_key(seed, stream, *counters)


@pytest.mark.parametrize("seed", [0, 42, 2**30 + 42, -1, 2**40 + 3])
def test_keys_of_many_counters_equal_the_contract(seed):
    counters = [0, 1, 15, 16, 999, 2**30 - 1, 2**30, 2**31 + 1]
    for stream in (1, 3):
        assert prng.keys(seed, stream, counters) == [c_key(seed, stream, c) for c in counters]


@pytest.mark.parametrize("k", [0, 12345, M30 - 5, M30])
def test_draws_vectorised_equal_element_by_element(k):
    """draws(k, start, n)[i] = draw(k, start + i), across the 2**30 wrap-around too."""
    got = prng.draws(k, 3, 40)
    assert got.dtype == np.int64
    assert got.tolist() == [c_draw(k, 3 + i) for i in range(40)]
    assert got.tolist() == [int(prng.draws(k, 3 + i, 1)[0]) for i in range(40)]
    big = prng.draws(k, 0, 5000)
    assert big[1000:1100].tolist() == prng.draws(k, 1000, 100).tolist()


def test_draws_look_uniform():
    x = prng.draws(prng.key(42, 3, 0), 0, 200_000) / 2**30
    assert abs(x.mean() - 0.5) < 4 * math.sqrt(1 / 12 / x.size)
    counts = np.bincount((x * 16).astype(int), minlength=16)
    expected = x.size / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45, chi2  # 15 degrees of freedom: p ~ 1e-4


# --- 2. permutations and the data order ------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 28801])
def test_permute_is_a_permutation(n):
    k = prng.key(42, prng.STREAM_DATA, 0)
    perm = [prng.permute(i, n, k) for i in range(n)]
    assert sorted(perm) == list(range(n))
    step = max(1, n // 300)
    for i in range(0, n, step):
        assert perm[i] == c_perm(i, n, k), f"permute({i}, {n}) differs from the contract"
    if n >= 1000:  # and it shuffles: few fixed points, a different order per key
        assert sum(p == i for i, p in enumerate(perm)) < 10
        other = [prng.permute(i, n, k ^ 1) for i in range(0, n, step)]
        assert other != perm[::step]


def test_doc_index_covers_every_name_once_per_epoch():
    n, seed = 777, 42
    epochs = [[prng.doc_index(s, n, seed) for s in range(e * n, (e + 1) * n)] for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(n))
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0][:20] != [prng.doc_index(s, n, seed + 1) for s in range(20)]
    # the contract: step s trains on perm(s mod N, key(seed, 2, s div N))
    for s in (0, 5, 776, 777, 1600):
        assert prng.doc_index(s, n, seed) == c_perm(s % n, n, c_key(seed, 2, s // n))


# --- 3. init ------------------------------------------------------------------------


def c_init_raw(seed, j, size):
    k = c_key(seed, 1, j)
    out = []
    for i in range(size):
        z = sum(c_draw(k, 12 * i + d) >> 18 for d in range(12)) - 12 * 2048
        out.append(z * 5243)
    return out


@pytest.mark.parametrize("seed, j", [(42, 0), (42, 8), (7, 3)])
def test_init_raw_equals_the_contract(seed, j):
    assert prng.init_raw(seed, j, 50).tolist() == c_init_raw(seed, j, 50)


def test_init_raw_statistics():
    """Irwin-Hall of 12 uniforms of 12 bits: z has variance (4096**2 - 1) (std 1 in Q12), so
    w28 = z * 5243 has std 0.0800018 * 2**28; |z| <= 6 sigma, so |w28| < 2**27. Over 2**17
    values: the mean within 4 standard errors of the exact mean (-6 in Q12: -0.0015
    sigma), the std within 1% (its standard error is 0.2%)."""
    n = 2**17
    w = prng.init_raw(42, 5, n).astype(np.float64)
    sigma = math.sqrt(4096**2 - 1) * 5243
    assert sigma / 2**28 == pytest.approx(0.08, rel=1e-4)
    mean_exact = -6 * 5243
    assert abs(w.mean() - mean_exact) < 4 * sigma / math.sqrt(n), w.mean() / sigma
    assert w.std() == pytest.approx(sigma, rel=0.01)
    assert np.abs(w).max() <= 6 * 4096 * 5243 < 2**27
    assert np.all(w % 5243 == 0)
    # tails like a normal's: about 4.6% beyond 2 sigma, 0.27% beyond 3
    assert np.mean(np.abs(w) > 2 * sigma) == pytest.approx(0.0455, abs=0.004)
    assert np.mean(np.abs(w) > 3 * sigma) == pytest.approx(0.0027, abs=0.0008)
    # other tensors are other draws
    assert not np.array_equal(prng.init_raw(42, 4, 64), prng.init_raw(42, 5, 64))


# --- 4. names ------------------------------------------------------------------------


def test_validation_split_is_about_ten_percent_and_depends_on_the_name(tmp_path):
    ds = data.load()
    total = len(ds.train) + len(ds.val)
    assert abs(len(ds.val) / total - 0.10) < 0.005, len(ds.val) / total
    assert set(ds.train).isdisjoint(ds.val)
    # the split is a function of the name alone: crc32(name) % 10 == 0
    for name in ds.val[:200]:
        assert zlib.crc32(name.encode()) % 10 == 0
    # reorder the file and drop most of it: every name keeps its side
    names = list(ds.train[:3000]) + list(ds.val[:300])
    rng = np.random.default_rng(4)
    rng.shuffle(names)
    path = tmp_path / "shuffled.txt"
    path.write_text("\n".join(names) + "\n")
    small = data.load(path)
    assert set(small.val) == set(ds.val[:300])
    assert set(small.train) == set(ds.train[:3000])
    train = set(ds.train)
    assert list(small.train) == [n for n in names if n in train], "file order is kept"


def test_encode_decode():
    assert data.encode("emma") == [BOS, 4, 12, 12, 0, BOS]
    assert data.encode("") == [BOS, BOS]
    assert data.encode("az") == [BOS, 0, 25, BOS]
    assert data.decode([BOS, 25, 0, 1, BOS]) == "zab"
    ds = data.load()
    for name in ds.train[::50] + ds.val[::50]:
        ids = data.encode(name)
        assert len(ids) == len(name) + 2 <= BLOCK + 1
        assert all(0 <= i < 26 for i in ids[1:-1])
        assert data.decode(ids) == name
