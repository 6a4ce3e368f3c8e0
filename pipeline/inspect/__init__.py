"""Read-only views of finished runs: ML Metadata and TFMA readers, the slice table, the report.

Everything here reads what a run left in its output dir (ML Metadata, the
Evaluator's output, pushed models) and never runs a component; the CLI's
`slices`, `report` and `run` summary render what it returns.
"""
