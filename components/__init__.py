"""visionpipe's custom TFX components and the readers they share.

The tfx-bsl shim is installed here, before any module of this package can
import TFDV (see `components/tfx_bsl_compat.py` for why it still earns its place).
"""

from components import tfx_bsl_compat as _tfx_bsl_compat

_tfx_bsl_compat.install()
