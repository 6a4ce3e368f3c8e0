"""Reading members of a ``.tar.gz`` in one forward pass, never extracting to disk.

A tarball is decompressed as it streams and reading stops at the last member
wanted, so memory stays flat and a reader of an early member does not pay for
the rest; nothing is written to disk, so member names cannot escape anywhere.
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
from collections.abc import Iterator, Sequence

from components.cifar_example_gen.cifar_format.common import CifarFormatError, error, open_file
from components.cifar_example_gen.cifar_format.layout import CifarShard
from components.example_gen.data_files import stream_failures


# Read size when decompressing through a tarball; tarfile's default (10 KiB)
# would mean thousands of tiny Python-level reads per batch.
TAR_BUFSIZE = 1 << 20


class GuardedReader:
    """Read-only view of a gzip stream that blames decompression failures on the tarball.

    Without it a truncated download surfaces as a bare EOFError from inside
    tarfile or pickle, and would be reported as a broken member instead; a
    failing read of the file says "cannot read" (see data_files.stream_failures).
    """

    def __init__(self, stream: gzip.GzipFile, tarball: str) -> None:
        self._stream = stream
        self._tarball = tarball

    def read(self, size: int = -1) -> bytes:
        with stream_failures(self._tarball, error, "corrupt or truncated gzip data"):
            return self._stream.read(size)

    def drain(self) -> None:
        """Read to the end, which is what makes gzip verify its CRC and length trailer."""
        while self.read(TAR_BUFSIZE):
            pass


@contextlib.contextmanager
def open_tarball(tarball: str) -> Iterator[tuple[tarfile.TarFile, GuardedReader]]:
    """Open a ``.tar.gz`` for a single forward pass (tarfile's streaming mode).

    Streaming mode never seeks, so only the bytes up to the last member used
    are decompressed, and nothing is extracted to disk (so member names cannot
    escape anywhere). Archive damage inside the ``with`` block becomes a
    CifarFormatError naming the tarball.
    """
    with open_file(tarball) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as compressed:
        reader = GuardedReader(compressed, tarball)
        try:
            with tarfile.open(  # type: ignore[call-overload]
                fileobj=reader,
                mode="r|",
                bufsize=TAR_BUFSIZE,
            ) as tar:
                yield tar, reader
        except tarfile.TarError as exc:
            raise error(tarball, f"corrupt or truncated tar archive ({exc})") from None


def member_name(info: tarfile.TarInfo) -> str:
    """Member name without the ``./`` that ``tar czf x.tar.gz ./dir`` adds."""
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    return name


def wanted_members(
    tar: tarfile.TarFile, wanted: dict[str, CifarShard]
) -> Iterator[tuple[CifarShard, tarfile.TarInfo]]:
    """Yield ``(shard, member)`` as wanted members stream by, removing them from ``wanted``.

    Stops as soon as nothing is wanted any more, so a reader of an early
    member does not decompress the rest of the archive.
    """
    for info in tar:
        shard = wanted.pop(member_name(info), None) if info.isfile() else None
        if shard is not None:
            yield shard, info
            if not wanted:
                return


def missing_members_error(tarball: str, missing: Sequence[str]) -> CifarFormatError:
    return error(tarball, f"archive has no member {', '.join(missing)}")
