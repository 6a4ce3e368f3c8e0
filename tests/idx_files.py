"""Writer of IDX files (the MNIST file format), for tests, benchmarks and the sample-data script.

The product only reads IDX (components/idx_example_gen/idx_format.py); what
writes them lives with the tests that need tiny datasets, and with
scripts/make_sample_data.py, which imports it from here.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np

from components.idx_example_gen.idx_format import UBYTE_TYPE_CODE


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file; gzipped when ``path`` ends with ``.gz``.

    The gzip header carries no file name and mtime 0, so identical arrays give
    byte-identical files (reproducible sample data, stable checksums).
    """
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: write_idx needs a uint8 array, got {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(dim >= 1 << 32 for dim in array.shape):
        raise ValueError(f"{path}: cannot store an array of shape {array.shape} in IDX")
    header = struct.pack(f">I{array.ndim}I", (UBYTE_TYPE_CODE << 8) | array.ndim, *array.shape)
    data = memoryview(np.ascontiguousarray(array).reshape(-1))
    with open(path, "wb") as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
                compressed.write(header)
                compressed.write(data)
        else:
            raw.write(header)
            raw.write(data)
