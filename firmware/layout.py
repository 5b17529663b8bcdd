"""The state block's layout (model.py's buffers in one bytearray), at setup only:
runcfg.first_look sizes the block (block_bytes) from a first look at the config before
anything else of the setup is in memory (firmware/README.md, "Memory"); layout.setup,
the third of the setup's stages, checks it against the policy's numbers and makes the
views into it for model.Model; then this module is dropped.
"""

import gc
import sys

from micropython import const

# the shape (qgpt/params.py; tests/test_firmware_train.py checks these copies)
_N = const(4192)  # parameters
_T = const(16)  # BLOCK: the rows of every activation buffer
_C = const(16)
_NH = const(4)
_M = const(64)
_V = const(27)
_CHUNK = const(32)  # model.py's I/O chunk, int32 values
_KAHAN = const(4)  # the Kahan update's rounding mode (kernels.py _ROUND_KAHAN)
_PIECE = const(432)  # model.py's _GRAD_MAX: int32 values of a weight gradient's piece
_WIDE_UNIT = const(128)  # plain 8/16-bit m or v: int32 values Adam widens at a time


def block_bytes(nb, wide, blocks, kahan):
    """(the state block's size, the byte sizes of model.Model.act's buffers in the
    order of its table, (U, S, mk, vk, kc) below) for the containers nb = (bw, ba, bg, bm,
    bv, bs) of the policy (bytes a value of weights, acts, grads, adam_m, adam_v, the
    weight store), with master weights (N values of bs bytes, at the end) when wide,
    block-scaled Adam state blocks = (Bm, Nm, Bv, Nv) and the Kahan compensations. In
    the block: m, v, the data weights, the activations, the chunk, the shifts, the
    compensations, the unit's wide m and v and the gradient slots (int32, U each), the
    master weights; every size a multiple of 4, so that int32 views stay aligned."""
    bw, ba, bg, bm, bv, bs = nb
    # 9.6: U, the unit Adam runs on at once, lcm(Nm, Nv) (0: per gradient piece, no
    # unit; _WIDE_UNIT for plain 8/16-bit m or v, widened to int32 that many at a time);
    # S, the unit-sized gradient slots model.py needs: one working and one per unit still
    # waiting for the rest of its gradient (found by walking model.py's order of gradient
    # pieces); the bytes of the shift arrays and of the compensations
    nm, nv = blocks[1], blocks[3]
    u = nm if nm else nv
    if not u and (bm < 4 or bv < 4):  # plain 8/16-bit m or v: widened _WIDE_UNIT at a time
        u = _WIDE_UNIT  # (blockadam.gather; kernels.adam_update takes int32 m and v only)
    if nm and nv:
        a, b = nm, nv
        while b:
            a, b = b, a % b
        u = min(nm * nv // a, _N)  # at most one unit of every parameter
    slots = 0
    if u:
        # model.Model.backward's gradient pieces: (first parameter, n_in, n_out) in the
        # order the backward pass completes them, a matrix in pieces of _PIECE // n_in rows
        done = {}
        most = 0
        for off, n_in, n_out in ((688, 16, 27), (3168, 64, 16), (2144, 16, 64), (1888, 16, 16),
                                 (1120, 16, 16), (1376, 16, 16), (1632, 16, 16), (0, 432, 1),
                                 (432, 256, 1)):
            rows = _PIECE // n_in if n_out > 1 else 1
            for o0 in range(0, n_out, rows):
                a = off + o0 * n_in
                z = off + min(o0 + rows, n_out) * n_in
                for unit in range(a // u, (z - 1) // u + 1):
                    lo, hi = max(a, unit * u), min(z, unit * u + u, _N)
                    got = done.get(unit, 0) + hi - lo
                    if got == min(u, _N - unit * u):
                        done.pop(unit, None)
                    else:
                        done[unit] = got
                most = max(most, len(done))
        slots = most + 1
    pad = 3
    adam = (u, slots, ((_N + nm - 1) // nm + pad) & (pad ^ -1) if nm else 0,  # ceil, to 4
            ((_N + nv - 1) // nv + pad) & (pad ^ -1) if nv else 0, _N if kahan else 0)
    u, slots, mk, vk, kc = adam
    bx = ba if ba > bg else bg  # buffers that hold an activation, then a gradient
    tc = _T * _C
    act = (2 * _NH * _T * _T, 4 * _T * _V, ba * _T * _M, bg * _T * _M,  # probs .. dh
           ba * tc, ba * tc, ba * tc, ba * tc,  # x0, x1, q, k
           ba * tc, bx * tc, ba * tc, bx * tc,  # vv, at, x3, x4
           bx * tc, bx * tc, bx * tc,  # ga, gb, gc
           8 * _T, 8 * _T, 8 * _T, 4 * _T)  # rs0, rs1, rs3, srow
    return (_N * (bm + bv + bw + (bs if wide else 0)) + sum(act) + 4 * _CHUNK + mk + vk + kc
            + 4 * u * (2 + slots)), act, adam


def setup(cfg, _):
    """The views into the state block (cfg["block"], runcfg.setup's) for the numbers of
    runpolicy.setup (cfg["numbers"]), the third of the setup's stages (qgpt_train): the
    block's size checked against the first look's; cfg["numbers"] = the Model's numbers
    with the parameter table's offsets and the block's layout (block_bytes), cfg["init"]
    prng.init_tensor's arguments for restore.setup."""
    nums, cfg["init"] = cfg.pop("numbers")
    block = cfg.pop("block")
    lay = block_bytes(nums[0], nums[6], nums[7], nums[4][4] == 4)  # mode 4: kahan
    if lay[0] != len(block):  # the first look missed (it cannot for a good config): again
        block = None
        gc.collect()
        block = bytearray(lay[0])
    nums = nums[:1] + (offsets(),) + nums[2:] + (lay,)
    cfg["numbers"] = nums
    got = views(block, nums)
    if cfg["resume"]:  # the state arrays, for restore.load_checkpoint (statebytes leaves
        import statebytes  # with this stage: a resume's restore is the setup's fullest)

        mk, vk, _, _, _, _, comp = got[7]
        cfg["state"] = statebytes.arrays(nums[0], nums[7], nums[4][4] == _KAHAN,
                                         (got[5], got[0], got[1], mk, vk, comp))
        statebytes = None
        del sys.modules["statebytes"]
    return got


def offsets():
    """The offsets of the parameter table's tensors (firmware/params.py, in its order),
    then N."""
    offs = [0]
    for n in (_V * _C, _T * _C, _V * _C, _C * _C, _C * _C, _C * _C, _C * _C, _M * _C, _C * _M):
        offs.append(offs[-1] + n)
    return tuple(offs)


def views(block, nums):
    """The buffers of model.Model in the state block (nums: runpolicy.setup's and
    block_bytes's (size, act sizes, adam layout)): (m, v, the data weights, the act
    buffers, the I/O chunk, the weight store, the weight matrices, and 9.6's (shifts of
    m and v (uint8), the unit's wide m and v (int32), the unit's gradient slots, U,
    Kahan's compensations (int8))). Each is the address of its first byte (an int: the
    kernels' ptr8/ptr16/ptr32 take an address as they take a buffer), not a memoryview,
    an object of 32 bytes on a 64-bit port that the run would keep, one for each of
    about 40 buffers; only the chunk, which plain Python reads and writes (checkpoints,
    the CRC), is a memoryview, and it keeps the block alive (a memoryview holds its
    buffer from the start, whatever its slice). Not the state arrays' tuples:
    statebytes.arrays makes them when a resume, a save, a dump or the hash needs them."""
    from uctypes import addressof

    nb, offs, _, _, _, _, wide, _, (size, sizes, adam) = nums
    bw, _, _, bm, bv, _ = nb
    if len(block) != size:
        raise ValueError(f"the state block has {len(block)} bytes, want {size}")
    m = addressof(block)
    at = _N * bm
    v = m + at
    at += _N * bv
    wd = m + at
    at += _N * bw
    act = [0] * len(sizes)  # a list made at once and kept (a tuple of it: a second copy)
    for i in range(len(sizes)):
        act[i] = m + at
        at += sizes[i]
    chunk = memoryview(block)[at : at + 4 * _CHUNK]
    at += 4 * _CHUNK
    u, slots, nmk, nvk, nkc = adam
    mk = m + at
    at += nmk
    vk = m + at
    at += nvk
    comp = m + at
    at += nkc
    mw = m + at
    vw = m + at + 4 * u
    at += 8 * u
    slot = tuple(m + at + 4 * u * s for s in range(slots))
    at += 4 * u * slots
    # the weight store: the data weights themselves, or the master weights
    store = m + at if wide else wd
    w = tuple(wd + bw * offs[j] for j in range(9))
    return (m, v, wd, act, chunk, store, w, (mk, vk, mw, vw, slot, u, comp))
