"""visionpipe's pipeline: run config, dataset facts, the TFX pipeline definition, the local runner.

Subpackages: `cli` (the `visionpipe` command), `inspect` (readers of finished
runs), `plumbing` (logging, progress, run lock, errors).
"""
