"""Rain experts: two FastDerain networks, one for light rain and one for every rain, mixed per pixel by a gate.

The general network (light, heavy, dense and real rain with its veil) gives up 0.8-1.7 dB on light
synthetic rain to a network of the same family trained for light rain only, because it lifts veils and
removes streaks that are not there; the light-rain network leaves heavy and real rain in place. Neither is
right everywhere, and which one is right can be seen in the image: how dense and bright its rain is, whether a
veil covers it, and where the two experts disagree. The gate reads the rainy input and both experts' rain
layers at a quarter of the resolution, adds image-level context (pooled features, so a veil seen in one part
of the photo informs the rest), and outputs the weight of the light-rain expert at every pixel:

    output = general(x) + g(x) * (light(x) - general(x)),    g in [0, 1]

The experts are trained first, each on its own data (``configs/rain100l_*`` and ``configs/general_*``); the
gate is then trained on both kinds of rain with the experts frozen (``freeze_experts``), which costs one
backward pass through a network of 18k parameters per step.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.fastderain import FastDerain, unfolded_state_dict


class _LeakySigmoid(torch.autograd.Function):
    """The sigmoid, whose gradient never falls below ``floor`` (a tenth of its slope at the centre when 0.025)."""

    @staticmethod
    def forward(ctx: Any, logit: torch.Tensor, floor: float) -> torch.Tensor:
        g = torch.sigmoid(logit)
        ctx.save_for_backward(g)
        ctx.floor = floor
        return g

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (g,) = ctx.saved_tensors
        return grad * (g * (1 - g)).clamp_min(ctx.floor), None


class RainGate(nn.Module):
    """Per-pixel weight of the light-rain expert, from the input and both experts' rain layers.

    Works at ``1 / (2 * scale)`` of the input's resolution (rain density and veils are regional, not per
    pixel) and is upsampled bilinearly, so the mix has no seams; ``width`` channels throughout.
    """

    def __init__(self, in_channels: int = 3, width: int = 24, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.entry = nn.Conv2d(3 * in_channels, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.context = nn.Linear(width, width)  # what the whole image says, added at every position
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, 1, 1)
        self.act = nn.LeakyReLU(0.1)
        # Rain layers are small (a few hundredths of full scale): amplify them before the first convolution,
        # so both inputs start on the scale of the image.
        self.rain_gain = 8.0
        self.gradient_floor = 0.025

    def forward(self, x: torch.Tensor, light: torch.Tensor, general: torch.Tensor) -> torch.Tensor:
        dtype = self.entry.weight.dtype
        feats = torch.cat([x, self.rain_gain * (x - light), self.rain_gain * (x - general)], dim=1).to(dtype)
        feats = F.avg_pool2d(feats, self.scale, ceil_mode=True)
        f = self.act(self.entry(feats))
        f = self.act(self.body(self.act(self.down(f))))
        f = f + self.context(f.mean(dim=(2, 3))).unsqueeze(-1).unsqueeze(-1)
        logit = self.head(self.act(self.mix(f)))
        logit = F.interpolate(logit.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if not torch.is_grad_enabled():
            return torch.sigmoid(logit)
        # The loss is that of the mix, whose gradient reaches the logit times the sigmoid's slope: early in
        # training, heavy rain (where the general expert wins by far) pushes every logit down until the slope
        # vanishes and the gate is stuck at the general expert everywhere, light rain included (a first run did
        # exactly that). A floor under the slope keeps the direction of the gradient: it still says which expert
        # is better, so a saturated gate comes back where the light-rain expert wins.
        return _LeakySigmoid.apply(logit, self.gradient_floor)


class RainExperts(nn.Module):
    """A light-rain and a general FastDerain, mixed per pixel by :class:`RainGate` (see the module doc).

    ``light`` and ``general`` are the two experts' FastDerain configurations; ``freeze_experts`` keeps their
    weights out of training (the gate-only stage).
    """

    def __init__(self, light: Mapping[str, Any], general: Mapping[str, Any], gate_width: int = 24,
                 gate_scale: int = 4, freeze_experts: bool = False) -> None:
        super().__init__()
        self.light = FastDerain(**light)
        self.general = FastDerain(**general)
        self.gate = RainGate(self.general.stem.in_channels // self.general.unshuffle ** 2, gate_width, gate_scale)
        if freeze_experts:
            for p in (*self.light.parameters(), *self.general.parameters()):
                p.requires_grad_(False)
        a, b = self.light.size_multiple, self.general.size_multiple
        self.size_multiple = max(a, b)
        if self.size_multiple % min(a, b):
            raise ValueError(f"the experts' size multiples {a} and {b} must divide one another")
        # The experts run one after the other: the peak is one expert's plus three images kept for the mix.
        self.bytes_per_pixel = max(self.light.bytes_per_pixel, self.general.bytes_per_pixel) + 48

    # Each expert casts its input to its weights' dtype and adds the residual in float32; the mix is float32.
    accepts_low_precision_weights = True
    trains_faster_channels_last = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        light = self.light(x)
        general = self.general(x)
        g = self.gate(x, light, general).to(x.dtype)
        return general + g * (light - general)

    def expert_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's weight of the light-rain expert at every pixel of ``x`` (N x 1 x H x W, in [0, 1])."""
        return self.gate(x, self.light(x), self.general(x))

    @torch.no_grad()
    def fold(self) -> "RainExperts":
        """Fold both experts for inference (the gate has nothing to fold)."""
        self.light.fold()
        self.general.fold()
        return self

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load the training form, or experts saved folded (as :meth:`FastDerain.load_state_dict` does)."""
        state = dict(state_dict)
        for name in ("light", "general"):
            prefix = name + "."
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
            state.update({prefix + k: v for k, v in unfolded_state_dict(own, getattr(self, name)).items()})
        return super().load_state_dict(state, strict=strict, assign=assign)

    @staticmethod
    def composed_state_dict(light: Mapping[str, torch.Tensor], general: Mapping[str, torch.Tensor],
                            gate: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One state dict of two trained experts and a gate (the start of the gate-only stage)."""
        return {**{f"light.{k}": v for k, v in light.items()}, **{f"general.{k}": v for k, v in general.items()},
                **{f"gate.{k}": v for k, v in gate.items()}}
