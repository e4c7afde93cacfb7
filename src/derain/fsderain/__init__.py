"""FSDerain: frequency-spatial dual-branch fine-tuning of any registry model for real rain.

Paired mode (the method, :mod:`~derain.fsderain.objective`) and our unpaired extension
(:mod:`~derain.fsderain.unpaired`); :func:`derain.fsderain.finetune.finetune` runs either from a config
(``derain finetune``).
"""
