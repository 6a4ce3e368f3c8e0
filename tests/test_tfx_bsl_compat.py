"""The tfx-bsl shim lets TFDV 1.16 import, and refuses SQL slicing clearly."""

import pytest

from components import tfx_bsl_compat


def test_tfdv_imports_with_the_shim():
    tfx_bsl_compat.install()
    import tensorflow_data_validation as tfdv  # noqa: F401  (the import is the test)

    from tfx_bsl.arrow import sql_util

    assert sql_util.RecordBatchSQLSliceQuery is tfx_bsl_compat.RecordBatchSQLSliceQuery


def test_install_is_idempotent():
    tfx_bsl_compat.install()
    tfx_bsl_compat.install()


def test_sql_slicing_raises_a_clear_error_instead_of_silently_empty_slices():
    tfx_bsl_compat.install()
    import pyarrow as pa
    from tensorflow_data_validation.utils import slicing_util

    slicer = slicing_util.GenerateSlicesSqlDoFn(["SELECT STRUCT(label) FROM example.label"])
    slicer.setup()
    batch = pa.RecordBatch.from_arrays([pa.array([[1], [2]])], ["label"])
    with pytest.raises(tfx_bsl_compat.SqlSlicingUnsupportedError, match="SQL-based slicing"):
        list(slicer.process(batch))
