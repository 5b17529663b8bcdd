"""Debug dumps of the training state (qgpt/conformance/training.py, level "steps").

After a step listed in the config's dump_steps, the file PREFIX-STEP.bin holds four
arrays of N int32 (little-endian), in this order: params (the weight store), the
step's gradient, adam_m, adam_v; then 9.6's adam_m_shift, adam_v_shift, kahan_comp
when the policy has them (int32, their lengths). The gradient is written tensor by
tensor as the backward pass completes it (firmware/model.py's on_grad hook), at its
offset.
"""

import sys

import model
from model import N_PARAMS as N
from uctypes import bytearray_at


class Dump:
    def __init__(self, path, mdl):
        self.path, self.mdl = path, mdl
        self.f = open(path, "wb")
        model.on_grad = self.grad

    def grad(self, off, n, grad):
        self.f.seek(4 * (N + off))
        self.f.write(bytearray_at(grad, 4 * n))  # grad: the address of n int32 values

    def close(self):
        import statebytes  # after the step (whose heap the run measures), as a save does

        mdl, f = self.mdl, self.f
        model.on_grad = None
        for w, st in enumerate(statebytes.state(mdl)):  # params at 0, then after the
            if w < 2:  # gradient m, v, ...
                f.seek(0 if w == 0 else 8 * N)
            for k in range(statebytes.pieces(st)):
                f.write(statebytes.piece(mdl, st, k))
        f.close()
        print("dump", self.path)
        for name in ("dump", "statebytes"):  # out of memory until the next dump step
            if name in sys.modules:
                del sys.modules[name]
