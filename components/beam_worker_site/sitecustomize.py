"""Beam worker processes get visionpipe's tfx-bsl shim before they unpickle any TFDV function.

A Beam SDK worker started as its own process (the DirectRunner's
multi_processing mode; Dataflow's and Flink's SDK containers) imports only
what the functions it unpickles need. StatisticsGen's functions import
TensorFlow Data Validation, which fails without the shim
(`components/tfx_bsl_compat.py`). Python imports `sitecustomize` at start-up
from the first folder on its path that has one; putting this folder on a
worker's PYTHONPATH (`pipeline.local_runner.build_local_pipeline` does, for
`--beam-workers`; a Beam SDK image for Dataflow or Flink would, kubeflow/README.md)
installs the shim first. Processes without that
PYTHONPATH, such as the serving probe (`python -I`), never see it.
"""

from components import tfx_bsl_compat

tfx_bsl_compat.install()
