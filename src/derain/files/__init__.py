"""Files on disk: images, checkpoints, YAML, and the planning of what a command writes (no network here)."""
