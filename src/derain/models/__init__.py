"""Networks (pure ``nn.Module``s, no I/O) and the registry that names them."""
from derain.models.registry import ModelSpec, build, count_parameters, get_spec, list_specs, register, same_network

__all__ = ["ModelSpec", "build", "count_parameters", "get_spec", "list_specs", "register", "same_network"]
