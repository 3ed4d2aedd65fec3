"""A variant's process: ``python -m bench.child`` reads its spec on stdin (see :func:`bench.harness.run_once`)."""

import sys

from bench.harness import child_main

if __name__ == "__main__":
    sys.exit(child_main())
