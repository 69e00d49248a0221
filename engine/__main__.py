"""Entry point for ``python -m engine``."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned helper process imports this module
    sys.exit(main())
