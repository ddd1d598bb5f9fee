"""Training methods: each module builds a ready trainer for one `method` of the config."""
