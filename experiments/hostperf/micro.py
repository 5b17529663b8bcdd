"""Instructions of one snippet, counted by cachegrind (micro.sh runs it for two repeat
counts and prints the difference per call). usage: python micro.py NAME REPEATS"""

import sys

import numpy as np

from qgpt.int_shapes import ISQRT_ROOT_Q8, ISQRT_SHIFT_U8, isqrt_plus_one

rng = np.random.default_rng(1)
T = 7


def i16(*shape):
    return rng.integers(-(1 << 15), 1 << 15, size=shape, dtype=np.int64)


x64 = i16(T, 64)
x16 = i16(T, 16)
dy16 = i16(T, 16)
dy64 = i16(T, 64)
w_fc2 = i16(16, 64)
w_fc1 = i16(64, 16)
dw_fc2 = np.zeros((16, 64), np.int64)
dw_fc1 = np.zeros((64, 16), np.int64)
x64_32 = x64.astype(np.int32)
dy16_32 = dy16.astype(np.int32)
prod = np.empty((T, 16, 64), np.int32)
prod64 = np.empty((T, 16, 64), np.int64)
s32 = np.empty((16, 64), np.int32)


def dw_matmul():  # fc2's dW, today's
    np.matmul(dy16.T, x64, out=dw_fc2)


def dw_bcast32():  # products in int32 (exact: 16x16 bits), sum in int64
    np.multiply(dy16_32[:, :, None], x64_32[:, None, :], out=prod)
    np.add.reduce(prod, axis=0, dtype=np.int64, out=dw_fc2)


def dw_bcast32_cast():
    a = dy16.astype(np.int32)
    b = x64.astype(np.int32)
    np.multiply(a[:, :, None], b[:, None, :], out=prod)
    np.add.reduce(prod, axis=0, dtype=np.int64, out=dw_fc2)


def dw_bcast64():
    np.multiply(dy16[:, :, None], x64[:, None, :], out=prod64)
    np.add.reduce(prod64, axis=0, out=dw_fc2)


def dw_einsum():
    np.einsum("to,ti->oi", dy16, x64, out=dw_fc2)


def dx_dot():  # fc2's dx: (T,16) @ (16,64)
    return np.dot(dy16, w_fc2)


def dx_bcast32():
    np.multiply(dy16_32[:, :, None], w32[None, :, :], out=prod)
    return np.add.reduce(prod, axis=1, dtype=np.int64)


w32 = w_fc2.astype(np.int32)


def fwd_einsum():  # fc1 forward: (T,16) x (64,16)
    return np.einsum("ti,oi->to", x16, w_fc1)


def mul32_only():
    np.multiply(dy16_32[:, :, None], x64_32[:, None, :], out=prod)


def mul32_inner_t():  # (O,I,T) layout: products with T innermost? no: outer products per t
    np.multiply(dy16_32.T[:, None, :], x64_32.T[None, :, :], out=prodT)


prodT = np.empty((16, 64, T), np.int32)


def red32_64():
    np.add.reduce(prod, axis=0, dtype=np.int64, out=dw_fc2)


def red32_32():
    np.add.reduce(prod, axis=0, out=s32)


def mul64_only():
    np.multiply(dy16[:, :, None], x64[:, None, :], out=prod64)


def red64():
    np.add.reduce(prod64, axis=0, out=dw_fc2)


A32 = rng.integers(-1000, 1000, 7168).astype(np.int32)
B32 = rng.integers(-1000, 1000, 7168).astype(np.int32)
C32 = np.empty(7168, np.int32)
A64, B64, C64 = A32.astype(np.int64), B32.astype(np.int64), np.empty(7168, np.int64)


def cmul32():
    np.multiply(A32, B32, out=C32)


def cmul64():
    np.multiply(A64, B64, out=C64)


def cadd64():
    np.add(A64, B64, out=C64)


def cshift64():
    np.right_shift(A64, 3, out=C64)


N = 4192
X64 = rng.integers(-(1 << 30), 1 << 30, (4, N))
X32 = X64.astype(np.int32)
F64 = np.array([[27853], [32440], [4915], [328]], dtype=np.int64)
F32 = F64.astype(np.int32)
S32 = np.empty((4, N), np.int32)
S32b = np.empty((4, N), np.int32)
S64 = np.empty((4, N), np.int64)
H32 = np.array(15, np.int32)
M32 = np.array(0x7FFF, np.int32)
V64 = rng.integers(0, 1 << 31, N)
V32 = V64.astype(np.int32)
I32 = np.empty(N, np.int32)
I64 = np.empty(N, np.int64)
U8 = np.empty(N, np.uint8)
S16 = np.array(16, np.int32)


def mul64_4n():
    np.multiply(X64, F64, out=S64)


def mul32_4n():
    np.multiply(X32, F32, out=S32)


def shift32_4n():
    np.right_shift(X32, H32, out=S32)


def shift64_4n():
    np.right_shift(X64, np.int64(15), out=S64)


def and32_4n():
    np.bitwise_and(X32, M32, out=S32)


def add32_4n():
    np.add(X32, X32, out=S32)


def iadd32_4n():
    S32b[...] += X32


def cast_64_32_n():
    np.copyto(I32, V64, casting="unsafe")


def cast_32_64_n():
    np.copyto(I64, V32)


def take_i64():
    ISQRT_SHIFT_U8.take(V64 >> 16, mode="wrap")


def take_i32():
    ISQRT_SHIFT_U8.take(V32 >> 16, mode="wrap")


def take_i32_out():
    ISQRT_SHIFT_U8.take(V32 >> 16, mode="wrap", out=U8)


def isqrt_today():
    isqrt_plus_one(V64, out=I64, narrow=True)


def div32():
    np.floor_divide(V32, F32[0], out=I32)


IDX64 = V64 >> 16
IDX32 = IDX64.astype(np.int32)
IDXP = IDX64.astype(np.intp)
T16 = ISQRT_ROOT_Q8.copy()
T64 = ISQRT_ROOT_Q8.astype(np.int64)
T32 = ISQRT_ROOT_Q8.astype(np.int32)
O16 = np.empty(N, np.uint16)


def take_only():
    T16.take(IDX64, mode="wrap")


def take_only_clip():
    T16.take(IDX64, mode="clip")


def take_only_raise():
    T16.take(IDX64)


def take_only_out():
    T16.take(IDX64, mode="wrap", out=O16)


def fancy16():
    T16[IDX64]


def fancy64():
    T64[IDX64]


def take64():
    T64.take(IDX64, mode="wrap")


def take32():
    T32.take(IDX64, mode="wrap")


def fancy32idx():
    T16[IDX32]


BIG32 = np.arange(100000, dtype=np.int32)
BIG32o = np.empty(100000, np.int32)
BIG64 = np.arange(100000, dtype=np.int64)
BIG64o = np.empty(100000, np.int64)
SM32 = np.arange(16, dtype=np.int32)
SM32o = np.empty(16, np.int32)


def big_add32():
    np.add(BIG32, BIG32, out=BIG32o)


def big_add64():
    np.add(BIG64, BIG64, out=BIG64o)


def big_mul32():
    np.multiply(BIG32, BIG32, out=BIG32o)


def big_mul64():
    np.multiply(BIG64, BIG64, out=BIG64o)


def big_shr32():
    np.right_shift(BIG32, H32, out=BIG32o)


def big_shr64():
    np.right_shift(BIG64, BIG64, out=BIG64o)


def small_add32():
    np.add(SM32, SM32, out=SM32o)


def small_iadd32():
    SM32o[...] += SM32


def small_iadd32b():
    global SM32o
    SM32o += SM32


dyT = np.ascontiguousarray(dy16.T)
xT = np.ascontiguousarray(x64.T)


def dwT_dot():
    np.dot(dyT, xT.T, out=dw_fc2)


def dwT_matmul():
    np.matmul(dyT, xT.T, out=dw_fc2)


def dwT_einsum():
    np.einsum("ot,it->oi", dyT, xT, out=dw_fc2)


def dwT_dot_with_copies():
    a = np.ascontiguousarray(dy16.T)
    b = np.ascontiguousarray(x64.T)
    np.dot(a, b.T, out=dw_fc2)


def dw_dot_plain():
    np.dot(dy16.T, x64, out=dw_fc2)


def tcopy():
    np.ascontiguousarray(x64.T)


D32 = (V32 >> 16) + 1
U32a, U32d, U32o = V32.view(np.uint32) >> 2, D32.view(np.uint32), np.empty(N, np.uint32)
ST64 = rng.integers(-(1 << 15), 1 << 15, N)
D32s = (V32 >> 20).astype(np.int32)
I32b = np.empty(N, np.int32)


def div_i32():
    np.floor_divide(V32, D32, out=I32)


def div_u32():
    np.floor_divide(U32a, U32d, out=U32o)


def div_u64():
    den = (V64 >> 16).view(np.uint64) + np.uint64(1)
    np.floor_divide(V64.view(np.uint64), den, out=I64.view(np.uint64))


def cnz32():
    np.count_nonzero(V32)


def cnz64():
    np.count_nonzero(V64)


def sign32():
    np.sign(V32, out=I32)


def abs32():
    np.abs(V32, out=I32)


def sub_mixed():
    np.subtract(ST64, D32s, out=ST64)


def sub_cast():
    np.copyto(I64, D32s)
    np.subtract(ST64, I64, out=ST64)


def max32():
    np.maximum.reduce(V32)


def max64():
    np.maximum.reduce(V64)


def min_i32():
    np.minimum(V32, D32, out=I32)


def shl32():
    np.left_shift(V32, H32, out=I32)


SMX = rng.integers(-1000, 1000, (7, 64))
H0 = np.array(8, dtype=np.int64)
HS = np.int64(8)
SH0 = np.array(4, dtype=np.int64)


def sm_iadd_0d():
    global SMX
    SMX += H0


def sm_iadd_scalar():
    global SMX
    SMX += HS


def sm_iadd_pyint():
    global SMX
    SMX += 8


def sm_add_out():
    np.add(SMX, H0, out=SMX)


def sm_shift_0d():
    global SMX
    SMX >>= SH0


def sm_new_add():
    return SMX + H0


from numpy._core.multiarray import c_einsum  # noqa: E402

SHAPES = {"lm": (27, 16), "fc2": (16, 64), "fc1": (64, 16), "wo": (16, 16), "qkv": (48, 16)}
DW = {k: (i16(T, o), i16(T, i), np.zeros((o, i), np.int64)) for k, (o, i) in SHAPES.items()}


def dw_all_matmul():
    for dy, x, dw in DW.values():
        np.matmul(dy.T, x, out=dw)


def dw_all_einsum():
    for dy, x, dw in DW.values():
        c_einsum("to,ti->oi", dy, x, out=dw)


def dw_all_einsum_noout():
    for dy, x, dw in DW.values():
        dw[...] = c_einsum("to,ti->oi", dy, x)


WT = {k: np.ascontiguousarray(dw.T) for k, (dy, x, dw) in DW.items()}


def dx_all_dot():
    for dy, _, dw in DW.values():
        np.dot(dy, dw)


def dx_all_einsum():
    for dy, _, dw in DW.values():
        c_einsum("to,oi->ti", dy, dw)


def dx_all_einsum_t():  # on a transposed copy of w (kept)
    for k, (dy, _, _) in DW.items():
        c_einsum("to,io->ti", dy, WT[k])


def dx_all_matmul():
    for dy, _, dw in DW.values():
        np.matmul(dy, dw)


DWTE = np.zeros((27, 16), np.int64)
TOK = np.array([0, 5, 13, 13, 1, 12, 25])
DEMB = i16(T, 16)


def addat():
    np.add.at(DWTE, TOK, DEMB)


def fancy_set():
    DWTE[TOK] = DEMB


def fill688():
    DWTE.fill(0)


XR = i16(T, 16)
SC = i16(T, 1)
SCF = np.repeat(SC, 16, axis=1)
SCL = SC[:, 0].tolist()


def bmul():
    return XR * SC


def smul():
    return XR * SCF


def rep_build():
    return np.repeat(np.array(SCL, dtype=np.int64), 16).reshape(T, 16)


def list_build():
    return np.array([[s] * 16 for s in SCL], dtype=np.int64)


def col_build():
    return np.array(SCL, dtype=np.int64).reshape(T, 1)


DQKV = i16(3, 4, T, 4)
X1 = i16(T, 16)
WQKV = i16(48, 16)
DWQKV = np.zeros((48, 16), np.int64)


def qkv_today():
    dy = DQKV.transpose(2, 0, 1, 3).reshape(T, 48)
    c_einsum("to,ti->oi", dy, X1, out=DWQKV)
    t, n = dy.shape[0], dy.shape[1] // 3
    return dy.reshape(t, 3, n).transpose(1, 0, 2) @ WQKV.reshape(3, n, 16)


def qkv_einsum():
    c_einsum("jhtd,ti->jhdi", DQKV, X1, out=DWQKV.reshape(3, 4, 4, 16))
    return c_einsum("jhtd,jhdi->jti", DQKV, WQKV.reshape(3, 4, 4, 16))


# round 5 (branch host5): what was kept and what was not (docs/BENCHMARKS.md, "Host
# training"; the figures in the commit messages)
W_FC1_T = np.ascontiguousarray(w_fc1.T)
DY_FC1 = i16(T, 64)
PROBS_H = i16(4, T, T)
LOGITS = i16(T, 27)
ONES_T, ONES_27 = np.ones((T, 1), np.int64), np.ones((27, 1), np.int64)
X_ROWS, COL = i16(T, 16), i16(T, 1)
X_REPEATED = np.repeat(COL, 16, axis=1)
STORE, D32 = i16(4192), rng.integers(-3, 4, 4192).astype(np.int32)
D64 = D32.astype(np.int64)


def dx_fc1_dot():  # fc1's dx (T,64) @ (64,16), np.dot's strided loop: main's
    return np.dot(DY_FC1, w_fc1)


def dx_fc1_einsum_copy():  # on a transposed copy of w: kept (DX_BY_COPY)
    return c_einsum("to,io->ti", DY_FC1, w_fc1.T.copy())


def rows_reduce_heads():  # softmax's row sums of (H,T,T): main's
    return np.add.reduce(PROBS_H, axis=-1, keepdims=True)


def rows_matmul_heads():  # a product with ones: kept (int_shapes.row_sums)
    return np.matmul(PROBS_H, ONES_T)


def rows_reduce_logits():
    return np.add.reduce(LOGITS, axis=-1, keepdims=True)


def rows_dot_logits():  # kept
    return np.dot(LOGITS, ONES_27)


def mul_by_column():  # rmsnorm's x * (T,1) multiplier: main's (a broadcast)
    return X_ROWS * COL


def mul_by_repeated():  # the multiplier repeated along the row: kept
    return X_ROWS * X_REPEATED


def store_minus_int32():  # Adam's store (int64) -= d (int32): a buffered cast, not changed
    STORE.__isub__(D32)


def store_minus_int64():
    STORE.__isub__(D64)


def nothing():
    pass


f = globals()[sys.argv[1]]
for _ in range(int(sys.argv[2])):
    f()
