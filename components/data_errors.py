"""The error every input-data reader raises: one line that starts with the file.

The CLI prints it as-is (users grep logs for file names), and the pipeline's
pre-flight check catches this one type whatever the source format.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file or folder is missing, malformed, unsafe or inconsistent."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))
