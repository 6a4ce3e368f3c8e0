"""AnomalyGate reads real TFDV anomalies (from the curated schema) and stops the run."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from components.anomaly_gate import SCHEMA_DIFF_FILE, DataAnomaliesError, check_anomalies
from pipeline import datasets


def anomalies_artifact(tmp_path, frames: dict[str, pd.DataFrame]):
    """An ExampleAnomalies artifact laid out as ExampleValidator writes it."""
    schema = tfdv.load_schema_text(datasets.get_dataset("mnist").schema_path)
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / "anomalies")
    artifact.split_names = artifact_utils.encode_split_names(list(frames))
    for split, frame in frames.items():
        statistics = tfdv.generate_statistics_from_dataframe(frame)
        anomalies = tfdv.validate_statistics(statistics, schema)
        split_dir = artifact_utils.get_split_uri([artifact], split)
        os.makedirs(split_dir)
        with open(os.path.join(split_dir, SCHEMA_DIFF_FILE), "wb") as handle:
            handle.write(anomalies.SerializeToString())
    return artifact


def frame(labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": [b"\x89PNG fake"] * len(labels),
            "label": labels,
            "class_name": [b"0"] * len(labels),  # a valid name: only `label` is under test
            "example_id": [f"id-{i}".encode() for i in range(len(labels))],
        }
    )


def test_clean_data_passes(tmp_path):
    check_anomalies(anomalies_artifact(tmp_path, {"train": frame([0, 3, 9]), "test": frame([1])}))


def test_out_of_range_label_stops_with_split_and_feature_named(tmp_path):
    artifact = anomalies_artifact(tmp_path, {"train": frame([0, 3, 9]), "test": frame([1, 42])})
    with pytest.raises(DataAnomaliesError) as caught:
        check_anomalies(artifact)
    message = str(caught.value)
    assert "\n" not in message
    assert "split 'test', feature 'label'" in message


def test_missing_feature_is_reported(tmp_path):
    artifact = anomalies_artifact(tmp_path, {"train": frame([1, 2]).drop(columns=["example_id"])})
    with pytest.raises(DataAnomaliesError, match="example_id"):
        check_anomalies(artifact)
