"""Reading pieces every input-data reader (IDX, CIFAR-10) shares.

Each reader raises its own DataFormatError subclass, so these helpers take the
reader's ``error(path, problem)`` factory and keep the one-line, path-first
messages identical across formats.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np

from components.example_gen.data_errors import DataFormatError

ErrorFactory = Callable[[str, str], DataFormatError]

# What the gzip module raises for damaged data, whichever reader streams it
# (gzipped IDX files, CIFAR-10 tarballs): EOFError for a stream cut off before
# its end marker, zlib.error for corrupt deflate data, gzip.BadGzipFile for a
# bad header, CRC or length trailer. BadGzipFile is an OSError, but OSError as
# a whole is not damage: a failing disk or vanished mount is reported as
# "cannot read" by stream_failures instead of blaming the file's contents.
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def missing_file_problem(path: str) -> str:
    """Why ``path`` cannot be opened although it was listed: absent, or a broken symbolic link.

    A dangling link (``train-images-idx3-ubyte.gz -> ../downloads/...`` after the
    download moved) looks present in a listing; naming its target says what to fix.
    """
    if not os.path.islink(path):
        return "file not found"
    target = os.path.join(os.path.dirname(path), os.readlink(path))
    return f"broken symbolic link: its target {os.path.normpath(target)} does not exist"


def is_file_or_link(path: str | os.DirEntry[str]) -> bool:
    """Whether ``path`` (or a listed entry) is a file, or a symbolic link even to nothing.

    Readers treat links as present, so that opening a broken one reports it
    (:func:`missing_file_problem`) instead of it being skipped as absent.
    """
    if isinstance(path, os.DirEntry):
        return path.is_symlink() or path.is_file()
    return os.path.isfile(path) or os.path.islink(path)


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
        raise error(path, missing_file_problem(path)) from None
    except IsADirectoryError:
        raise error(path, f"is a directory, expected {expected}") from None
    except OSError as exc:
        raise error(path, f"cannot open ({exc.strerror or exc})") from None


@contextlib.contextmanager
def stream_failures(path: str, error: ErrorFactory, damaged: str) -> Iterator[None]:
    """While streaming ``path``: damaged gzip data becomes ``<path>: <damaged> (<why>)``.

    Without this the gzip module's assorted exceptions surface as tracebacks
    from deep inside numpy, tarfile or pickle; an OS read failure becomes
    ``cannot read``, so every failure is one line naming the file.
    """
    try:
        yield
    except GZIP_ERRORS as exc:
        raise error(path, f"{damaged} ({exc})") from None
    except OSError as exc:
        raise error(path, f"cannot read ({exc.strerror or exc})") from None


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


def check_labels(
    path: str, labels: np.ndarray, num_classes: int, first_index: int, position: str, error: ErrorFactory
) -> None:
    """Refuses the first label outside ``0..num_classes-1``, naming the file and where it is.

    A label indexes the class names, so every reader refuses one that names no
    class, before it becomes an example that training would choke on.
    ``first_index`` numbers ``labels[0]`` in the file; ``position`` says how
    the reader counts ("of image 12", "at index 12").
    """
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        raise error(
            path, f"label {int(labels[index])} {position} {first_index + index} is outside 0..{num_classes - 1}"
        )


def list_directory(path: str, error: ErrorFactory) -> list[os.DirEntry[str]]:
    """The entries of a directory; one that cannot be read (permissions) is one line naming it.

    Without this an unreadable folder is a PermissionError traceback, or looks
    empty to ``os.path`` checks, which swallow the error.
    """
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError as exc:
        raise error(path, f"cannot read directory ({exc.strerror or exc})") from None


def check_directory(data_dir: str, error: ErrorFactory) -> list[os.DirEntry[str]]:
    """Reject a data dir that is missing, not a directory or unreadable; returns its entries."""
    if not os.path.exists(data_dir):
        raise error(data_dir, "data directory does not exist")
    if not os.path.isdir(data_dir):
        raise error(data_dir, "is not a directory")
    return list_directory(data_dir, error)
