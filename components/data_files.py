"""File-reading pieces every input-data reader (IDX, CIFAR-10) shares.

Each reader raises its own DataFormatError subclass, so these helpers take the
reader's ``error(path, problem)`` factory and keep the one-line, path-first
messages identical across formats.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO

from components.data_errors import DataFormatError

ErrorFactory = Callable[[str, str], DataFormatError]


def open_for_reading(
    path: str,
    error: ErrorFactory,
    expected: str = "a file",
    opener: Callable[[str], IO[bytes]] = lambda path: open(path, "rb"),
) -> IO[bytes]:
    """``opener(path)``, with a missing file, a directory or an OS failure as one line."""
    try:
        return opener(path)
    except FileNotFoundError:
        raise error(path, "file not found") from None
    except IsADirectoryError:
        raise error(path, f"is a directory, expected {expected}") from None
    except OSError as exc:
        raise error(path, f"cannot open ({exc.strerror or exc})") from None


def fill(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from the stream; returns the bytes read (short only at end of file).

    Raw and gzip reads may return fewer bytes than asked for before the end.
    """
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def check_directory(data_dir: str, error: ErrorFactory) -> None:
    """Reject a data dir that does not exist or is not a directory."""
    if not os.path.exists(data_dir):
        raise error(data_dir, "data directory does not exist")
    if not os.path.isdir(data_dir):
        raise error(data_dir, "is not a directory")
