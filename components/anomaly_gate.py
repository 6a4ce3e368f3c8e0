"""`AnomalyGate`: stops the pipeline when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but never fails, so without a gate a
run would happily transform and train on data that broke the curated schema.
The gate reads each split's anomalies and raises one readable line naming the
split, the feature and the problem; Transform runs downstream of it.

(No `from __future__ import annotations` here: the TFX component decorator
needs real annotation objects, not strings.)
"""


import os

from tensorflow_data_validation.utils import anomalies_util
from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMA_DIFF_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
    """The data does not match the curated schema."""


def describe_anomalies(anomalies_artifact: tfx.types.standard_artifacts.ExampleAnomalies) -> list[str]:
    """One human-readable line per anomaly, across all validated splits."""
    problems = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(
            artifact_utils.get_split_uri([anomalies_artifact], split), SCHEMA_DIFF_FILE
        )
        if not os.path.exists(path):
            continue  # split excluded from validation
        anomalies = anomalies_util.load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            detail = "; ".join(reason.description for reason in info.reason) or info.description
            problems.append(f"split '{split}', feature '{feature}': {detail}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            detail = "; ".join(reason.description for reason in info.reason) or info.description
            problems.append(f"split '{split}': {detail}")
    return problems


def check_anomalies(anomalies_artifact: tfx.types.standard_artifacts.ExampleAnomalies) -> None:
    """Raises DataAnomaliesError (one line: the first problem and how many more)."""
    problems = describe_anomalies(anomalies_artifact)
    if problems:
        raise DataAnomaliesError(
            f"data does not match the schema: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )


@tfx.dsl.components.component
def AnomalyGate(  # pylint: disable=invalid-name  (TFX component naming)
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fails the pipeline if ExampleValidator reported any anomaly."""
    check_anomalies(anomalies)
