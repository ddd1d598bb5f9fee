"""tunebench's engine: everything headless. It never imports textual or tui/; the `tunebench` package drives it.

Subpackages, from the bottom layer up (a layer imports only from layers below it; .importlinter enforces it):
  config      the one schema, typed sections, validation into structured problems       light
  rundir      the run directory contract: runs, status, events, controls, the engine's lock,
              ownership, paths, resume plans, launch (one node, several, Slurm), verify   light
  monitor     chart series and history decoded from events.jsonl, the snapshot           light
  system      NVML/psutil telemetry and the known-GPU table                             light
  data        reading, detecting, validating and converting datasets                    light (heavy only for hub ids)
  planning    memory/time estimate, verdict, `auto` resolution, launch preflight         light
  training    the engine process (`python -m engine.worker`), methods, callbacks         heavy
  checkpoints model references, A/B generation, chat, votes, export                     mixed (see its docstring)
  helper      the helper process (`python -m engine.helper`) and its ops                heavy
  demo        the embedded demo workspace and tiny model                                mixed
"""

__version__ = "0.1.0"
