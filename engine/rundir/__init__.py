"""The run directory, the contract between the engine and every client: config.yaml, status.json, events.jsonl,
control files and checkpoints; creating, listing, launching (one node, several, a Slurm job) and verifying runs. Light: never imports the ML stack."""
