"""`python -m engine.worker RUN_DIR [--resume]`: the engine process's stable entry point.

Launchers (engine.rundir.launch, torchrun and accelerate command lines, runs started before the code moved
into engine/training/) name this module; the engine itself is engine.training.worker.
"""
import sys

from engine.training.worker import main

if __name__ == "__main__":
    sys.exit(main())
