"""Which CIFAR-10 layout a data directory holds, its class names and its shards.

Users point ``--data-dir`` at whatever they downloaded or extracted: the
python or binary version's tarball, its extracted folder (or the batch files
themselves), or an image folder. Detection checks what is cheap to check
(every batch file present, the class names, declared sizes), so a wrong or
incomplete download fails before any record is read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import IO

import components.cifar_example_gen.cifar_format.binary_version as binary_version
import components.cifar_example_gen.cifar_format.image_folders as image_folders
import components.cifar_example_gen.cifar_format.python_version as python_version
from components.cifar_example_gen.cifar_format.bounds import (
    MAX_META_BYTES,
    check_batch_size,
    check_declared_size,
)
from components.cifar_example_gen.cifar_format.common import (
    BINARY,
    FORMAT_TITLES,
    IMAGE_FOLDER,
    PYTHON,
    TARBALL_SUFFIX,
    check_class_names,
    error,
    file_size,
    open_file,
)
from components.cifar_example_gen.cifar_format.layout import (
    BATCH_LAYOUTS,
    SPLIT_BATCHES,
    BatchLayout,
    CifarShard,
    CifarSource,
    location_label,
)
from components.cifar_example_gen.cifar_format.tar_stream import (
    member_name,
    missing_members_error,
    open_tarball,
)
from components.example_gen.data_files import check_directory, is_file_or_link, list_directory


_EXPECTED_LAYOUTS = (
    f"expected {BATCH_LAYOUTS[PYTHON].tarball}, {BATCH_LAYOUTS[PYTHON].folder}/, "
    f"{BATCH_LAYOUTS[BINARY].tarball}, {BATCH_LAYOUTS[BINARY].folder}/, "
    "or train/ and test/ folders with one sub-folder of images per class"
)

_META_READERS: dict[str, Callable[[IO[bytes], int, str], tuple[str, ...]]] = {
    PYTHON: python_version.read_meta,
    BINARY: binary_version.read_meta,
}


def _read_meta(
    layout: BatchLayout, stream: IO[bytes], size: int, where: str, archive: str | None = None
) -> tuple[str, ...]:
    """The checked class names of a ``size``-byte meta file (a member of ``archive``, if given)."""
    check_declared_size(where, size, MAX_META_BYTES, f"{layout.meta} (ten class names)", archive)
    return check_class_names(where, _META_READERS[layout.format](stream, size, where))


def _find_batch_version(data_dir: str, layout: BatchLayout) -> str | None:
    """Where an official version is: its extracted folder, ``data_dir`` itself, or the tarball."""
    folder = os.path.join(data_dir, layout.folder)
    if os.path.isdir(folder):
        return folder
    if any(is_file_or_link(os.path.join(data_dir, name)) for name in layout.required_files):
        return data_dir
    tarball = os.path.join(data_dir, layout.tarball)
    return tarball if is_file_or_link(tarball) else None


def _batch_shards(
    layout: BatchLayout, container: str, in_tarball: bool
) -> dict[str, tuple[CifarShard, ...]]:
    """One shard per batch file; ``member`` is a tar member name or the batch file's path."""

    def shard(stem: str) -> CifarShard:
        name = layout.batch_file(stem)
        member = layout.member(name) if in_tarball else os.path.join(container, name)
        return CifarShard(layout.format, container, member, (), stem)

    return {split: tuple(shard(stem) for stem in stems) for split, stems in SPLIT_BATCHES.items()}


def _batch_folder_source(layout: BatchLayout, folder: str) -> CifarSource:
    present = {entry.name for entry in list_directory(folder, error) if is_file_or_link(entry)}
    missing = [name for name in layout.required_files if name not in present]
    if missing:
        others = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise error(
            os.path.join(folder, missing[0]),
            f"file not found; the CIFAR-10 {FORMAT_TITLES[layout.format]} needs "
            f"{', '.join(layout.required_files)}{others}",
        )
    meta_path = os.path.join(folder, layout.meta)
    with open_file(meta_path) as stream:
        class_names = _read_meta(layout, stream, file_size(stream), meta_path)
    return CifarSource(
        layout.format, folder, class_names, _batch_shards(layout, folder, in_tarball=False)
    )


def _batch_tarball_source(layout: BatchLayout, tarball: str) -> CifarSource:
    """List the tarball (one decompression pass; also checks the CRC) and read its meta member."""
    members: set[str] = set()
    meta_member = layout.member(layout.meta)
    batch_members = {layout.member(name) for name in layout.required_files} - {meta_member}
    class_names: tuple[str, ...] = ()
    with open_tarball(tarball) as (tar, reader):
        for info in tar:
            if not info.isfile():
                continue
            name = member_name(info)
            members.add(name)
            if name == meta_member:
                stream = tar.extractfile(info)
                assert stream is not None
                class_names = _read_meta(layout, stream, info.size, f"{tarball}:{name}", tarball)
            elif name in batch_members:  # now: skipping a huge declared size reads to the end
                check_batch_size(layout.format, f"{tarball}:{name}", info.size, tarball)
        reader.drain()
    missing = [
        layout.member(name) for name in layout.required_files if layout.member(name) not in members
    ]
    if missing:
        raise missing_members_error(tarball, missing)
    return CifarSource(
        layout.format, tarball, class_names, _batch_shards(layout, tarball, in_tarball=True)
    )


def detect_cifar_source(data_dir: str) -> CifarSource:
    """Find which CIFAR-10 layout ``data_dir`` holds, read its class names and list its shards.

    An extracted folder wins over the tarball of the same version (it is
    faster to read). When different layouts are present, the python version
    wins over the binary version, which wins over an image folder; the losers
    are named in :meth:`CifarSource.describe`. Checks presence of every batch
    file and the class names; a tarball is listed in one decompression pass,
    which also verifies its gzip CRC. Image folders are split into shards of
    ``image_folders.IMAGE_FILES_PER_SHARD`` files.
    """
    entries = check_directory(data_dir, error)
    found = [
        (kind, location)
        for kind, location in (
            (PYTHON, _find_batch_version(data_dir, BATCH_LAYOUTS[PYTHON])),
            (BINARY, _find_batch_version(data_dir, BATCH_LAYOUTS[BINARY])),
            (IMAGE_FOLDER, image_folders.find_image_folder(data_dir)),
        )
        if location is not None
    ]
    if not found:
        raise error(
            data_dir,
            f"{'no CIFAR-10 data found' if entries else 'directory is empty'}; {_EXPECTED_LAYOUTS}",
        )
    (kind, location), others = found[0], found[1:]
    if kind == IMAGE_FOLDER:
        source = image_folders.image_folder_source(location)
    elif location.endswith(TARBALL_SUFFIX):
        source = _batch_tarball_source(BATCH_LAYOUTS[kind], location)
    else:
        source = _batch_folder_source(BATCH_LAYOUTS[kind], location)
    ignored = tuple(location_label(other, where) for other, where in others)
    return dataclasses.replace(source, ignored=ignored)
