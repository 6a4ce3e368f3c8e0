"""Serving speed through TF Serving's session loader, and what the serving gate costs a run.

Point it at a finished run's output dir (e.g. the default `visionpipe run`):

    uv run python bench/serving_speed.py --output-dir visionpipe_output

It measures, all in this one invocation:

1. **The pushed model**, as TF Serving would run it: the probe process
   (components/serving_check/probe.py) loads it through the session loader,
   replays its warm-up file (every signature at batch 1, 32 and 256, real
   test-split examples) and then times each request `--rounds` more times:
   p50/p99 latency and images/s at p50, per signature and batch size.
2. **The image signature's PNG round trip**: the run's model architecture,
   exported twice on the run's own transform graph, once as shipped (a PNG of
   the model's size goes to the transform graph untouched) and once with that
   pass-through disabled (every image decoded, resized, re-encoded as PNG and
   decoded again, as before), timed alternately `--repeats` times each.
   Weights are freshly initialized: speed does not depend on their values.
3. **The gate in the pipeline**: the ServingGate's wall seconds from the run's
   run_summary.json, beside the whole run's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from unittest import mock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from components import tfx_bsl_compat  # noqa: E402  (before TFX/TFT imports)

tfx_bsl_compat.install()

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from bench.results_io import save_results  # noqa: E402
from bench.run_artifacts import newest  # noqa: E402
from components.serving_check import checks, probe, serving_requests  # noqa: E402
from pipeline import configs, datasets  # noqa: E402
from pipeline.inspect import evaluator_runs  # noqa: E402
from pipeline.cli.predict import resolve_model_dir  # noqa: E402
from trainer_module import models, serving  # noqa: E402
from trainer_module.signatures import EXAMPLE_SIGNATURE, IMAGE_SIGNATURE  # noqa: E402

PASS_THROUGH, RE_ENCODE = "PNG passed through", "PNG decoded, resized, re-encoded"


def probe_latency(model_dir: str, rounds: int) -> dict:
    """The probe process on `model_dir`: its report (load time, warm-up, latency rows)."""
    with tempfile.TemporaryDirectory() as work_dir:
        report, _ = checks.run_probe(model_dir, work_dir, None, rounds, checks.DEFAULT_TIMEOUT_SECONDS)
    if report.get("failures"):
        raise SystemExit(f"bench/serving_speed.py: {model_dir}: {report['failures'][0]}")
    return report


def with_warmup(model_dir: str, logs: list) -> str:
    path = os.path.join(model_dir, probe.WARMUP_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    serving_requests.write_prediction_logs(path, logs)
    return model_dir


def re_encode_every_image(functions: serving.ServingFunctions, images: tf.Tensor) -> tf.Tensor:
    """The image signature before the pass-through: decode, resize, re-encode every image."""
    return tf.map_fn(functions._to_model_png, images, fn_output_signature=tf.string)  # noqa: SLF001


def round_trip_exports(summary: dict, output_dir: str, examples: list, work_dir: str) -> dict[str, str]:
    """The run's architecture exported with and without the PNG pass-through, each with a warm-up file
    of serving_default and serving_images requests at batch 1, 32 and 256."""
    spec = datasets.get_dataset(summary["dataset"])
    transform_dir = newest(os.path.join(output_dir, "tfx", configs.pipeline_name_for(summary["dataset"]),
                                        "Transform", "transform_graph", "*"))
    model = models.build_model(summary["model"], spec.image_shape, spec.num_classes)
    logs = [
        log
        for batch in serving_requests.BATCH_SIZES
        for log in serving_requests.same_examples_through_every_signature("bench", serving_requests.first(examples, batch))[:2]
    ]
    exports = {}
    for variant in (PASS_THROUGH, RE_ENCODE):
        export_dir = os.path.join(work_dir, variant.split()[1])
        patch = mock.patch.object(serving.ServingFunctions, "_as_model_pngs", re_encode_every_image) if (
            variant == RE_ENCODE
        ) else contextlib.nullcontext()
        with patch:
            serving.export_serving_model(model, tft.TFTransformOutput(transform_dir), spec.class_names, spec.image_shape, export_dir)
        exports[variant] = with_warmup(export_dir, logs)
    return exports


def rows_by_key(report: dict) -> dict[tuple[str, int], dict]:
    return {(row["signature"], row["batch_size"]): row for row in report["latency"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=configs.DEFAULT_OUTPUT_DIR, help="a finished run's --output-dir")
    parser.add_argument("--rounds", type=int, default=50, help="timed repeats of each request per probe run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating probe runs per round-trip variant")
    args = parser.parse_args()

    with open(os.path.join(args.output_dir, configs.SUMMARY_FILE), encoding="utf-8") as handle:
        summary = json.load(handle)
    pushed = resolve_model_dir(args.output_dir)
    run = evaluator_runs.latest_evaluator_run(os.path.join(args.output_dir, configs.METADATA_FILE))
    examples = serving_requests.read_test_examples(os.path.join(run.test_split_uri, "*"))
    print(f"pushed model {pushed} ({summary['dataset']} / {summary['model']}); {len(examples):,} test examples", flush=True)

    pushed_report = probe_latency(pushed, args.rounds)
    print(f"1. pushed model: session load {pushed_report['load_seconds']:.2f} s, "
          f"warm-up {pushed_report['warmup']['records']} requests in {pushed_report['warmup']['seconds']:.2f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="visionpipe-serving-bench-") as work_dir:
        exports = round_trip_exports(summary, args.output_dir, examples, work_dir)
        p50s: dict[tuple[str, str, int], list[float]] = {}
        for repeat in range(args.repeats):
            for variant, export_dir in exports.items():
                for key, row in rows_by_key(probe_latency(export_dir, args.rounds)).items():
                    p50s.setdefault((variant, *key), []).append(row["p50_ms"])
                print(f"2. [{repeat + 1}/{args.repeats}] {variant} measured", flush=True)
        shutil.rmtree(work_dir, ignore_errors=True)

    pushed_rows = [
        f"| {row['signature']} | {row['batch_size']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['images_per_second']:,.0f} |"
        for row in pushed_report["latency"]
    ]
    medians = {key: statistics.median(values) for key, values in p50s.items()}
    trip_rows = []
    for batch in serving_requests.BATCH_SIZES:
        examples_ms = statistics.median([medians[(variant, EXAMPLE_SIGNATURE, batch)] for variant in exports])
        through = medians[(PASS_THROUGH, IMAGE_SIGNATURE, batch)]
        reencoded = medians[(RE_ENCODE, IMAGE_SIGNATURE, batch)]
        trip_rows.append(
            f"| {batch} | {examples_ms:.2f} | {through:.2f} | {reencoded:.2f} | {reencoded / through:.2f}x |"
        )
    components = summary.get("components", {})
    gate = components.get("ServingGate")
    gate_line = (
        f"ServingGate {gate:.1f} s of the run's {summary['total_seconds']:.1f} s "
        f"({100 * gate / summary['total_seconds']:.1f} %)" if gate is not None else "the run has no ServingGate timing"
    )
    table = "\n".join([
        f"Pushed model, session loader, {args.rounds} timed requests each after the warm-up "
        f"(load {pushed_report['load_seconds']:.2f} s):",
        "",
        "| signature | batch | p50 ms | p99 ms | images/s at p50 |",
        "|---|---:|---:|---:|---:|",
        *pushed_rows,
        "",
        f"serving_images PNG round trip ({summary['model']}, median p50 ms of {args.repeats} alternating runs "
        f"x {args.rounds} requests):",
        "",
        f"| batch | serving_default | serving_images, {PASS_THROUGH} | serving_images, {RE_ENCODE} | round trip cost |",
        "|---:|---:|---:|---:|---:|",
        *trip_rows,
        "",
        gate_line + ".",
    ])
    header = (f"# Serving speed: {summary['dataset']} / {summary['model']} (`bench/serving_speed.py --output-dir "
              f"{args.output_dir} --rounds {args.rounds} --repeats {args.repeats}`)")
    path = save_results("serving", header, table, {"pushed": pushed_report, "round_trip_p50_ms": {
        " / ".join(map(str, key)): values for key, values in p50s.items()}, "components": components,
        "total_seconds": summary.get("total_seconds")})
    print("\n" + table + f"\n\n(saved to {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
