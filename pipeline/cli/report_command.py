"""`visionpipe report`: the newest evaluation of an output dir as one HTML file.

Exit codes: 0 written; 1 nothing to report (no Evaluator run, an unreadable
evaluation, model or test split) or the file cannot be written; 2 usage.
An earlier report at the same path is replaced only by a complete new one.
"""

from __future__ import annotations

import os

from pipeline.plumbing import atomic_files, errors
from pipeline.inspect import report_data, report_html
from pipeline.inspect.eval_results import EvalResultError
from pipeline.inspect.evaluator_runs import NoEvaluationError
from pipeline.inspect.worst_examples import WorstExamplesError

REPORT_FILE = "report.html"


def _progress(line: str) -> None:
    print(f"visionpipe report: {line}", flush=True)


def write_report(data: report_data.ReportData, path: str) -> int:
    """Renders and writes the page; 1 with one error line when the path is not writable."""
    page = report_html.render(data)
    try:
        atomic_files.write_text_atomically(path, page)
    except OSError as error:
        return errors.fail(f"{path}: cannot write the report ({error.strerror})")
    _progress(f"wrote {path} ({len(page.encode('utf-8')) / 1024:.0f} KiB)")
    return 0


def report(output_dir: str, out: str | None, worst_count: int) -> int:
    try:
        data = report_data.gather(output_dir, worst_count, progress=_progress)
    except (NoEvaluationError, EvalResultError, WorstExamplesError) as error:
        return errors.fail(str(error))
    return write_report(data, out or os.path.join(output_dir, REPORT_FILE))
