"""The curated TFDV schemas, one folder per dataset (`<dataset>/schema.pbtxt`).

A package so that the schemas ship as package data in a built wheel and are
found beside this file wherever visionpipe is installed, not only in a checkout.
"""

import os

SCHEMA_ROOT = os.path.dirname(os.path.abspath(__file__))
