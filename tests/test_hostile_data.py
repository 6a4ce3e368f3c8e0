"""Hostile and broken input: each case is one line naming the file, found in seconds.

Memory bombs (a 200-byte pickle or a 1 MB tarball that claims gigabytes),
unreadable folders and broken symbolic links, for the CIFAR-10 and IDX
readers that the CLI's pre-flight check runs. Every fixture is written here,
in the official layouts, with the helpers of the format tests.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from components.cifar_example_gen.cifar_format import (
    BATCH_LAYOUTS,
    BINARY,
    PYTHON,
    CifarFormatError,
    CifarShard,
    detect_cifar_source,
    iter_shard_records,
    validate_cifar_source,
)
from components.idx_example_gen.idx_format import IdxFormatError, validate_idx_dataset
from tests.test_cifar_format import (
    FOLDERS,
    _assert_one_line_error,
    _batch_file,
    _data,
    _replace_python_batch,
    _validate,
    _write_tree,
    _write_version,
)
from tests.test_idx_format import _write_dataset

REPO = Path(__file__).resolve().parents[1]
RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own array-unpickling helper
UINT8, INT64 = np.dtype(np.uint8), np.dtype(np.int64)
# 3,000,000 binary records: what a 9.2 GB member of cifar-10-binary.tar.gz would hold.
HUGE_BINARY_BYTES = 3_000_000 * 3073


class _Pickled:
    """Pickles as ``func(*args)``, then BUILD ``state`` if given: how hostile files are written."""

    def __init__(self, func: Callable[..., object], *args: object, state: object = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[object, ...]:
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def _repeated(shape: tuple[int, ...], dtype: np.dtype = UINT8) -> _Pickled:
    """``numpy.ndarray(shape, buffer=<one item>, strides=0)``: one byte standing for all of them."""
    return _Pickled(np.ndarray, shape, dtype, bytes(dtype.itemsize), 0, (0,) * len(shape))


def _rebuilt(state: tuple[object, ...]) -> _Pickled:
    """An array as numpy pickles one: ``_reconstruct(ndarray, (0,), 'b')`` and BUILD ``state``."""
    return _Pickled(RECONSTRUCT, np.ndarray, (0,), b"b", state=state)


# --- pickles that claim more than they hold -----------------------------------------------


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        (
            {"data": _repeated((2_000_000, 3072)), "labels": _repeated((2_000_000,), INT64)},
            "with strides (0, 0): zero or negative strides",
        ),
        (
            {"data": _repeated((10**9, 3072)), "labels": [0]},
            "with strides (0, 0)",
        ),
        (
            {"data": _Pickled(np.ndarray, (2_000_000, 3072), UINT8), "labels": [0]},
            "of shape (2000000, 3072) uint8: it declares 6,144,000,000 bytes, more than the file's",
        ),
        (
            {"data": _Pickled(np.ndarray, (2000, 3072), UINT8, bytes(5071), 0, (1, 1))},
            "it declares 6,144,000 bytes",
        ),
        (
            {"data": _Pickled(RECONSTRUCT, np.ndarray, (2_000_000, 3072), b"B"), "labels": [0]},
            "it declares 6,144,000,000 bytes",
        ),
        (
            {"data": [[0] * 3072] * 100_000, "labels": [0] * 100_000},
            "'data' holds 100,000 images, far more than a CIFAR-10 batch",
        ),
        (
            {"data": [[0] * 3072] * 20_000, "labels": [0] * 20_000},
            "'data' declares 20,000 images (61,440,000 pixel bytes), more than the file's",
        ),
        (
            {"data": [[[0] * 100_000] * 3072] * 2, "labels": [0, 1]},
            "'data' is a list whose values are not all integers 0..255",
        ),
        (
            {"data": _data(2), "labels": [[0] * 100_000] * 60_000},
            "'labels' is not a list of integers",
        ),
    ],
    ids=[
        "zero strides",
        "zero strides, 10^9 rows",
        "no buffer",
        "overlapping strides",
        "reconstruct shape",
        "shared rows past the image limit",
        "shared rows past the file size",
        "shared pixel lists",
        "shared label lists",
    ],
)
def test_small_pickle_claiming_a_huge_batch(tmp_path: Path, batch: object, problem: str) -> None:
    """Each of these took minutes, gigabytes or a MemoryError traceback after the pre-flight."""
    raw = pickle.dumps(batch, protocol=4)
    assert len(raw) < 500_000
    target = _replace_python_batch(tmp_path, raw)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, problem)


@pytest.mark.parametrize(
    "state",
    [
        (1, (1000,), np.dtype(object), False, [0]),  # numpy trusts the list's length: a crash
        (1, (2, 3072), UINT8, False, [0] * 6144),
    ],
    ids=["object dtype", "list data"],
)
def test_array_state_must_be_numbers_as_bytes(tmp_path: Path, state: tuple[object, ...]) -> None:
    target = _replace_python_batch(tmp_path, {"data": _rebuilt(state), "labels": [0, 1]})
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, "refusing to unpickle a numpy array")


def test_dtype_state_cannot_claim_python_objects(tmp_path: Path) -> None:
    """BUILD on a pickled dtype can set the flag 'holds objects': numpy would read pointers."""
    images = _data(2)
    images[1, :5] = 7
    objects_flags = 0x3F
    state = (3, "|", None, None, None, -1, -1, objects_flags)
    dtype = _Pickled(np.dtype, "u1", False, True, state=state)
    data = _rebuilt((1, images.shape, dtype, False, images.tobytes()))
    _replace_python_batch(tmp_path, {"data": data, "labels": [3, 4]})
    shard = detect_cifar_source(str(tmp_path)).shards["train"][1]
    got = np.stack([image for _, image, _ in iter_shard_records(shard)])
    assert got.dtype == np.uint8 and got.sum() == 5 * 7


# --- tarballs and files that claim more than they hold ----------------------------------


def _tarball_with(folder: Path, tarball: Path, member: tarfile.TarInfo, data: bytes) -> Path:
    """``folder`` packed like ``tar czf``, plus ``member`` whose header says what it likes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=folder.name)
        members = buffer.getvalue()[: tar.offset]  # before close() writes the end of the archive
    header = member.tobuf(tarfile.PAX_FORMAT)
    padding = bytes(-len(data) % tarfile.BLOCKSIZE)
    tarball.write_bytes(gzip.compress(members + header + data + padding + bytes(1024)))
    return tarball


def _sparse_member(name: str, size: int) -> tarfile.TarInfo:
    """A GNU sparse member (pax format 0.1): one stored byte, the rest a hole read as zeros."""
    info = tarfile.TarInfo(name)
    info.size = 1
    info.pax_headers = {"GNU.sparse.map": "0,1", "GNU.sparse.size": str(size)}
    return info


def _declared_member(name: str, size: int) -> tarfile.TarInfo:
    """A plain member whose header declares ``size`` bytes that the archive does not have."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _bad_member_tarball(
    directory: Path, format: str, make_member: Callable[[str, int], tarfile.TarInfo], size: int
) -> tuple[Path, str]:
    """An official tarball whose ``data_batch_2`` is replaced by a member of ``size`` bytes."""
    folder = _write_version(directory / "x", format, tarball=False)
    batch = _batch_file(directory / "x", format, "data_batch_2")
    batch.unlink()
    tarball = directory / f"cifar-10-{format}.tar.gz"
    name = f"{FOLDERS[format]}/{batch.name}"
    return _tarball_with(folder, tarball, make_member(name, size), b"\0"), f"{tarball}:{name}"


@pytest.mark.parametrize("format", [PYTHON, BINARY])
@pytest.mark.parametrize(
    "make_member", [_sparse_member, _declared_member], ids=["sparse", "declared"]
)
def test_tar_member_far_larger_than_cifar(
    tmp_path: Path, format: str, make_member: Callable[[str, int], tarfile.TarInfo]
) -> None:
    _, where = _bad_member_tarball(tmp_path, format, make_member, HUGE_BINARY_BYTES)
    with pytest.raises(CifarFormatError) as excinfo:
        validate_cifar_source(detect_cifar_source(str(tmp_path)))
    _assert_one_line_error(
        excinfo, where, "size 9,219,000,000 bytes is far larger than a CIFAR-10 batch"
    )


def test_sparse_member_is_refused_when_read_too(tmp_path: Path) -> None:
    """The reader checks too: ExampleGen may run without the pre-flight (Kubeflow)."""
    tarball, where = _bad_member_tarball(tmp_path, BINARY, _sparse_member, HUGE_BINARY_BYTES)
    member = where.removeprefix(f"{tarball}:")
    shard = CifarShard(BINARY, str(tarball), member, (), "data_batch_2")
    with pytest.raises(CifarFormatError) as excinfo:
        next(iter_shard_records(shard))
    _assert_one_line_error(excinfo, where, "far larger than a CIFAR-10 batch")


@pytest.mark.parametrize("format", [PYTHON, BINARY])
@pytest.mark.parametrize(
    "make_member", [_sparse_member, _declared_member], ids=["sparse", "declared"]
)
def test_tar_member_larger_than_its_archive_can_hold(
    tmp_path: Path, format: str, make_member: Callable[[str, int], tarfile.TarInfo]
) -> None:
    """Within CIFAR-10's bounds, but a tiny archive cannot hold it (gzip expands 1032x at most)."""
    tarball, where = _bad_member_tarball(tmp_path, format, make_member, 150_000_000)
    with pytest.raises(CifarFormatError) as excinfo:
        validate_cifar_source(detect_cifar_source(str(tmp_path)))
    _assert_one_line_error(
        excinfo,
        where,
        f"size 150,000,000 bytes is more than the {tarball.stat().st_size:,}-byte archive can hold",
    )


def test_huge_meta_member(tmp_path: Path) -> None:
    folder = _write_version(tmp_path / "x", BINARY, tarball=False)
    (folder / "batches.meta.txt").unlink()
    tarball = tmp_path / "cifar-10-binary.tar.gz"
    name = f"{folder.name}/batches.meta.txt"
    _tarball_with(folder, tarball, _sparse_member(name, 1 << 30), b"\0")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(
        excinfo, f"{tarball}:{name}", "is far larger than batches.meta.txt (ten class names)"
    )


def test_sparse_extracted_binary_batch(tmp_path: Path) -> None:
    _write_version(tmp_path, BINARY, tarball=False)
    target = _batch_file(tmp_path, BINARY, "data_batch_4")
    with open(target, "r+b") as stream:
        stream.truncate(HUGE_BINARY_BYTES)  # a hole: no disk space, 9.2 GB of zeros to read
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, "far larger than a CIFAR-10 batch")


# --- broken symbolic links ------------------------------------------------------------------


def _dangle(link: Path) -> str:
    """Replace ``link`` by a symbolic link to a missing file; returns the expected problem."""
    link.unlink()
    link.symlink_to("moved-away")
    return f"broken symbolic link: its target {link.parent / 'moved-away'} does not exist"


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_dangling_idx_file(tmp_path: Path, name: str) -> None:
    data_dir = _write_dataset(tmp_path)
    problem = _dangle(data_dir / name)
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, data_dir / name, problem)


def test_idx_data_dir_of_dangling_links_only(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    for path in data_dir.iterdir():
        _dangle(path)
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, data_dir / "train-images-idx3-ubyte.gz", "broken symbolic link")


@pytest.mark.parametrize("format", [PYTHON, BINARY])
@pytest.mark.parametrize("stem", ["data_batch_3", "test_batch"])
def test_dangling_batch_file(tmp_path: Path, format: str, stem: str) -> None:
    _write_version(tmp_path, format, tarball=False)
    target = _batch_file(tmp_path, format, stem)
    problem = _dangle(target)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, problem)


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_dangling_meta_file(tmp_path: Path, format: str) -> None:
    folder = _write_version(tmp_path, format, tarball=False)
    target = folder / BATCH_LAYOUTS[format].meta
    problem = _dangle(target)
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, target, problem)


def test_dangling_tarball(tmp_path: Path) -> None:
    tarball = _write_version(tmp_path, PYTHON, tarball=True)
    problem = _dangle(tarball)
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tarball, problem)


def test_dangling_image(tmp_path: Path) -> None:
    root = _write_tree(tmp_path / "cifar10png")
    target = root / "test" / "ship" / "0001.png"
    problem = _dangle(target)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(root)
    _assert_one_line_error(excinfo, target, problem)


# --- unreadable folders -----------------------------------------------------------------------


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A fresh folder that user nobody can reach: pytest's tmp_path is under a 0700 folder."""
    path = Path(tempfile.mkdtemp(prefix="visionpipe-unreadable-"))
    path.chmod(0o755)
    yield path
    for folder, subfolders, _ in os.walk(path):  # top-down: reopened before it is listed
        for name in subfolders:
            os.chmod(os.path.join(folder, name), 0o755)
    shutil.rmtree(path)


def _error_as_unprivileged(call: str) -> str:
    """The DataFormatError that ``call`` raises, run where file permissions apply.

    Root reads any folder, so chmod 000 alone tests nothing when the tests run
    as root (here and in CI): then the call runs as user nobody.
    """
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop privileges")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    code = (
        "from components.cifar_example_gen import cifar_format\n"
        "from components.idx_example_gen import idx_format\n"
        "from components.example_gen.data_errors import DataFormatError\n"
        f"try:\n    {call}\nexcept DataFormatError as error:\n    print(error)\n"
        "else:\n    print('no error')\n"
    )
    result = subprocess.run(
        [*(as_nobody if os.geteuid() == 0 else []), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.strip()


def _locked(folder: Path) -> Path:
    folder.chmod(0)
    return folder


def test_unreadable_idx_data_dir(reachable_dir: Path) -> None:
    data_dir = _locked(_write_dataset(reachable_dir / "mnist"))
    message = _error_as_unprivileged(f"idx_format.validate_idx_dataset({str(data_dir)!r})")
    assert message == f"{data_dir}: cannot read directory (Permission denied)"


def test_unreadable_cifar_data_dir(reachable_dir: Path) -> None:
    _write_version(reachable_dir / "cifar", BINARY, tarball=True)
    data_dir = _locked(reachable_dir / "cifar")
    message = _error_as_unprivileged(f"cifar_format.detect_cifar_source({str(data_dir)!r})")
    assert message == f"{data_dir}: cannot read directory (Permission denied)"


def test_unreadable_extracted_batch_folder(reachable_dir: Path) -> None:
    folder = _locked(_write_version(reachable_dir, PYTHON, tarball=False))
    message = _error_as_unprivileged(f"cifar_format.detect_cifar_source({str(reachable_dir)!r})")
    assert message == f"{folder}: cannot read directory (Permission denied)"


@pytest.mark.parametrize("folder", ["train", "test/cat"])
def test_unreadable_image_folder(reachable_dir: Path, folder: str) -> None:
    root = _write_tree(reachable_dir / "cifar10png")
    locked = _locked(root / folder)
    message = _error_as_unprivileged(f"cifar_format.detect_cifar_source({str(root)!r})")
    assert message == f"{locked}: cannot read directory (Permission denied)"
