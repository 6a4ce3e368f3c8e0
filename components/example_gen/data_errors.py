"""The error every input-data reader raises: one line that starts with the file.

The CLI's pre-flight lets it propagate and `visionpipe run` prints it after
``visionpipe: error:`` as a ValueError like any other bad input (users grep
logs for file names, hence path first and one line). One base type lets any
caller catch a data problem whatever the source format.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file or folder is missing, malformed, unsafe or inconsistent."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))
