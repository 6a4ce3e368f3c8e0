"""Whole-or-nothing file writes for what visionpipe writes itself (summaries, reports, packages).

A crash, a full disk or Ctrl-C mid-write must never leave half a file where a
good one was: the text goes to a temporary file beside the target, and
`os.replace` (atomic within one file system) puts it in place only when it is
complete. The earlier file stays until then.
"""

from __future__ import annotations

import json
import os


def write_text_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file in the same folder and a rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomically(path: str, payload: dict) -> None:
    """Writes `payload` as indented JSON, atomically (see `write_text_atomically`)."""
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
