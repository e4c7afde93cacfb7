"""FSDRNet (our reconstruction; no public code): all-in-one restoration of rain, haze, noise, blur and low
light, with frequency guidance and degradation routing.

One module per part of the design (docs/METHODS.md section 5.2):

- :mod:`~derain.models.fsdrnet.frequency`: the frequency auxiliary module (FAM) and its guidance;
- :mod:`~derain.models.fsdrnet.efma`: EFMA attention and the guided Restormer-style blocks;
- :mod:`~derain.models.fsdrnet.selector`: the degradation selector and the routing weights;
- :mod:`~derain.models.fsdrnet.heads`: the physically-guided restoration heads;
- :mod:`~derain.models.fsdrnet.network`: the network that wires them together.
"""
from derain.models.fsdrnet.network import FSDRNet, FSDRNetOutput
from derain.models.fsdrnet.selector import TASKS

__all__ = ["FSDRNet", "FSDRNetOutput", "TASKS"]
