"""Sampling names on the device (docs/arithmetic.md, section 10), after training.

The same integers as qgpt/int_model.py IntModel.next_token driven by qgpt/train.py
sample(): the forward pass goes token by token with the KV cache, and position t's
logits are those of the host's forward over the t + 1 tokens so far. Imported only
at the end of a run (qgpt_train.py), so its code takes no memory during training;
it also gives the run's final hash (finish), so that the checkpoint writer need not
come back for its CRC32.
"""

from array import array

import kernels as K
import prng
from micropython import const
from model import BLOCK, BOS, get32

_V = const(27)  # VOCAB (tests/test_firmware_train.py checks it)


def next_token(mdl, z, t, inv_t, u30):
    """The first token whose cumulative probability exceeds u30 >> 15 (the first
    maximum if none), from softmax(logits[t] * inv_t / 256 rounded half up); z: (V,)
    int32 scratch."""
    lg, row = mdl.logits, t * _V
    for j in range(_V):  # unbounded ints: inv_t may be large
        z[j] = (get32(lg, row + j) * inv_t + 128) >> 8
    K.softmax(0, 0, z, z, 0, _V, mdl.fwd[0])
    u = u30 >> 15
    cum = 0
    best = 0
    for j in range(_V):
        cum += z[j]
        if cum > u:
            return j
        if z[j] > z[best]:
            best = j
    return best


def sample(mdl, z, n, inv_t, seed):
    """Name n: tokens from BOS, each drawn with u30 = draw(key(seed, SAMPLE, n), t),
    until BOS or BLOCK tokens. Returns the name."""
    k = prng.key(seed, prng.STREAM_SAMPLE, n)
    tok = mdl.tok
    tok[0] = BOS
    length = BLOCK
    for t in range(BLOCK):
        mdl.forward_position(t, BLOCK)
        nxt = next_token(mdl, z, t, inv_t, prng.draw(k, t))
        if nxt == BOS:
            length = t
            break
        tok[t + 1] = nxt
    name = ""  # letter by letter: only small pieces of memory at the run's end
    for j in range(length):
        name += chr(97 + tok[1 + j])
    return name


def print_samples(mdl, count, temperature, seed):
    """`sample NAME` lines for names 0 .. count-1."""
    inv_t = round(256 / temperature)  # as the host: round(256 / temperature)
    z = array("i", range(_V))  # (V,) tempered logits, then probabilities
    for n in range(count):
        print("sample", sample(mdl, z, n, inv_t, seed))


def finish(mdl, cfg, seed):
    """The end of a run (qgpt_train): the CRC32 of the state (the done line's hash), then
    cfg's samples; returns the CRC32."""
    try:
        from binascii import crc32
    except ImportError:  # a port built without it: crcpy's plain-Python CRC32 (as ckpt.py)
        from crcpy import crc32
    import statebytes

    crc = statebytes.state_crc(mdl, crc32)
    print_samples(mdl, cfg["samples"], cfg["temperature"], seed)
    return crc
