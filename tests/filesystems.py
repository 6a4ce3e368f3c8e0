"""Real file-system faults for tests: a full disk and a read-only disk, as tmpfs mounts.

Root (which the tests run as, here and in CI) ignores permission bits, so
chmod cannot make a folder read-only for it; a read-only mount can, and a
small tmpfs gives the real ENOSPC of a full disk. Mounting needs
CAP_SYS_ADMIN: without it these tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest


def _mount_tmpfs(path: str, options: str) -> None:
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")


@contextlib.contextmanager
def tmpfs(path: str, size_bytes: int, read_only: bool = False) -> Iterator[str]:
    """A tmpfs of `size_bytes` at `path` for the block (read-only if asked); unmounted after."""
    _mount_tmpfs(path, f"size={size_bytes}" + (",ro" if read_only else ""))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
