"""`qgpt sweep`: the float reference and every format x rounding x seed, trained and compared.

Seeds are the base seed plus i, i = 0..N-1 (--seed 42 --seeds 3: 42, 43, 44).
With the default base the first seed of each run is exactly what
`qgpt train --format F --rounding R` trains. The float reference trains with
the same seeds, hence the same initial weights and data order, so every integer
run is also compared with the float run of its own seed (the paired difference).

The package, in the order of the data flow:
    config.py     SweepConfig and make_config: the grid, checked before any training
    execute.py    run_one (one run in memory) and run_all (every run, in a process pool)
    aggregate.py  summarize (one row per format and rounding over seeds) and the tables
    plots.py      the figures
    report.py     the out folder's files
    command.py    sweep() from start to end, and the `qgpt sweep` argparse wiring

The out folder:
    results.json     the command, the dataset, every run's resolved config, policy,
                     summary and binned curves, and the per-format summary rows
    results.csv      the table in numbers: one row per format and rounding
    runs.csv         one row per run
    results.md       the table, the saturations by tensor, the runs, the definitions
    *.png            the figures of plots.py

Definitions (also written into results.md):
    saturations per step  values clipped by a saturating store (every tensor of the
                          forward pass, backward pass and Adam, as counted by
                          int_ops.Ctx) per training step; validation is not counted
    stalled-update rate   updates with Adam's step delta != 0 that rounded to 0, per
                          parameter per step (int_model's stalled_update_rate)
    frozen                parameters whose final value equals their initial value
"""

from qgpt.sweep.aggregate import format_table, summarize
from qgpt.sweep.axes import AXES
from qgpt.sweep.command import add_sweep_parser, cmd_sweep, sweep
from qgpt.sweep.config import SweepConfig, SweepError, make_config, read_grid
from qgpt.sweep.execute import TIMING_KEY, run_all, run_one

__all__ = ["AXES", "TIMING_KEY", "SweepConfig", "SweepError", "add_sweep_parser", "cmd_sweep",
           "format_table", "make_config", "read_grid", "run_all", "run_one", "summarize",
           "sweep"]
