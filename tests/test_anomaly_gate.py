"""AnomalyGate reads real TFDV statistics and anomalies (from the curated schema) and stops the run."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from PIL import Image
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from components.anomaly_gate import (
    MIN_VALUES_FOR_IMAGE_STATISTICS,
    SCHEMA_DIFF_FILE,
    STATISTICS_OPTIONS,
    DataAnomaliesError,
    check_anomalies,
)
from pipeline import datasets

SCHEMA = tfdv.load_schema_text(datasets.get_dataset("mnist").schema_path)


def split_artifact(artifact, root, splits):
    """Lays an artifact out as TFX does: one `Split-<name>` folder per split."""
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split in splits:
        os.makedirs(artifact_utils.get_split_uri([artifact], split))
    return artifact


def write_split_file(artifact, split: str, name: str, payload: bytes) -> None:
    with open(os.path.join(artifact_utils.get_split_uri([artifact], split), name), "wb") as handle:
        handle.write(payload)


def gate_inputs(tmp_path, frames: dict[str, pd.DataFrame]):
    """ExampleStatistics and ExampleAnomalies as StatisticsGen (with the pipeline's options) and
    ExampleValidator write them."""
    statistics = split_artifact(standard_artifacts.ExampleStatistics(), tmp_path / "statistics", frames)
    anomalies = split_artifact(standard_artifacts.ExampleAnomalies(), tmp_path / "anomalies", frames)
    options = tfdv.StatsOptions.from_json(STATISTICS_OPTIONS.to_json())
    options.schema = SCHEMA  # as StatisticsGen does with its schema input
    for split, frame in frames.items():
        split_statistics = tfdv.generate_statistics_from_dataframe(frame, options)
        write_split_file(
            statistics, split, stats_artifact_utils.BINARY_PB_BASENAME, split_statistics.SerializeToString()
        )
        write_split_file(
            anomalies, split, SCHEMA_DIFF_FILE, tfdv.validate_statistics(split_statistics, SCHEMA).SerializeToString()
        )
    return anomalies, statistics


def check(tmp_path, frames: dict[str, pd.DataFrame]) -> None:
    anomalies, statistics = gate_inputs(tmp_path, frames)
    check_anomalies(anomalies, statistics, SCHEMA)


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def frame(labels: list[int], images: list[bytes] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": images if images is not None else [png(i) for i in range(len(labels))],
            "label": labels,
            "class_name": [b"0"] * len(labels),  # a valid name: only `label` and `image` are under test
            "example_id": [f"id-{i}".encode() for i in range(len(labels))],
        }
    )


def test_clean_data_passes(tmp_path):
    check(tmp_path, {"train": frame([0, 3, 9]), "test": frame([1])})


def test_out_of_range_label_stops_with_split_and_feature_named(tmp_path):
    with pytest.raises(DataAnomaliesError) as caught:
        check(tmp_path, {"train": frame([0, 3, 9]), "test": frame([1, 42])})
    message = str(caught.value)
    assert "\n" not in message
    assert "split 'test', feature 'label'" in message


def test_missing_feature_is_reported(tmp_path):
    with pytest.raises(DataAnomaliesError, match="example_id"):
        check(tmp_path, {"train": frame([1, 2]).drop(columns=["example_id"])})


ENOUGH = MIN_VALUES_FOR_IMAGE_STATISTICS  # fewer values and TFDV computes no image statistics


def labels(count: int) -> list[int]:
    return [index % 10 for index in range(count)]


def test_clean_data_with_image_statistics_passes(tmp_path):
    check(tmp_path, {"train": frame(labels(ENOUGH)), "test": frame(labels(ENOUGH))})


def test_a_split_of_non_image_bytes_is_stopped(tmp_path):
    """No image statistics at all (TFDV computes none when under 80% are images): stopped by the gate."""
    junk = [f"not an image {index}".encode() for index in range(ENOUGH)]
    with pytest.raises(DataAnomaliesError) as caught:
        check(tmp_path, {"train": frame(labels(ENOUGH)), "eval": frame(labels(ENOUGH), images=junk)})
    assert "split 'eval', feature 'image': fewer than 80% of its values are PNG/JPEG" in str(caught.value)


def test_a_few_non_images_among_images_break_the_schemas_image_domain(tmp_path):
    """The curated schema's minimum_supported_image_fraction 1.0, enforced by ExampleValidator itself."""
    images = [png(index) for index in range(ENOUGH - 5)] + [b"\x00" * 40] * 5
    with pytest.raises(DataAnomaliesError) as caught:
        check(tmp_path, {"train": frame(labels(ENOUGH), images=images)})
    assert "split 'train', feature 'image': Fraction of values containing TensorFlow supported images: 0.95" in str(
        caught.value
    )


def test_an_oversized_image_breaks_the_schemas_byte_limit(tmp_path):
    noisy = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)  # ~40 KB as PNG: over 8 KiB
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG")
    images = [png(index) for index in range(ENOUGH - 1)] + [buffer.getvalue()]
    with pytest.raises(DataAnomaliesError, match="split 'train', feature 'image': The largest image has bytes"):
        check(tmp_path, {"train": frame(labels(ENOUGH), images=images)})
