"""The machine: NVML and psutil telemetry, the table of known GPUs. Light: never imports the ML stack."""
