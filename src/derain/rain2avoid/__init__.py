"""Rain2Avoid: self-supervised deraining from the rainy image alone (ICASSP 2023 and its later non-local
stochastic sampling version). ``ldgp`` finds rain streaks, ``pseudo_gt`` samples pseudo ground truths,
``unet`` is the paper's network and ``selfsup`` trains it per image or per folder (``derain selfsup``).

The choices ``derain selfsup`` offers are named here, without torch (``derain --help`` imports none)."""

VARIANTS: tuple[str, ...] = ("icassp", "nlss")  # LDGP's sampling: ICASSP 2023, or non-local stochastic sampling
MODES: tuple[str, ...] = ("per-image", "multiple")  # a fresh network per image, or one for all inputs
