"""What image statistics cost StatisticsGen on a full dataset.

StatisticsGen runs with semantic-domain statistics and the curated schema
(`components.anomaly_gate.STATISTICS_OPTIONS`), so that ExampleValidator can
enforce the schema's `image_domain`. This measures the price: TFDV's own
`generate_statistics_from_tfrecord` (the same `tfdv.GenerateStatistics`
transform StatisticsGen applies, with the pipeline's Beam settings) over every
split of a finished run's ExampleGen output, with

* `plain`: default StatsOptions (what StatisticsGen computed before), and
* `image`: the pipeline's options plus the schema (what it computes now),

alternating, `--repeats` times each; prints the median wall seconds, their
ratio, and whether each variant produced the image format histogram. Point it
at an output dir whose ExampleGen ran, e.g. the one `bench/pipeline_vs_keras.py`
leaves behind:

    uv run python bench/statistics_cost.py --output-dir bench/results/work/run-<stamp>/pipeline_output
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from components import tfx_bsl_compat  # noqa: E402  (before TFDV imports)

tfx_bsl_compat.install()

import tensorflow_data_validation as tfdv  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from bench.alternation import alternate  # noqa: E402
from components.anomaly_gate import IMAGE_FORMAT_HISTOGRAM, STATISTICS_OPTIONS  # noqa: E402
from pipeline import configs, datasets  # noqa: E402
from pipeline.inspect import evaluator_runs  # noqa: E402
from pipeline.configs import IN_PROCESS_BEAM_ARGS  # noqa: E402


def options_variants(schema_path: str) -> dict[str, tfdv.StatsOptions]:
    image = tfdv.StatsOptions.from_json(STATISTICS_OPTIONS.to_json())
    image.schema = tfdv.load_schema_text(schema_path)  # as StatisticsGen does with its schema input
    return {"plain": tfdv.StatsOptions(), "image": image}


def statistics_once(data_files: str, options: tfdv.StatsOptions, output: str) -> tuple[float, bool]:
    """Seconds for one statistics pass, and whether the image feature got its format histogram."""
    started = time.perf_counter()
    result = tfdv.generate_statistics_from_tfrecord(
        data_location=data_files,
        output_path=output,
        stats_options=options,
        pipeline_options=PipelineOptions(list(IN_PROCESS_BEAM_ARGS)),
    )
    seconds = time.perf_counter() - started
    image = next(feature for feature in result.datasets[0].features if list(feature.path.step) == ["image"])
    return seconds, any(stat.name == IMAGE_FORMAT_HISTOGRAM for stat in image.custom_stats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, help="a finished pipeline run's --output-dir")
    parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(datasets.DATASETS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    run = evaluator_runs.latest_evaluator_run(os.path.join(args.output_dir, configs.METADATA_FILE))
    data_files = os.path.join(run.examples_uri, "Split-*", "*")
    count = len(glob.glob(data_files))
    variants = options_variants(datasets.get_dataset(args.dataset).schema_path)
    print(f"examples {data_files} ({count} files)", flush=True)

    scratch = os.path.join(args.output_dir, "bench-statistics.pb")

    def run_once(options: tfdv.StatsOptions) -> tuple[float, str]:
        elapsed, has_histogram = statistics_once(data_files, options, scratch)
        return elapsed, f" (image format histogram: {has_histogram})"

    alternate({name: lambda options=options: run_once(options) for name, options in variants.items()}, args.repeats)
    os.remove(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
