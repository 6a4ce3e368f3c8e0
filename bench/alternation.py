"""Timing two variants of one step fairly: alternate them, take medians, print the ratio.

Alternating (A, B, A, B, ...) rather than all A then all B spreads a noisy
machine's slow spells over both variants; the median ignores a stray outlier.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(
    runs: dict[str, Callable[[], tuple[float, str]]], repeats: int
) -> dict[str, float]:
    """Runs each variant `repeats` times, alternating; prints each time and the medians.

    Each run returns its wall seconds and a note to print beside them ("" for
    none). Returns variant name -> median seconds; the ratio printed is the
    second variant's median over the first's.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run_once in runs.items():
            elapsed, note = run_once()
            seconds[name].append(elapsed)
            print(f"[{repeat + 1}/{repeats}] {name}: {elapsed:.1f} s{note}", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    (first, base), (second, other) = list(medians.items())[:2]
    print(f"\nmedian of {repeats}: {first} {base:.1f} s, {second} {other:.1f} s, "
          f"ratio {other / base:.2f}x, extra {other - base:.1f} s")
    return medians
