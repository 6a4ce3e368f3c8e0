"""``visionpipe fetch``: download MNIST, Fashion-MNIST or CIFAR-10, resumably and verified.

Uses only the standard library so that fetching works before (and without)
the heavy ML dependencies. Every file is checked against the SHA-256 of the
official distribution before it is given its final name, so a file with the
final name is always complete and genuine; an interrupted download stays in
``<name>.part`` and is resumed with an HTTP Range request on the next run.

A misbehaving server cannot hold the fetch hostage: no download grows past
its file's known size (an endless body would otherwise fill the disk), and
each download has an overall deadline (a server that drips a byte now and
then never trips the per-read socket timeout).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

MIRROR_ENV_VAR = "VISIONPIPE_MIRROR_URL"
_OFFLINE_HINT = "are you offline? use --data-dir with files you already have"
_BLOCK_BYTES = 1 << 16
_PROGRESS_STEP_PERCENT = 25
_USER_AGENT = "visionpipe-fetch"
# Default deadline per file: its known size at this slow but workable rate,
# and never less than the floor (small files, connection set-up, slow DNS).
_MIN_RATE_BYTES_PER_S = 64 * 1024
_MIN_DEADLINE_S = 300.0


class FetchError(RuntimeError):
    """A download failed; the message is one line the CLI prints as-is."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


@dataclass(frozen=True)
class RemoteFile:
    """A file of the official distribution: name, SHA-256 and size in bytes (if known)."""

    name: str
    sha256: str
    size: int | None


# SHA-256 and sizes of the official files. MNIST and Fashion-MNIST: as recorded
# by TensorFlow Datasets (tensorflow_datasets/url_checksums/mnist.txt and
# fashion_mnist.txt). CIFAR-10: the Python-version tarball, whose SHA-256 is the
# one `keras.datasets.cifar10` pins (the CIFAR page itself publishes only the
# MD5, c58f30108f718f92721af3b95e74349a). visionpipe reads the tarball as it is;
# there is no need to extract it.
DATASET_SOURCES: dict[str, tuple[str, tuple[RemoteFile, ...]]] = {
    "mnist": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        (
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
            ),
        ),
    ),
    "fashion_mnist": (
        # Zalando's official bucket; it serves plain HTTP only, which is why
        # every file is checked against its SHA-256 before use.
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
            ),
        ),
    ),
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/",
        (
            RemoteFile(
                "cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                170498071,
            ),
        ),
    ),
}

Progress = Callable[[str], None]


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in blocks so large files need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _size_text(size: int) -> str:
    """Human-readable size: kB below a megabyte, MB above."""
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def default_deadline(size: int | None) -> float:
    """Seconds one file's download may take: its size at 64 KiB/s, at least 5 minutes.

    Generous for a poor link (CIFAR-10's 170 MB gets 43 minutes), yet finite,
    so a server that trickles bytes cannot keep the fetch running forever.
    """
    return max(_MIN_DEADLINE_S, (size or 0) / _MIN_RATE_BYTES_PER_S)


def _download_error(url: str, reason: str) -> FetchError:
    return FetchError(f"could not download {url}: {reason} ({_OFFLINE_HINT})")


class _TooLarge(FetchError):
    """The server sends, or announces, more bytes than the file has."""


def _too_large_error(url: str, what: str, size: int) -> _TooLarge:
    """Oversize is not a network hiccup: point at the server, not at being offline."""
    return _TooLarge(
        f"could not download {url}: {what} more than the file's {size} bytes "
        f"(not the official file; check the server or {MIRROR_ENV_VAR})"
    )


class _Deadline:
    """Overall time limit of one download, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self._began = seconds, time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._began

    def passed(self) -> bool:
        return self.elapsed() > self.seconds


@dataclass(frozen=True)
class _Transfer:
    """One download: where from and to, the file's known size, and its time limits."""

    url: str
    part: str
    size: int | None  # the file's known size: the body may never go past it
    timeout: float  # per network operation (connect, each read)
    deadline: _Deadline


def _reason(exc: BaseException, timeout: float) -> str:
    """Short human reason for a network failure ("Connection refused", "HTTP 404 Not Found")."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason  # urlopen wraps the socket error; report that
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET ``url``, asking for the bytes from ``offset`` on when resuming."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only)


def _resume_offset(response: http.client.HTTPResponse, offset: int) -> int:
    """Where the response body starts: ``offset`` if the server honoured Range, else 0."""
    if not offset or response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return offset if match and int(match.group(1)) == offset else 0


def _announced_totals(response: http.client.HTTPResponse, start: int) -> list[int]:
    """File sizes the response headers imply: from Content-Length and Content-Range."""
    totals = []
    length = response.headers.get("Content-Length", "")
    if length.isdigit():
        totals.append(start + int(length))
    match = re.match(r"bytes \d+-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
    if match:
        totals.append(int(match.group(1)) + 1)
        if match.group(2).isdigit():
            totals.append(int(match.group(2)))
    return totals


def _check_announced_size(response: http.client.HTTPResponse, start: int, job: _Transfer) -> None:
    """Refuse, before reading a byte, a body that the headers say is too large.

    The ``.part`` is left as it is: nothing of this response was written to it.
    """
    claimed = max(_announced_totals(response, start), default=0)
    if job.size is not None and claimed > job.size:
        raise _too_large_error(job.url, f"server announces {claimed} bytes,", job.size)


def _expected_total(
    response: http.client.HTTPResponse, start: int, known_size: int | None
) -> int | None:
    """Full file size: what the server promised, else what the source table says.

    The server's Content-Length wins so that a short body is recognised as a
    dropped connection (resumable), while a mirror holding a different file
    of a different size is caught by the checksum instead.
    """
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else known_size


class _ProgressReporter:
    """Emits a handful of lines per file (start, every 25 %, end), never a flood."""

    def __init__(self, name: str, progress: Progress, start: int, total: int | None) -> None:
        self._name, self._progress, self._total = name, progress, total
        self._start, self._began = start, time.monotonic()
        self._next_percent = _PROGRESS_STEP_PERCENT

    def update(self, done: int) -> None:
        if not self._total:
            return
        percent = 100 * done // self._total
        if self._next_percent <= percent < 100:
            self._progress(
                f"{self._name}: {percent}% ({_size_text(done)} of {_size_text(self._total)})"
            )
            self._next_percent = (percent // _PROGRESS_STEP_PERCENT + 1) * _PROGRESS_STEP_PERCENT

    def finish(self, done: int) -> None:
        received = done - self._start
        seconds = max(time.monotonic() - self._began, 1e-6)
        self._progress(
            f"{self._name}: received {_size_text(received)} in {seconds:.1f} s "
            f"({received / seconds / 1e6:.1f} MB/s)"
        )


def _read_block(response: http.client.HTTPResponse, job: _Transfer) -> bytes:
    """Next bytes of the body; a dropped connection becomes a resumable FetchError.

    ``read1`` returns whatever has arrived instead of waiting for a full block,
    so a trickling server still hands control back to the deadline check.
    """
    try:
        return response.read1(_BLOCK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        reason = _reason(exc, job.timeout)
        raise _download_error(job.url, f"{reason}; run again to resume") from None


def _deadline_error(job: _Transfer, start: int, done: int, total: int | None) -> FetchError:
    """The download ran out of time: the bytes so far are good, so a re-run resumes."""
    saved = f"{done} of {total}" if total is not None else f"{done}"
    return _download_error(
        job.url,
        f"received {done - start} bytes in {job.deadline.elapsed():.1f} s, past the "
        f"{job.deadline.seconds:g} s deadline ({saved} bytes saved); run again to resume",
    )


def _copy_body(
    response: http.client.HTTPResponse,
    out: BinaryIO,
    start: int,
    total: int | None,
    job: _Transfer,
    reporter: _ProgressReporter,
) -> int:
    """Append the body to ``out`` within the size cap and deadline; returns the size reached."""
    done = start
    while block := _read_block(response, job):
        done += len(block)
        if job.size is not None and done > job.size:
            raise _too_large_error(job.url, "server sent", job.size)
        out.write(block)
        reporter.update(done)
        if job.deadline.passed():
            raise _deadline_error(job, start, done, total)
    return done


def _save_body(
    response: http.client.HTTPResponse,
    start: int,
    total: int | None,
    job: _Transfer,
    reporter: _ProgressReporter,
) -> int:
    """Write the body to the ``.part`` (appending after ``start`` bytes); returns the size reached.

    A body that outgrows the file can never verify, so its ``.part`` is deleted;
    after any other failure the ``.part`` stays for the next run to resume.
    """
    try:
        with open(job.part, "ab" if start else "wb") as out:
            done = _copy_body(response, out, start, total, job, reporter)
            out.flush()
            os.fsync(out.fileno())
    except _TooLarge:
        os.remove(job.part)
        raise
    except OSError as exc:
        raise FetchError(f"{job.part}: cannot write download ({exc.strerror or exc})") from None
    return done


def _announce(name: str, url: str, offset: int, start: int, total: int | None) -> str:
    """First progress line for a file: fresh download, resume, or failed resume."""
    if offset and not start:
        return f"{name}: server cannot resume, downloading {url} from the start"
    if start:
        return f"{name}: resuming {url} at {_size_text(start)}"
    return f"{name}: downloading {url}" + (f" ({_size_text(total)})" if total else "")


def _request(job: _Transfer, offset: int) -> http.client.HTTPResponse | None:
    """Open the download, from ``offset`` on; None if the server says nothing is left (416)."""
    try:
        return _open(job.url, offset, job.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # nothing left to send: the .part is complete
            return None
        raise _download_error(job.url, _reason(exc, job.timeout)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise _download_error(job.url, _reason(exc, job.timeout)) from None


def _download(
    url: str, part: str, remote: RemoteFile, progress: Progress, timeout: float, deadline: float
) -> None:
    """Download ``url`` into ``part``, resuming from whatever ``part`` already holds.

    Network failures and the deadline leave ``part`` in place so the next run
    resumes from it. The deadline is checked after every read of the body and
    no single socket wait may be longer than the deadline, so the body ends
    within about twice the deadline even if the server falls silent just
    before it.
    """
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    if remote.size is not None and offset > remote.size:
        offset = 0  # longer than the real file: useless, start over
    job = _Transfer(url, part, remote.size, min(timeout, deadline), _Deadline(deadline))
    response = None if offset and offset == remote.size else _request(job, offset)
    if response is None:
        progress(f"{remote.name}: partial download {part} is already complete")
        return
    with response:
        start = _resume_offset(response, offset)
        _check_announced_size(response, start, job)
        total = _expected_total(response, start, remote.size)
        progress(_announce(remote.name, url, offset, start, total))
        reporter = _ProgressReporter(remote.name, progress, start, total)
        done = _save_body(response, start, total, job, reporter)
    if total is not None and done < total:
        raise _download_error(
            url, f"connection closed after {done} of {total} bytes; run again to resume"
        )
    reporter.finish(done)


def _already_present(path: str, remote: RemoteFile, progress: Progress) -> bool:
    """True if ``path`` already holds the right file.

    A file with the wrong checksum is left in place (it might be the user's
    copy of another dataset) and only replaced once a verified download exists.
    """
    if not os.path.isfile(path):
        return False
    actual = sha256_file(path)
    if actual == remote.sha256:
        progress(f"{remote.name}: already present, checksum OK")
        return True
    progress(
        f"{remote.name}: existing file has the wrong checksum (sha256 {actual}), "
        f"downloading it again"
    )
    return False


def _verify_and_install(
    part: str, final: str, remote: RemoteFile, url: str, progress: Progress
) -> None:
    """Give ``part`` its final name only if its SHA-256 is the expected one."""
    actual = sha256_file(part)
    if actual != remote.sha256:
        os.remove(part)
        raise FetchError(
            f"{final}: checksum mismatch for {url}: expected sha256 {remote.sha256}, "
            f"got {actual} (download deleted; run again to retry)"
        )
    os.replace(part, final)
    progress(f"{remote.name}: checksum OK, saved {final}")


def _fetch_file(
    base_url: str,
    remote: RemoteFile,
    data_dir: str,
    progress: Progress,
    timeout: float,
    deadline: float | None,
) -> str:
    """Make ``data_dir/<name>`` a verified copy of ``remote``, downloading only if needed."""
    final = os.path.join(data_dir, remote.name)
    if _already_present(final, remote, progress):
        return final
    url = base_url.rstrip("/") + "/" + remote.name
    part = final + ".part"
    seconds = default_deadline(remote.size) if deadline is None else deadline
    _download(url, part, remote, progress, timeout, seconds)
    _verify_and_install(part, final, remote, url, progress)
    return final


def _ensure_dir(data_dir: str) -> None:
    """Create the data directory, reporting e.g. a file in the way as one line."""
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise FetchError(f"{data_dir}: cannot create data directory ({reason})") from None


def fetch_dataset(
    dataset: str,
    data_dir: str,
    base_url: str | None = None,
    progress: Progress = print,
    timeout: float = 30.0,
    files: Sequence[RemoteFile] | None = None,
    deadline: float | None = None,
) -> list[str]:
    """Download ``dataset``'s official files into ``data_dir``; return their paths.

    MNIST-format datasets are four .gz IDX files; CIFAR-10 is one tarball.

    Files already present with the right checksum are not downloaded again.
    The base URL is, by priority: ``base_url``, the ``VISIONPIPE_MIRROR_URL``
    environment variable (internal mirrors, tests), the official location.
    ``files`` replaces the built-in file table (names and checksums), which
    is how tests and private mirrors with other files use this function.
    ``timeout`` bounds each network operation; ``deadline`` bounds each
    file's whole download, in seconds (default: ``default_deadline`` of the
    file's known size). No download grows past the file's known size.
    Raises FetchError with a one-line message on any failure.
    """
    if dataset not in DATASET_SOURCES:
        raise FetchError(
            f"unknown dataset {dataset!r} (choose from: {', '.join(sorted(DATASET_SOURCES))})"
        )
    default_url, default_files = DATASET_SOURCES[dataset]
    base = base_url or os.environ.get(MIRROR_ENV_VAR) or default_url
    _ensure_dir(data_dir)
    return [
        _fetch_file(base, remote, data_dir, progress, timeout, deadline)
        for remote in (default_files if files is None else files)
    ]
