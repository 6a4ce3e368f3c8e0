"""The visionpipe TFX pipeline: ExampleGen -> ... -> Pusher, built from a RunConfig.

Follows the TFX template layout: this module only wires components; runners
(local, Kubeflow) decide where and how it executes.
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2  # PerSliceMetricThreshold is not re-exported
from tfx import v1 as tfx

from components.anomaly_gate import STATISTICS_OPTIONS, AnomalyGate
from components.atomic_pusher import AtomicPusher
from components.cifar_example_gen.component import CifarExampleGen
from components import class_metrics, prediction_outcome
from components.idx_example_gen.component import IdxExampleGen
from components.serving_gate import ServingGate
from pipeline import datasets
from pipeline.configs import INFRA_VALIDATOR, RunConfig
from trainer_module import features
from trainer_module.signatures import CLASSIFY_SIGNATURE, EXAMPLE_SIGNATURE, PROBABILITIES

PREPROCESSING_FN = "trainer_module.preprocessing.preprocessing_fn"
RUN_FN = "trainer_module.run_fn.run_fn"
ACCURACY_METRIC = "SparseCategoricalAccuracy"
TOP_K = 2  # top-2 accuracy: is the true class at least the runner-up?
NUM_CLASSES = 10  # every dataset of pipeline.datasets has ten classes
# Adds the prediction_outcome slice feature inside the Evaluator (by import path,
# so nothing is packaged as a wheel and Kubeflow images import it the same way).
EVALUATOR_MODULE = "components.prediction_outcome"
EVALUATION_SPLIT = "test"
# The stock InfraValidator's model server: the newest TensorFlow Serving release
# (the tensorflow/serving:<tag> image, started in the local Docker engine).
TF_SERVING_TAG = "2.20.0"
INFRA_VALIDATION_EXAMPLES = 256  # test examples InfraValidator turns into requests
INFERENCE_BATCH_SIZE = 256
# Beam runs in-process on the FnApiRunner. Naming it explicitly matters: Beam
# 2.77's DirectRunner first tries the Prism runner, which downloads a binary
# from the internet (failing offline, or silently switching runners online).
# In-process workers: on a 2-core machine, worker processes cost more in
# pickling than they win in parallelism, and in-process keeps the tfx-bsl shim.
DEFAULT_BEAM_ARGS = (
    "--runner=FnApiRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)


# Source format (pipeline.datasets) -> the ExampleGen that reads it.
EXAMPLE_GENS = {datasets.IDX_FORMAT: IdxExampleGen, datasets.CIFAR_FORMAT: CifarExampleGen}


def _accuracy_gate(accuracy_threshold: float, change_threshold: float | None) -> tfma.MetricConfig:
    """SparseCategoricalAccuracy, gated on the overall slice only.

    Above `accuracy_threshold` AND no worse than the latest blessed model by
    more than `change_threshold`; `None` skips the comparison (no baseline).
    Per-class slices are for inspection, not for blessing.
    """
    change = (
        None
        if change_threshold is None
        else tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -change_threshold - 1e-10},
        )
    )
    return tfma.MetricConfig(
        class_name=ACCURACY_METRIC,
        per_slice_thresholds=[
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_threshold}),
                    change_threshold=change,
                ),
            )
        ],
    )


def make_eval_config(
    accuracy_threshold: float, change_threshold: float | None, num_classes: int = NUM_CLASSES
) -> tfma.EvalConfig:
    """What the Evaluator computes on the test split, and what it blesses on.

    Slices: overall, per class (by `label` id and, for people, by `class_name`),
    and by `prediction_outcome` (correct / misclassified; added by
    components.prediction_outcome). Metrics: accuracy (the gate), top-2
    accuracy, example count, the multi-class confusion matrix (a plot), and
    one-vs-rest precision, recall and calibration per class.
    `change_threshold=None` gates on the absolute threshold only, for pipelines
    built without a baseline model (`create_pipeline(compare_with_blessed=False)`).
    """
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EXAMPLE_SIGNATURE,
                label_key=features.LABEL_KEY,
                prediction_key=PROBABILITIES,
                # Fixed batches: TFMA's default adaptive batching starts at 1
                # and makes evaluation several times slower.
                inference_batch_size=INFERENCE_BATCH_SIZE,
            )
        ],
        slicing_specs=[
            tfma.SlicingSpec(),
            tfma.SlicingSpec(feature_keys=[features.LABEL_KEY]),
            # The same per-class slices, keyed by name ("Coat", "cat") for people.
            tfma.SlicingSpec(feature_keys=[features.CLASS_NAME_KEY]),
            tfma.SlicingSpec(feature_keys=[prediction_outcome.PREDICTION_OUTCOME_KEY]),
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    _accuracy_gate(accuracy_threshold, change_threshold),
                    tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config=f'"k": {TOP_K}'),
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                    # One-vs-rest precision, recall, calibration per class (sub
                    # keys "classId:0" .. "classId:N-1"; a class counts as
                    # predicted when it is the arg-max, as for accuracy). One
                    # pass for all classes instead of TFMA's binarize (see module).
                    class_metrics.metric_config(num_classes),
                ]
            ),
        ],
    )


def serving_validator(config: RunConfig, model: Any, examples: Any, evaluation: Any) -> Any:
    """The component whose InfraBlessing lets the Pusher push: ServingGate, or TFX's InfraValidator.

    Both put the checked model, with TF Serving's warm-up file, into their
    InfraBlessing (`has_model`), which the Pusher then pushes. InfraValidator
    starts a real tensorflow_model_server in the local Docker engine and sends
    requests that TFX builds from serialized test examples; its request builder
    cannot make the raw-image requests of `serving_images`, so it checks
    `serving_default` and `classify`. (Its Kubernetes mode is out of reach:
    TFX's Kubeflow V2 compiler refuses InfraValidator, see kubeflow/runner.py.)
    """
    if config.serving_check == INFRA_VALIDATOR:
        return tfx.components.InfraValidator(
            model=model,
            examples=examples,
            serving_spec=tfx.proto.ServingSpec(
                tensorflow_serving=tfx.proto.TensorFlowServing(tags=[TF_SERVING_TAG]),
                model_name=config.pipeline_name,
                local_docker=tfx.proto.LocalDockerConfig(),
            ),
            validation_spec=tfx.proto.ValidationSpec(max_loading_time_seconds=120, num_tries=3),
            request_spec=tfx.proto.RequestSpec(
                tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(
                    signature_names=[EXAMPLE_SIGNATURE, CLASSIFY_SIGNATURE]
                ),
                split_name=EVALUATION_SPLIT,
                num_examples=INFRA_VALIDATION_EXAMPLES,
                make_warmup=True,
            ),
        )
    spec = datasets.get_dataset(config.dataset)
    return ServingGate(
        model=model,
        examples=examples,
        evaluation=evaluation,
        model_name=config.pipeline_name,
        class_names=json.dumps(list(spec.class_names)),
    )


def training_custom_config(config: RunConfig) -> dict[str, Any]:
    """What `trainer_module.run_fn.TrainingConfig.from_custom_config` reads."""
    spec = datasets.get_dataset(config.dataset)
    return {
        "model": config.model,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "image_shape": list(spec.image_shape),
        "class_names": list(spec.class_names),
        # The dataset's augmentation policy, unless the user chose otherwise.
        "hparams": {
            **({"augmentation": spec.augmentation} if spec.augmentation else {}),
            **config.hparam_overrides(),
        },
    }


def create_pipeline(
    config: RunConfig,
    metadata_connection_config: Any | None = None,
    beam_pipeline_args: tuple[str, ...] = DEFAULT_BEAM_ARGS,
    data_stages_only: bool = False,
    *,
    input_base: Any = None,
    schema_root: str = datasets.SCHEMA_ROOT,
    compare_with_blessed: bool = True,
) -> tfx.dsl.Pipeline:
    """Builds the full pipeline for one dataset and set of training options.

    The one pipeline definition behind every runner; the keyword options are
    the few things a runner must decide for its platform (kubeflow/runner.py):

    * `data_stages_only` stops after Transform (ExampleGen ... Transform), for
      benchmarks that measure the data stages at scale without training.
    * `input_base`: where ExampleGen reads, instead of `config.data_dir`; e.g. a
      RuntimeParameter, so a compiled Kubeflow package takes the data location
      as a run parameter.
    * `schema_root`: the folder of curated schemas as the executors will see it
      (a path inside the container image on a cluster).
    * `compare_with_blessed=False` drops the latest-blessed-model Resolver and
      with it the "no worse than the blessed model" gate (Kubeflow Pipelines'
      open-source backend cannot run Resolver nodes); the absolute accuracy
      threshold still gates the push.
    """

    def assemble(components: list[Any]) -> tfx.dsl.Pipeline:
        return tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name,
            pipeline_root=config.pipeline_root,
            components=components,
            enable_cache=not data_stages_only,
            metadata_connection_config=metadata_connection_config,
            beam_pipeline_args=list(beam_pipeline_args),
        )

    spec = datasets.get_dataset(config.dataset)

    example_gen = EXAMPLE_GENS[spec.source_format](
        input_base=config.data_dir if input_base is None else input_base,
        image_shape=spec.image_shape,
        class_names=spec.class_names,
        train_eval_weights=config.train_eval_weights,
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=spec.schema_file(schema_root))
    # With the curated schema, TFDV also computes the byte sizes that the
    # schema's image_domain limits are checked against.
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], stats_options=STATISTICS_OPTIONS
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    anomaly_gate = AnomalyGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            "image_shape": list(spec.image_shape),
            "normalization": config.normalization,
        },
        # Full-pass statistics come from the training split only. Transformed
        # examples are not written: the Trainer applies the transform graph on
        # the fly (a float image is ~10x its PNG; see trainer_module/run_fn.py).
        splits_config=tfx.proto.SplitsConfig(analyze=["train"]),
        materialize=False,
    )
    transform.add_upstream_node(anomaly_gate)
    data_stages = [
        example_gen,
        schema_gen,
        statistics_gen,
        example_validator,
        anomaly_gate,
        transform,
    ]
    if data_stages_only:
        return assemble(data_stages)

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=training_custom_config(config),
    )

    baseline_nodes: list[Any] = []
    baseline_inputs: dict[str, Any] = {}
    if compare_with_blessed:
        model_resolver = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id("latest_blessed_model_resolver")
        baseline_nodes.append(model_resolver)
        baseline_inputs["baseline_model"] = model_resolver.outputs["model"]

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=make_eval_config(
            config.accuracy_threshold,
            config.change_threshold if compare_with_blessed else None,
            num_classes=len(spec.class_names),
        ),
        example_splits=[EVALUATION_SPLIT],
        module_path=EVALUATOR_MODULE,
        **baseline_inputs,
    )

    validator = serving_validator(
        config,
        trainer.outputs["model"],
        example_gen.outputs["examples"],
        evaluator.outputs["evaluation"],
    )
    # No `model=`: the Pusher pushes the validated copy with its warm-up file
    # from the InfraBlessing, and only if both blessings say yes.
    pusher = AtomicPusher(  # the stock Pusher; a version appears only once complete
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=validator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_base
            )
        ),
    )

    return assemble([*data_stages, trainer, *baseline_nodes, evaluator, validator, pusher])

