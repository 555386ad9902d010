"""Reports built only from result records: static HTML + PNG figures + Markdown summary.

>>> from robens.report import build_report
>>> build_report("runs/main", "runs/main/report")   # doctest: +SKIP
PosixPath('runs/main/report/index.html')
"""

from robens.report.build import build_report
from robens.report.figures import FIGURES, draw_figures
from robens.report.published import PUBLISHED_TABLES
from robens.report.runs import Run, find_record_files, load_runs
from robens.report.tables import Table, published_tables, summary_table

__all__ = [
    "FIGURES",
    "PUBLISHED_TABLES",
    "Run",
    "Table",
    "build_report",
    "draw_figures",
    "find_record_files",
    "load_runs",
    "published_tables",
    "summary_table",
]
