"""`python -m engine.helper`: the helper process's stable entry point (the TUI starts it by this name)."""
import sys

# Run engine.helper.server's main, not a __main__ copy of it: op modules register into engine.helper.server.OPS.
from engine.helper.server import main

sys.exit(main())
