"""``tailkd-report DIR [DIR ...]``: one report over every finished run below the folders (a Hydra
multirun folder, several, or a whole outputs/ tree). Imports no torch: it starts in a second."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("tailkd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailkd-report", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="folders to search for results.json")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first DIR)")
    parser.add_argument("--metric", default="test_accuracy", help="the results.json field to compare")
    parser.add_argument("--baseline", default="finetune", help="the method others are compared with")
    parser.add_argument("--oracle", default="finetune_oracle",
                        help="the reference that reads gold, for the share of its headroom over the baseline "
                             "(a method, optionally with settings: 'tail signals=oracle')")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="an override left out of every setting, for one that differs by seed by design "
                             "(each seed replaying its own collection: --ignore teacher.path); repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from tailkd.report import find_runs, write_report
    from tailkd.report.runs import overridden

    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        return _fail(f"no such folder: {', '.join(map(str, missing))}")
    out = args.out or args.dirs[0]
    blocked = _unwritable(out)
    if blocked:  # said before the search, not as a traceback after it
        return _fail(f"cannot write the report into {out}: {blocked}")
    runs, skipped = find_runs(args.dirs, args.metric, args.ignore)
    if not runs:
        found = f" ({len(skipped)} results.json skipped: {skipped[0].reason})" if skipped else ""
        return _fail(f"no finished runs with {args.metric!r} under {', '.join(map(str, args.dirs))}{found}. "
                     "A run writes results.json when it finishes; point tailkd-report at a multirun "
                     "folder such as multirun/<date>/ or outputs/.")
    unused = [key for key in args.ignore if not overridden(key, runs)]
    if unused:  # a typo would otherwise leave the runs split exactly as without it, silently
        return _fail(f"--ignore {unused[0]}: no run under {', '.join(map(str, args.dirs))} was given that "
                     "override (see a run's .hydra/overrides.yaml for the keys)")
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    try:
        written = write_report(runs, skipped, out, args.dirs, args.metric, args.baseline, args.oracle, args.ignore)
    except OSError as err:
        return _fail(f"cannot write the report into {out}: {err}")
    log.info("%d runs; wrote %s", len(runs), ", ".join(str(p) for p in written.values()))
    return 0


def _unwritable(out: Path) -> str | None:
    """Why the report cannot go into ``out`` (created if missing), or None: its nearest existing folder
    is a file, or not writable."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _fail(message: str) -> int:
    print(f"tailkd-report: {message}", file=sys.stderr)
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
