"""visionpipe trainer_module package."""

from pipeline import tfx_bsl_compat as _tfx_bsl_compat

_tfx_bsl_compat.install()
