"""`AnomalyGate`: stops the pipeline when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but never fails, so without a gate a
run would happily transform and train on data that broke the curated schema.
The gate reads each split's anomalies and raises one readable line naming the
split, the feature and the problem; Transform runs downstream of it.

The curated schemas' `image_domain` constraints (every value a supported
image, at most N bytes) are checked against TFDV's image statistics, which
StatisticsGen computes only with semantic-domain stats on
(`STATISTICS_OPTIONS`). TFDV's ImageStatsGenerator also stays silent when
fewer than 80 % of a feature's values are images, and ExampleValidator then
only logs a warning; the gate treats that silence as what it means, a split
whose image feature is mostly not images.

(No `from __future__ import annotations` here: the TFX component decorator
needs real annotation objects, not strings.)
"""


import os

import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

SCHEMA_DIFF_FILE = "SchemaDiff.pb"
# What StatisticsGen computes (given the curated schema too): semantic-domain
# stats add TFDV's ImageStatsGenerator.
STATISTICS_OPTIONS = tfdv.StatsOptions(enable_semantic_domain_stats=True)
IMAGE_FORMAT_HISTOGRAM = "image_format_histogram"  # the custom stat ImageStatsGenerator writes
# ImageStatsGenerator's defaults: it writes image statistics only for a feature
# with at least this many values, of which at least 80 % are images.
MIN_VALUES_FOR_IMAGE_STATISTICS = 100


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


def _lacks_image_statistics(split_statistics: tfdv.DatasetListView, feature: str) -> bool:
    """True if TFDV saw enough values of `feature` to judge them, and found too few images."""
    view = split_statistics.get_default_slice_or_die().get_feature(tfdv.FeaturePath([feature]))
    if view is None:
        return False  # a missing feature is ExampleValidator's anomaly already
    proto = view.proto()
    kind = proto.WhichOneof("stats")
    values = getattr(proto, kind).common_stats.tot_num_values if kind else 0
    has_histogram = any(stat.name == IMAGE_FORMAT_HISTOGRAM for stat in proto.custom_stats)
    return values >= MIN_VALUES_FOR_IMAGE_STATISTICS and not has_histogram


def describe_missing_image_statistics(
    statistics_artifact: tfx.types.standard_artifacts.ExampleStatistics, schema: schema_pb2.Schema
) -> list[str]:
    """One line per split whose `image_domain` feature got no image statistics (mostly not images)."""
    image_features = [feature.name for feature in schema.feature if feature.HasField("image_domain")]
    problems = []
    for split in artifact_utils.decode_split_names(statistics_artifact.split_names):
        split_statistics = stats_artifact_utils.load_statistics(statistics_artifact, split)
        problems += [
            f"split '{split}', feature '{feature}': fewer than 80% of its values are PNG/JPEG/GIF/BMP images "
            "(TFDV found too few to compute image statistics)"
            for feature in image_features
            if _lacks_image_statistics(split_statistics, feature)
        ]
    return problems


def read_schema(schema_artifact: tfx.types.standard_artifacts.Schema) -> schema_pb2.Schema:
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_artifact.uri))


def check_anomalies(
    anomalies_artifact: tfx.types.standard_artifacts.ExampleAnomalies,
    statistics_artifact: tfx.types.standard_artifacts.ExampleStatistics,
    schema: schema_pb2.Schema,
) -> None:
    """Raises DataAnomaliesError (one line: the first problem and how many more)."""
    problems = describe_anomalies(anomalies_artifact) + describe_missing_image_statistics(statistics_artifact, schema)
    if problems:
        raise DataAnomaliesError(
            f"data does not match the schema: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )


@tfx.dsl.components.component
def AnomalyGate(  # pylint: disable=invalid-name  (TFX component naming)
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
    """Fails the pipeline if ExampleValidator reported any anomaly, or an image feature holds no images."""
    check_anomalies(anomalies, statistics, read_schema(schema))
