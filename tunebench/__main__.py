"""`python -m tunebench`: the same as the `tunebench` command."""
import sys

from tunebench.cli import main

sys.exit(main())
