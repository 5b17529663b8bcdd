"""A dependency-free progress bar: redrawn in place on a terminal, a line per tenth otherwise."""

import sys
import time


class Progress:
    def __init__(self, total, label="train", stream=None, start=0):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start_step, self.t0 = start, time.perf_counter()
        self.every = max(1, total // 10)

    def update(self, done, **figures):
        """Report `done` steps of `total`, with figures such as loss=2.31."""
        rate = (done - self.start_step) / max(time.perf_counter() - self.t0, 1e-9)
        shown = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in figures.items())
        if self.tty:
            width = 24
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {shown} "
                              f"{rate:.1f} steps/s ")
            if done == self.total:
                self.stream.write("\n")
        elif done % self.every == 0 or done == self.total:
            self.stream.write(f"{self.label} step {done}/{self.total} {shown} "
                              f"{rate:.1f} steps/s\n")
        self.stream.flush()
