"""The `visionpipe` command line: the argparse tree (`main.py`) and one thin module per command.

Commands parse and check their arguments, then call the pipeline, the
inspection readers (`pipeline.inspect`) or the run plumbing
(`pipeline.plumbing`); nothing below this package imports it.
"""
