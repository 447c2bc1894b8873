"""Reports over many runs: ``tailkd-report DIR`` tabulates every ``results.json`` below DIR."""

from tailkd.report.aggregate import Group, group_runs
from tailkd.report.runs import Run, find_runs
from tailkd.report.write import write_report

__all__ = ["Group", "Run", "find_runs", "group_runs", "write_report"]
