"""One module per training method: builds its trainer from the config and the prepared rows. Heavy (TRL)."""
