"""`python -m worker.cli`: the `erpsync` command run by this interpreter (the local stack and the benchmark run it
so). Not `-m worker.cli.commands`: the package imports that module first, and runpy warns on stderr that it is
about to run it a second time."""

import sys

from worker.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
