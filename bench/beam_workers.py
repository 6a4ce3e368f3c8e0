"""Does `visionpipe run --beam-workers N` pay off here? The data stages, in-process against N workers.

Runs ExampleGen ... Transform of the local pipeline (what Beam runs before
training) on the same data, alternating one in-process worker (the default)
and N worker processes, each time into a fresh output dir so nothing is
cached; prints each time, the medians and the ratio, and saves them under
bench/results/. The Evaluator is Beam too but needs a trained model, so it is
left out; its share of a run is small on the sample.

    uv run python bench/beam_workers.py [--data-dir DIR --dataset NAME] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.alternation import alternate  # noqa: E402
from bench.results_io import save_results  # noqa: E402
from pipeline import configs, datasets, local_runner  # noqa: E402


def data_stages_seconds(config: configs.RunConfig) -> float:
    """Wall seconds of ExampleGen ... Transform with `config`'s Beam workers, into a fresh output dir."""
    shutil.rmtree(config.output_dir, ignore_errors=True)
    data_stages = local_runner.build_local_pipeline(config, data_stages_only=True)  # the workers' shim path too
    started = time.monotonic()
    local_runner.run_pipeline(data_stages, local_runner.new_run_id())
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=datasets.DEFAULT_DATASET)
    parser.add_argument("--data-dir", default=datasets.DEFAULT_SAMPLE_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="beam-workers-")
    variants = {
        f"{workers} worker{'s' if workers > 1 else ''}": configs.RunConfig(
            dataset=args.dataset, data_dir=args.data_dir, output_dir=os.path.join(work, str(workers)), beam_workers=workers
        ).absolute()
        for workers in (1, args.workers)
    }
    medians = alternate({name: (lambda c=config: (data_stages_seconds(c), "")) for name, config in variants.items()},
                        args.repeats)  # fmt: skip
    (base_name, base), (other_name, other) = medians.items()
    table = "| Beam workers | data stages, median s |\n|---|---|\n" + "\n".join(
        f"| {name} | {seconds:.1f} |" for name, seconds in medians.items()
    )
    header = (
        f"# Beam workers: ExampleGen ... Transform on {args.dataset} ({args.data_dir}), {os.cpu_count()} CPUs\n\n"
        f"median of {args.repeats}, alternating; {other_name} / {base_name} = {other / base:.2f}x"
    )
    print(save_results("beam-workers", header, table, {"medians": medians, "repeats": args.repeats}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
