"""The run directory, the contract between the engine and every client: config.yaml, status.json, events.jsonl,
control files and checkpoints; creating, listing, launching (one node, several, a Slurm job) and verifying runs;
one engine per run (lock.py), whose runs are trusted (trust.py), where a resume goes on from (resume.py).
Light: never imports the ML stack."""
