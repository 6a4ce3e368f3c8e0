"""visionpipe pipeline package: pipeline definition, runners and the CLI.

The tfx-bsl compatibility shim is installed here, before anything can import
TFDV (see `pipeline/tfx_bsl_compat.py` for why).
"""

from pipeline import tfx_bsl_compat as _tfx_bsl_compat

_tfx_bsl_compat.install()
