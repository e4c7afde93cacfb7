"""Files on disk: images, checkpoints, YAML, and the planning of what a command writes (no network here)."""

# Checkpoints with 8-bit weights (derain.files.checkpoints) store each weight's per-channel scales under the
# weight's name plus this suffix; defined here, torch-free, for the readers of bare safetensors headers.
INT8_SCALE_SUFFIX = ":int8_scale"
