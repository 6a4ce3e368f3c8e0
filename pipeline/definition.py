"""The visionpipe TFX pipeline: ExampleGen -> ... -> Pusher, built from a RunConfig.

Follows the TFX template layout: this module only wires components; runners
(local, Kubeflow) decide where and how it executes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tfx import v1 as tfx

from components.anomaly_gate import STATISTICS_OPTIONS, AnomalyGate
from components.atomic_pusher import AtomicPusher
from components.cifar_example_gen.component import CifarExampleGen
from components.idx_example_gen.component import IdxExampleGen
from components.parameterized_evaluator import ParameterizedEvaluator
from components.parameterized_trainer import ParameterizedTrainer
from components.serving_gate import ServingGate
from pipeline import configs, datasets, eval_config
from pipeline.configs import INFRA_VALIDATOR, RunConfig
from trainer_module import time_budget
from trainer_module.signatures import CLASSIFY_SIGNATURE, EXAMPLE_SIGNATURE

PREPROCESSING_FN = "trainer_module.preprocessing.preprocessing_fn"
RUN_FN = "trainer_module.run_fn.run_fn"
# The stock InfraValidator's model server: the newest TensorFlow Serving release
# (the tensorflow/serving:<tag> image, started in the local Docker engine).
TF_SERVING_TAG = "2.20.0"
INFRA_VALIDATION_EXAMPLES = 256  # test examples InfraValidator turns into requests


# The RunConfig fields a runner may replace with values known only at run time
# (`create_pipeline(run_parameters=...)`): each reaches one component as an
# execution property of its own, which a TFX RuntimeParameter can stand for.
RUN_PARAMETER_FIELDS = ("data_dir", "epochs", "batch_size", "model", "accuracy_threshold")

# Source format (pipeline.datasets) -> the ExampleGen that reads it.
EXAMPLE_GENS = {datasets.IDX_FORMAT: IdxExampleGen, datasets.CIFAR_FORMAT: CifarExampleGen}


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
                split_name=eval_config.EVALUATION_SPLIT,
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
    """What `trainer_module.run_fn.TrainingConfig.from_custom_config` reads, but for the model, the
    epochs and the batch size: ParameterizedTrainer adds those from its own parameters."""
    spec = datasets.get_dataset(config.dataset)
    custom_config: dict[str, Any] = {
        "image_shape": list(spec.image_shape),
        "class_names": list(spec.class_names),
        # The dataset's augmentation policy and test-time flip, unless the user chose otherwise.
        "hparams": {
            **({"augmentation": spec.augmentation} if spec.augmentation else {}),
            **({"test_time_flip": True} if spec.test_time_flip else {}),
            **config.hparam_overrides(),
        },
        "precision": config.precision,
    }
    budget_minutes = config.time_budget_minutes
    if budget_minutes is not None:  # epochs 0: the Trainer plans them (trainer_module.time_budget)
        custom_config[time_budget.TIME_BUDGET_KEY] = time_budget.TimeBudget(
            seconds=budget_minutes * 60.0,
            reserve_seconds=configs.AFTER_TRAINING_RESERVE_SECONDS,
            max_epochs=configs.PROFILES[config.profile].max_epochs,
        ).to_json()
    return custom_config


def create_pipeline(
    config: RunConfig,
    metadata_connection_config: Any | None = None,
    *,
    beam_pipeline_args: tuple[str, ...],
    data_stages_only: bool = False,
    run_parameters: Mapping[str, Any] | None = None,
    schema_root: str = datasets.SCHEMA_ROOT,
    compare_with_blessed: bool = True,
) -> tfx.dsl.Pipeline:
    """Builds the full pipeline for one dataset and set of training options.

    The one pipeline definition behind every runner; the keyword options are
    the few things a runner must decide for its platform (kubeflow/runner.py):

    * `beam_pipeline_args`: how the Beam-based components run (the runner's
      choice: `configs.IN_PROCESS_BEAM_ARGS` locally).

    * `data_stages_only` stops after Transform (ExampleGen ... Transform), for
      benchmarks that measure the data stages at scale without training.
    * `run_parameters`: values for some of the RUN_PARAMETER_FIELDS of `config`
      that stand in for them, e.g. TFX RuntimeParameters, so that a compiled
      Kubeflow package takes the data location, the epochs, the batch size,
      the model and the accuracy threshold as run parameters.
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

    unknown = sorted(set(run_parameters or {}) - set(RUN_PARAMETER_FIELDS))
    if unknown:
        raise ValueError(f"run_parameters: {unknown} cannot be run parameters; only {RUN_PARAMETER_FIELDS}")
    value = {field: getattr(config, field) for field in RUN_PARAMETER_FIELDS} | dict(run_parameters or {})
    if value["epochs"] is None:
        value["epochs"] = 0  # the Trainer's "as many as fit the time budget"
    spec = datasets.get_dataset(config.dataset)

    example_gen = EXAMPLE_GENS[spec.source_format](
        input_base=value["data_dir"],
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
        # Transform would compute TFDV statistics of the train split again
        # (StatisticsGen has them, and the anomaly gate checked them); nothing
        # reads them, and on the full Fashion-MNIST they cost seconds.
        disable_statistics=True,
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

    trainer = ParameterizedTrainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=training_custom_config(config),
        epochs=value["epochs"],
        batch_size=value["batch_size"],
        model_name=value["model"],
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

    evaluator = ParameterizedEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=eval_config.make_eval_config(
            config.accuracy_threshold,
            config.change_threshold if compare_with_blessed else None,
            num_classes=len(spec.class_names),
        ),
        accuracy_threshold=value["accuracy_threshold"],
        example_splits=[eval_config.EVALUATION_SPLIT],
        module_path=eval_config.EVALUATOR_MODULE,
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

