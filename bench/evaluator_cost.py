"""What the Evaluator's richer metrics and prediction-outcome slices cost on a full test split.

Runs TFMA (the Evaluator's own entry point, `tfma.run_model_analysis`, with the
pipeline's Beam settings) over the test split of a finished pipeline run, with

* `minimal`: accuracy and example count, sliced overall / by label / by class
  name (what the pipeline evaluated before issue 5), and
* `full`: the pipeline's EvalConfig (top-2 accuracy, confusion-matrix plot,
  per-class precision / recall / calibration, prediction-outcome slices) and
  its custom extractors,

alternating, `--repeats` times each, and prints the median wall seconds and
their ratio. Point it at an output dir whose Trainer and ExampleGen ran, e.g.
the one `bench/pipeline_vs_keras.py` leaves behind:

    uv run python bench/evaluator_cost.py --output-dir bench/results/work/run-<stamp>/pipeline_output
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from components import tfx_bsl_compat  # noqa: E402  (before TFMA/TFDV imports)

tfx_bsl_compat.install()

import tensorflow_model_analysis as tfma  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from tensorflow_model_analysis.proto import config_pb2  # noqa: E402  (tfma re-exports its protos only once TFX is imported)

from bench.alternation import alternate  # noqa: E402
from components import prediction_outcome  # noqa: E402
from pipeline import configs  # noqa: E402
from pipeline.inspect import evaluator_runs  # noqa: E402
from pipeline.configs import IN_PROCESS_BEAM_ARGS  # noqa: E402
from pipeline.eval_config import make_eval_config  # noqa: E402
from tfx.utils import path_utils  # noqa: E402
from trainer_module import features  # noqa: E402


def minimal_config(full: config_pb2.EvalConfig) -> config_pb2.EvalConfig:
    """The full config cut back to accuracy + example count on the per-class slices."""
    config = type(full)()
    config.CopyFrom(full)
    del config.slicing_specs[:]
    config.slicing_specs.extend(
        spec for spec in full.slicing_specs
        if list(spec.feature_keys) in ([], [features.LABEL_KEY], [features.CLASS_NAME_KEY])
    )
    del config.metrics_specs[1:]
    kept = [m for m in full.metrics_specs[0].metrics if m.class_name in ("SparseCategoricalAccuracy", "ExampleCount")]
    del config.metrics_specs[0].metrics[:]
    config.metrics_specs[0].metrics.extend(kept)
    return config


def evaluate_once(model_dir: str, data_files: str, config: tfma.EvalConfig, with_outcome: bool) -> float:
    shared_model = tfma.default_eval_shared_model(eval_saved_model_path=model_dir, eval_config=config)
    extractors = prediction_outcome.custom_extractors(shared_model, config, None) if with_outcome else None
    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        tfma.run_model_analysis(
            eval_shared_model=shared_model,
            eval_config=config,
            data_location=data_files,
            output_path=output,
            extractors=extractors,
            pipeline_options=PipelineOptions(list(IN_PROCESS_BEAM_ARGS)),
        )
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, help="a finished pipeline run's --output-dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    run = evaluator_runs.latest_evaluator_run(os.path.join(args.output_dir, configs.METADATA_FILE))
    model_dir = path_utils.serving_model_dir(run.model_uri)
    data_files = os.path.join(run.test_split_uri, "*")
    full = make_eval_config(0.0, None, num_classes=configs.dataset_of_pipeline(run.pipeline_name).num_classes)
    variants = {"minimal": (minimal_config(full), False), "full": (full, True)}
    print(f"model {model_dir}\ntest split {data_files}", flush=True)

    alternate(
        {
            name: lambda config=config, with_outcome=with_outcome: (
                evaluate_once(model_dir, data_files, config, with_outcome), ""
            )
            for name, (config, with_outcome) in variants.items()
        },
        args.repeats,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
