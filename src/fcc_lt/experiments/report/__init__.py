"""Result tables from run directories: seeds grouped, FCC's paired gain with an interval, nothing guessed.

A report reads only the files of run directories (through fcc_lt.experiments.run_folder) and never
touches a dataset or a checkpoint. Three steps, one module each:

- ``collect``: each run directory -> a ``ReportRun`` (state, identity, numbers; never an exception);
- ``compare``: runs -> groups (mean and sample sd over seeds) and FCC's effect (with-minus-without
  differences paired by seed, a Student-t interval over the pairs);
- ``render``: the ``Report`` as markdown, CSV or JSON.

Runs that are still training, stopped or broken are listed with their state rather than aborting the
table. See docs/reports.md.
"""

from fcc_lt.experiments.report.collect import (
    COLUMNS,
    METRICS,
    ReportRun,
    collect_run,
    describe_method,
    fcc_label,
    method_label,
)
from fcc_lt.experiments.report.compare import Group, PairRow, Report, build_report
from fcc_lt.experiments.report.render import FORMATS, report_data, table, write_report_dir

__all__ = ["COLUMNS", "FORMATS", "METRICS", "Group", "PairRow", "Report", "ReportRun", "build_report", "collect_run",
           "describe_method", "fcc_label", "method_label", "report_data", "table", "write_report_dir"]
