"""What the run's modules share, below all of them: the error type of a bad config,
dataset or checkpoint, the packed dataset's layout (qgpt/pack.py), and the state
block's layout (model.py's buffers), which the entry point needs before the model.

qgpt_train (the entry point), runcfg, restore and model import it; it imports nothing
of the firmware, so no import goes back up to the entry point.
"""

from micropython import const

DATA_HEADER = const(20)  # the packed dataset's header (runcfg checks it)
RECORD = const(16)  # bytes a record: the length, then at most 15 letters (BLOCK = 16)


# the shape (qgpt/params.py; tests/test_firmware_train.py checks these copies)
_N = const(4192)  # parameters
_T = const(16)  # BLOCK: the rows of every activation buffer
_C = const(16)
_NH = const(4)
_M = const(64)
_V = const(27)
_CHUNK = const(32)  # model.py's I/O chunk, int32 values


class RunError(ValueError):
    """A bad config, dataset or checkpoint, worded for the user."""


def block_bytes(nb, wide):
    """(the state block's size, the byte sizes of model.Model.act's buffers in the
    order of its table) for the containers nb = (bw, ba, bg, bm, bv, bs) of the policy
    (bytes a value of weights, acts, grads, adam_m, adam_v, the weight store), with
    master weights (N values of bs bytes, at the end) when wide. In the block: m, v,
    the data weights, the activations, the chunk, the master weights; every size a
    multiple of 4, so that int32 views stay aligned."""
    bw, ba, bg, bm, bv, bs = nb
    bx = ba if ba > bg else bg  # buffers that hold an activation, then a gradient
    tc = _T * _C
    act = (2 * _NH * _T * _T, 4 * _T * _V, ba * _T * _M, bg * _T * _M,  # probs .. dh
           ba * tc, ba * tc, ba * tc, ba * tc,  # x0, x1, q, k
           ba * tc, bx * tc, ba * tc, bx * tc,  # vv, at, x3, x4
           bx * tc, bx * tc, bx * tc,  # ga, gb, gc
           8 * _T, 8 * _T, 8 * _T, 4 * _T)  # rs0, rs1, rs3, srow
    return _N * (bm + bv + bw + (bs if wide else 0)) + sum(act) + 4 * _CHUNK, act
