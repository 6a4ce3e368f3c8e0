"""Run plumbing shared by the local runner and the CLI: logging, progress, the run lock, errors.

Imports nothing else from `pipeline`, so the pipeline definition, the runner
and the commands can all use it.
"""
