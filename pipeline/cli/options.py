"""What every `visionpipe` command declares the same way: its sub-parser, the shared options, the argparse types.

Shared by the built-in commands (`pipeline.cli.main`) and by the command
groups that other packages plug in through the `visionpipe.commands` entry
points (`kubeflow.commands`): a plugin imports this module, never the other
way round, so `pipeline/` does not depend on any of them.

Nothing here imports TensorFlow or TFX: the whole parser is built, and every
usage error found, before a command's handler imports what it needs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from pipeline import configs, datasets, eval_config
from pipeline.plumbing import run_logging

Handler = Callable[[argparse.Namespace], int]  # a command's body: parsed arguments -> exit code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, or a required option).

    "(default: None)" after an option that is simply optional tells the
    reader nothing, and after a required one it is wrong.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: Handler,
    *,
    help: str,  # noqa: A002  (argparse's own keyword)
    description: str | None = None,
    console_is_output: bool = True,
) -> argparse.ArgumentParser:
    """Adds the sub-command `name`, run by `handler(args)`.

    `console_is_output`: the command prints a table, JSON or one line per
    file, so the native log lines TensorFlow writes straight to file
    descriptor 2 on import are sent to /dev/null while it runs (visionpipe's
    own `visionpipe: error:` line still reaches the console). `run` and
    `fetch` say False: `run` routes fd 2 into its run log itself.

    The sub-parser is stored with the handler, so that `main` can report a
    usage error the handler finds (a `configs.ConfigError`) with the usage
    line of this command rather than of `visionpipe` as a whole.
    """
    parser = subparsers.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)
    parser.set_defaults(func=_console_quiet(handler) if console_is_output else handler, command_parser=parser)
    return parser


def _console_quiet(handler: Handler) -> Handler:
    def run_quietly(args: argparse.Namespace) -> int:
        with run_logging.native_stderr_to(os.devnull):
            return handler(args)

    return run_quietly


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json`: the command's result as one JSON document on stdout, for scripts (nothing else goes there)."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def bounded_int(maximum: int) -> Callable[[str], int]:
    """An argparse type for an integer from 1 to `maximum`.

    The bound keeps an absurd value (a batch of 10^20 images) a usage error
    at once, instead of a failure minutes later inside the Trainer.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {maximum:,}, got {text}")
        return value

    return parse


positive_int = bounded_int(10**9)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """An argparse type for a number above 0 (seconds to wait, for instance)."""
    value = _number(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type for a number from 0 to 1 (an accuracy)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def epochs_default_text(parser: argparse.ArgumentParser) -> str:
    """What --epochs defaults to in this command's help: a budget for `run`, a number elsewhere."""
    if parser.get_default("profile") is not None:
        return "as many as fit the time budget, see --profile"
    return str(configs.DEFAULT_EPOCHS)


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """The run's time budget, which picks the epochs: for `run` (call before add_training_options)."""
    profiles = "; ".join(
        f"{profile.name}: {profile.budget_minutes:g} min, {profile.purpose}" for profile in configs.PROFILES.values()
    )
    parser.add_argument(
        "--profile",
        choices=tuple(configs.PROFILES),
        default=configs.DEFAULT_PROFILE,
        help=f"a named time budget for the whole run ({profiles}); the Trainer measures its step time "
        "and trains the epochs that fit",
    )
    parser.add_argument(
        "--budget-minutes",
        type=positive_float,
        default=None,
        metavar="M",
        help="a time budget of M minutes for the whole run instead of the profile's; --epochs overrides both",
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """What to train and how: shared by `run` and `kubeflow compile`, which build the same pipeline."""
    from trainer_module.model_names import MODEL_NAMES
    from trainer_module.normalization_names import NORMALIZATIONS
    from trainer_module.precision_names import PRECISIONS

    parser.add_argument(
        "--dataset", choices=sorted(datasets.DATASETS), default=datasets.DEFAULT_DATASET, help="which dataset the files hold"
    )
    parser.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default=argparse.SUPPRESS,
        help="network from the model zoo (default: "
        + ", ".join(f"{spec.default_model} for {name}" for name, spec in datasets.DATASETS.items())
        + ")",
    )
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=NORMALIZATIONS[0],
        help="computed: per-channel mean/std of the training split (tf.Transform full pass); "
        "imagenet: the fixed ImageNet RGB mean/std (colour datasets)",
    )
    parser.add_argument(
        "--epochs",
        type=bounded_int(configs.MAX_EPOCHS),
        default=None,
        help="passes over the train split; the learning rate anneals to 0 at the end of the last one "
        f"(default: {epochs_default_text(parser)})",
    )
    parser.add_argument(
        "--batch-size", type=bounded_int(configs.MAX_BATCH_SIZE), default=configs.DEFAULT_BATCH_SIZE, help="training batch size per device (several GPUs: a step sees this times the GPUs)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=PRECISIONS[0],
        help="auto: mixed precision where the hardware has it (mixed_float16 on a GPU, mixed_bfloat16 "
        "on a CPU with AVX512-BF16 or AMX), else float32; float32: float32 everywhere. The exported "
        "model computes in float32 either way",
    )
    parser.add_argument(
        "--accuracy-threshold",
        type=fraction,
        default=configs.DEFAULT_ACCURACY_THRESHOLD,
        help=f"minimum test {eval_config.ACCURACY_METRIC} for the model to be blessed and pushed",
    )
    parser.add_argument(
        "--serving-check",
        choices=configs.SERVING_CHECKS,
        default=configs.SERVING_GATE,
        help="how the model is proven servable before it is pushed: serving-gate loads it the way "
        "TF Serving does in a separate process and sends it real requests; infra-validator is TFX's "
        "InfraValidator with a real TF Serving in the local Docker engine (not for Kubeflow)",
    )


def training_config(args: argparse.Namespace, *, data_dir: str, output_dir: str) -> configs.RunConfig:
    """The RunConfig of the shared training options, with the given locations.

    Raises `configs.ConfigError` for options that cannot work together, which
    `main` reports as a usage error; call it before importing TFX, so that
    such a mistake costs a second, not the 17 s import.
    """
    return configs.RunConfig(
        dataset=args.dataset,
        data_dir=data_dir,
        output_dir=output_dir,
        model=getattr(args, "model", None),
        normalization=args.normalization,
        epochs=args.epochs,
        profile=getattr(args, "profile", configs.DEFAULT_PROFILE),
        budget_minutes=getattr(args, "budget_minutes", None),
        batch_size=args.batch_size,
        precision=args.precision,
        accuracy_threshold=args.accuracy_threshold,
        serving_check=args.serving_check,
    )
