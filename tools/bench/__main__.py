"""`python -m tools.bench`: see tools/bench/runner.py."""

from tools.bench.runner import main

raise SystemExit(main())
