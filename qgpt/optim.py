"""Adam with bias correction and linear learning-rate decay, as microgpt does it."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdamConfig:
    lr: float = 0.01  # peak learning rate, decayed linearly to 0 over num_steps
    beta1: float = 0.85
    beta2: float = 0.99
    eps: float = 1e-8


def lr_at(cfg, step, num_steps):
    """microgpt's schedule: lr * (1 - step / num_steps), step counted from 0."""
    return cfg.lr * (1.0 - step / num_steps)


class FloatAdam:
    def __init__(self, cfg, n):
        self.cfg = cfg
        self.m = np.zeros(n)  # (N_PARAMS,) first moment
        self.v = np.zeros(n)  # (N_PARAMS,) second moment

    def step(self, flat, grad, step, num_steps):
        """Update flat in place from grad at step (from 0)."""
        c = self.cfg
        self.m = c.beta1 * self.m + (1 - c.beta1) * grad
        self.v = c.beta2 * self.v + (1 - c.beta2) * grad**2
        m_hat = self.m / (1 - c.beta1 ** (step + 1))
        v_hat = self.v / (1 - c.beta2 ** (step + 1))
        flat -= lr_at(c, step, num_steps) * m_hat / (np.sqrt(v_hat) + c.eps)

    def state(self):
        return {"m": self.m, "v": self.v}
