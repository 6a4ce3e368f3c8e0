"""Where benchmark scripts put their figures: bench/results/<name>-<stamp>.{md,json}."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def save_results(name: str, header: str, table: str, raw: dict[str, Any]) -> str:
    """Writes the Markdown table and the raw figures; returns the .md path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    markdown_path = os.path.join(RESULTS_DIR, f"{name}-{stamp}.md")
    with open(markdown_path, "w", encoding="utf-8") as handle:
        handle.write(header + "\n\n" + table + "\n")
    with open(os.path.join(RESULTS_DIR, f"{name}-{stamp}.json"), "w", encoding="utf-8") as handle:
        json.dump(raw, handle, indent=2)
    return markdown_path
