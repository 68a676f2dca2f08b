"""``python -m analysis <run folder>``: rebuild summary.md and plots/ of a run folder."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("run_dir", help="a run folder: <results>/<task>/<run-id>")
    args = parser.parse_args(argv)
    from analysis.load import NotARunFolder
    from analysis.report import PLOTS, build

    started = time.perf_counter()
    try:
        run = build(args.run_dir)
    except NotARunFolder as exc:
        print(f"python -m analysis: error: {exc}", file=sys.stderr)
        return 2
    made = [name for name in PLOTS if (run.path / "plots" / name).exists()]
    print(f"wrote {run.path / 'summary.md'} and plots/{{{','.join(made)}}} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
