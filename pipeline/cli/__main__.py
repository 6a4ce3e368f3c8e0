"""`python -m pipeline.cli`: the `visionpipe` command without its console script."""

from pipeline.cli.main import main

raise SystemExit(main())
