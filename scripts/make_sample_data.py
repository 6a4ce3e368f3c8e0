#!/usr/bin/env python3
"""Build the small Fashion-MNIST sample shipped in ``pipeline/sample_data/fashion_mnist``.

The sample lets the pipeline, its tests and the quick-start run offline and in
minutes: it is the first 6,000 training and first 1,000 test images (with
their labels) of Fashion-MNIST, in the same four gzipped IDX files as the full
dataset, so every code path is the real one. Output is byte-for-byte
reproducible (gzip mtime 0, no file name in the gzip header), so re-running
the script leaves git clean.

Usage: python scripts/make_sample_data.py [--source DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a plain script, without installing the package

from components.idx_example_gen.idx_format import (  # noqa: E402 (needs the path set above)
    IdxFormatError,
    iter_idx_chunks,
    validate_idx_dataset,
)
from tests.idx_files import write_idx  # noqa: E402

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
DEFAULT_OUTPUT = REPO_ROOT / "pipeline" / "sample_data" / "fashion_mnist"
DEFAULT_COUNTS = {"train": 6000, "t10k": 1000}


def copy_head(source_path: str, output_dir: Path, count: int) -> Path:
    """Write the first ``count`` records of an IDX file to ``output_dir`` as ``<stem>.gz``."""
    stem = os.path.basename(source_path).removesuffix(".gz")
    target = output_dir / f"{stem}.gz"
    records = np.concatenate(list(iter_idx_chunks(source_path, count=count)))
    write_idx(str(target), records)
    return target


def describe(path: Path) -> str:
    """One line per output file: size and SHA-256, for the README and reviewers."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name}: {path.stat().st_size} bytes, sha256 {digest}"


def make_sample(source_dir: str, output_dir: Path, counts: dict[str, int]) -> list[Path]:
    """Validate the source dataset, then write the head of each split into ``output_dir``."""
    sources = validate_idx_dataset(source_dir)
    for split, count in counts.items():
        if count > sources[split].count:
            raise IdxFormatError(
                f"{sources[split].images_path}: has {sources[split].count} images, "
                f"cannot take the first {count}"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [
        copy_head(path, output_dir, count)
        for split, count in counts.items()
        for path in (sources[split].images_path, sources[split].labels_path)
    ]
    validate_idx_dataset(str(output_dir))  # the sample must pass the pipeline's own check
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="directory with the 4 IDX files")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--train-count", type=int, default=DEFAULT_COUNTS["train"])
    parser.add_argument("--test-count", type=int, default=DEFAULT_COUNTS["t10k"])
    args = parser.parse_args(argv)
    try:
        written = make_sample(
            args.source, args.output, {"train": args.train_count, "t10k": args.test_count}
        )
    except IdxFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(describe(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
