"""Benchmark: the ExampleGens' PNG encoder against Pillow's, alternating, on real images.

Why it exists: `components/example_gen/image_examples.encode_png` writes PNGs
with zlib directly instead of through Pillow, for speed; this prints what that
buys (median seconds per pass over the images, and bytes per image) so the
claim in its docstring can be re-measured on any machine.

    uv run python bench/png_encoding.py                 # full Fashion-MNIST test split
    uv run python bench/png_encoding.py --rounds 5 --data-dir /path/to/mnist
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.pipeline_vs_keras import FASHION_MNIST_DIR, load_split  # noqa: E402
from components.example_gen.image_examples import encode_png  # noqa: E402


def pillow_png(image: np.ndarray) -> bytes:
    """What the ExampleGens did before: Pillow at zlib level 1."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR, help="folder with the IDX files; its t10k images are encoded")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images, _ = load_split(args.data_dir, "t10k")
    encoders: dict[str, Callable[[np.ndarray], bytes]] = {"pillow": pillow_png, "visionpipe": encode_png}
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, encode in encoders.items():
            started = time.perf_counter()
            encoded = [encode(image) for image in images]
            seconds[name].append(time.perf_counter() - started)
            sizes[name] = sum(map(len, encoded)) / len(encoded)
    print(f"{len(images):,} t10k images of {args.data_dir}, {args.rounds} alternating rounds")
    for name in encoders:
        rounds = ", ".join(f"{value:.3f}" for value in seconds[name])
        print(f"{name}: median {statistics.median(seconds[name]):.3f} s ({rounds}), {sizes[name]:.1f} bytes per image")
    ratio = statistics.median(seconds["pillow"]) / statistics.median(seconds["visionpipe"])
    print(f"pillow / visionpipe: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
