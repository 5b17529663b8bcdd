"""What a level found: the mismatches (each names the level, what differs, where and
both values) and the summary tables of the op level and the training levels."""

from dataclasses import dataclass, field

OPS_LEVEL = "ops"
HEAPSIZE = "96K"  # the device's heap: an ESP32 without PSRAM has about 100 KB
MAX_LISTED = 5  # mismatches listed per tensor (all are counted)


@dataclass
class Mismatch:
    level: str
    op: str
    fmt: str
    case: str
    tensor: str
    index: tuple | None  # None for a scalar or a device error
    device: object
    simulator: object

    def __str__(self):
        where = f"{self.level} {self.op} {self.fmt} [{self.case}]"
        if self.tensor == "<device error>":
            return f"{where}: the device failed: {self.device}"
        idx = "" if self.index is None else "[" + ", ".join(str(i) for i in self.index) + "]"
        return f"{where}: {self.tensor}{idx} device {self.device} != simulator {self.simulator}"


@dataclass
class OpsReport:
    """The outcome of one op-level run."""

    cases: list
    mismatches: list = field(default_factory=list)  # the first MAX_LISTED of each tensor
    mismatch_count: dict = field(default_factory=dict)  # (op, fmt, case, tensor) -> count
    values: dict = field(default_factory=dict)  # fmt -> values compared
    heap_free_min: int | None = None  # the least free heap after a case on the device
    heapsize: str = HEAPSIZE
    seconds: float = 0.0
    device: str = ""

    @property
    def ok(self):
        return not self.mismatches

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def summary(self):
        """A table: one row per op, with its formats, cases, values and result."""
        from tabulate import tabulate

        rows = {}
        for c in self.cases:
            r = rows.setdefault(c.op, {"formats": [], "cases": 0, "values": 0, "bad": 0})
            if c.fmt not in r["formats"]:
                r["formats"].append(c.fmt)
            r["cases"] += 1
            r["values"] += _count_values(c)
        for key, n in self.mismatch_count.items():
            rows.setdefault(key[0], {"formats": [key[1]], "cases": 0, "values": 0, "bad": 0})
            rows[key[0]]["bad"] += n
        table = [[op, ",".join(r["formats"]) if len(r["formats"]) <= 3 else
                  f"{len(r['formats'])} formats", r["cases"], r["values"],
                  "ok" if r["bad"] == 0 else f"FAIL ({r['bad']})"] for op, r in rows.items()]
        head = tabulate(table, headers=["op", "formats", "cases", "values", "result"])
        total = sum(self.values.values())
        failed = sum(n for k, n in self.mismatch_count.items() if k[3] == "<device error>")
        bad = sum(self.mismatch_count.values()) - failed
        tail = (f"level {OPS_LEVEL}: {len(self.cases)} cases, {total} values compared, "
                f"{bad} mismatches" + (f", {failed} cases failed on the device" if failed else "")
                + f", {self.seconds:.1f} s on {self.device}")
        if self.heap_free_min is not None:
            tail += f" (least free heap {self.heap_free_min} bytes of {self.heapsize})"
        return head + "\n" + tail


MAX_LISTED = 5  # mismatches listed per tensor (all are counted)


def _count_values(case):
    return sum(1 if not isinstance(v, tuple) else v[1].size for v in case.expected.values())


@dataclass
class TrainMismatch:
    level: str  # "steps" or "run"
    fmt: str
    case: str  # rounding (and master)
    step: int | None  # the step after which the value differs (1-based), None: at the end
    what: str  # params | grad | adam_m | adam_v | loss_q16 | hash | sample | device
    tensor: str = ""  # a name of the parameter table
    index: tuple | None = None  # within the tensor
    flat: int | None = None  # in the flat buffer
    device: object = None
    simulator: object = None

    def __str__(self):
        where = f"{self.level} {self.fmt} {self.case}"
        if self.step is not None:
            where += f", step {self.step}"
        if self.what == "device":
            return f"{where}: the device failed: {self.device}"
        if self.what == "first divergence":
            return f"{where}: the first step after which the state differs (values below)"
        idx = ""
        if self.tensor:
            idx = f" {self.tensor}" + "".join(f"[{i}]" for i in self.index)
            idx += f" (flat index {self.flat})"
        return f"{where}: {self.what}{idx} device {self.device} != simulator {self.simulator}"



@dataclass
class TrainReport:
    level: str
    rows: list = field(default_factory=list)  # [format, case, steps, values, result]
    mismatches: list = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    heap_peak: int | None = None
    total: int = 0  # every differing value (and device failure), listed or not

    @property
    def ok(self):
        return not self.mismatches and self.total == 0

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def summary(self):
        from tabulate import tabulate

        head = tabulate(self.rows, headers=["format", "case", "steps", "values", "result"])
        values = sum(r[3] for r in self.rows)
        tail = (f"level {self.level}: {len(self.rows)} runs, {values} values compared, "
                f"{self.total} mismatches ({len(self.mismatches)} listed), {self.seconds:.1f} s "
                f"on {self.device}")
        if self.heap_peak is not None:
            tail += f" (heap peak {self.heap_peak} bytes)"
        return head + "\n" + tail


def print_report(report, out, limit=20):
    print(report.summary(), file=out)
    for m in report.mismatches[:limit]:
        print(m, file=out)
    if len(report.mismatches) > limit:
        print(f"... {len(report.mismatches) - limit} more listed mismatches", file=out)
