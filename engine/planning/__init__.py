"""Planning a run before it starts: the memory and time estimate, the verdict and its fix, the launch preflight.
Light: reads config.json files, never imports the ML stack."""
