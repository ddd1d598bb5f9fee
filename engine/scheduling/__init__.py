"""The run queue's scheduler and sweeps: which queued run starts when (by the memory estimate), and Optuna studies
whose trials are queued runs. Light: never imports the ML stack; optuna only in sweeps.py, which the workbench
never imports (it reads sweeps through sweepfiles.py)."""
