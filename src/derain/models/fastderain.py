"""FastDerain: a conv U-Net built for quality per CPU-millisecond, the network of the default model's experts.

Design (measured on a 2-core AVX-512 BF16 CPU, see docs/journal/fastderain.md):

- a 2x pixel-unshuffle stem, so every convolution runs on a quarter of the pixels while the channels
  carry the full-resolution detail (rain streaks are thin; unshuffling keeps them, a strided conv would not);
- dense 3x3 convolutions only: depthwise convolutions and attention cost 5-10x more per FLOP here;
- re-parameterisable convolutions (:class:`RepConv3x3`): trained as 3x3 + 1x1 + identity branches, whose sum
  is folded into one 3x3 kernel. Without normalisation the branches are linear, so the fold is exact and is
  done on the fly in training too: the extra branches change the optimisation, not the cost;
- global residual: the network predicts the rain layer and the output is ``input - rain``;
- an optional full-resolution level above the unshuffled trunk (``full_width > 0``): a thin encoder/decoder
  pair at the input's resolution, joined to the trunk by a strided conv down and a pixel-shuffle up, adding its
  own rain prediction. Its entry into the trunk and its head start at zero, so a trained network without it
  can be *grown* into one with it and start from exactly the same function (see :func:`grown_state_dict`).

:meth:`FastDerain.fold` turns every RepConv into a plain ``nn.Conv2d`` and moves each residual block's scale
into its second convolution for deployment; the folded network gives the same output (to float rounding).
Checkpoints hold the training (unfolded) form; loading a folded state dict into an unfolded model is also
supported, because a folded kernel is a valid 3x3 branch with zero 1x1 and identity branches, and a folded
block's scale is one.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RepConv3x3(nn.Module):
    """A 3x3 convolution over-parameterised as 3x3 + 1x1 (+ identity when shapes allow) branches.

    The forward pass merges the branch weights into one 3x3 kernel first, so training costs one convolution.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.weight3 = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.weight1 = nn.Parameter(torch.empty(out_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.has_identity = in_ch == out_ch
        if self.has_identity:
            # Learnable per-channel scale of the identity branch (starts at 0: the block starts as a plain conv).
            self.identity_scale = nn.Parameter(torch.zeros(out_ch))
            eye = torch.zeros(out_ch, in_ch, 3, 3)
            eye[torch.arange(out_ch), torch.arange(out_ch), 1, 1] = 1.0
            # Built once, not per step; not saved (it is a constant of the shape).
            self.register_buffer("eye", eye, persistent=False)
            self.eye: torch.Tensor  # the buffer just registered
        nn.init.kaiming_uniform_(self.weight3, a=5 ** 0.5)
        nn.init.kaiming_uniform_(self.weight1, a=5 ** 0.5)
        with torch.no_grad():
            self.weight1.mul_(1 / 3)  # keep the summed kernel's variance close to a plain conv's

    def merged_weight(self) -> torch.Tensor:
        """The single 3x3 kernel equal to the sum of the branches."""
        w = self.weight3 + F.pad(self.weight1, (1, 1, 1, 1))
        if self.has_identity:
            w = w + self.eye * self.identity_scale.view(-1, 1, 1, 1)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.merged_weight(), self.bias, padding=1)

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same function."""
        conv = nn.Conv2d(self.in_ch, self.out_ch, 3, padding=1)
        assert conv.bias is not None  # built with the default bias=True
        with torch.no_grad():
            conv.weight.copy_(self.merged_weight())
            conv.bias.copy_(self.bias)
        return conv


def make_conv(in_ch: int, out_ch: int, rep: bool) -> nn.Module:
    return RepConv3x3(in_ch, out_ch) if rep else nn.Conv2d(in_ch, out_ch, 3, padding=1)


class ResBlock(nn.Module):
    """x + conv(act(conv(x))): two dense 3x3 convolutions with a LeakyReLU between."""

    def __init__(self, ch: int, rep: bool, low_precision_residuals: bool = False) -> None:
        super().__init__()
        self.conv1 = make_conv(ch, ch, rep)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = make_conv(ch, ch, rep)

        # Start every block as the identity (Fixup-style): without normalisation, a stack of residual blocks
        # at default init grows its activations and trains unstably at the lr this model wants.
        self.scale: nn.Parameter | None = nn.Parameter(torch.zeros(ch, 1, 1))  # None once folded
        self.low_precision_residuals = low_precision_residuals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(self.act(self.conv1(x)))
        if self.scale is None:  # folded into conv2 (inference): no multiply, and the sum reuses branch's memory
            return branch.add_(x) if branch.dtype == x.dtype else x + branch
        # Under bf16 autocast the convolutions return bf16, and a float32 scale would promote the sum to float32:
        # every block would then cast its input back down (measured: about 10% of a training step at 96x96).
        scale = self.scale.to(branch.dtype) if self.low_precision_residuals else self.scale
        return x + scale * branch

    @torch.no_grad()
    def fold_scale(self) -> None:
        """Move the block's output scale into conv2's weights and bias (exact: conv2 is linear), for inference."""
        if self.scale is None:
            return
        if not isinstance(self.conv2, nn.Conv2d):
            raise ValueError("fold the re-parameterised convolutions before the block scale")
        assert self.conv2.bias is not None  # built with the default bias=True
        factor = self.scale.view(-1)
        self.conv2.weight.mul_(factor.view(-1, 1, 1, 1))
        self.conv2.bias.mul_(factor)
        self.scale = None


def _stage(ch: int, blocks: int, rep: bool, low_precision_residuals: bool = False) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(ch, rep, low_precision_residuals) for _ in range(blocks)])


class FastDerain(nn.Module):
    """Pixel-unshuffle conv U-Net predicting the rain layer; ``output = input - rain``.

    ``widths[i]`` and ``enc_blocks[i]`` describe level ``i`` (level 0 is at half resolution after the stem);
    the last level is the bottleneck. ``dec_blocks`` has one entry per level except the bottleneck. Input
    sides must be multiples of ``2 * 2 ** (len(widths) - 1)``.

    ``low_precision_residuals`` keeps the residual stream in the autocast dtype (bf16) in training instead of
    letting the float32 block scales promote it: bf16 training steps about 10% faster on the CPU, the same
    function in float32. Off by default because the recorded lineages trained without it (their exact
    reproduction needs the same numerics).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 192),
                 enc_blocks: Sequence[int] = (2, 2, 2, 2), dec_blocks: Sequence[int] = (2, 2, 2),
                 unshuffle: int = 2, rep: bool = False, full_width: int = 0,
                 full_blocks: Sequence[int] = (1, 1), low_precision_residuals: bool = False) -> None:
        super().__init__()
        if len(enc_blocks) != len(widths) or len(dec_blocks) != len(widths) - 1:
            raise ValueError("enc_blocks needs one entry per width, dec_blocks one fewer")
        if full_width and unshuffle < 2:
            raise ValueError("full_width adds a level above an unshuffled trunk: it needs unshuffle >= 2")
        self.unshuffle = unshuffle
        self.stem = nn.Conv2d(in_channels * unshuffle ** 2, widths[0], 3, padding=1)
        lp = low_precision_residuals
        self.encoders = nn.ModuleList(_stage(w, n, rep, lp) for w, n in zip(widths, enc_blocks))
        # Downsampling by a stride-2 2x2 conv (cheap, learnable); upsampling by 1x1 conv + pixel shuffle.
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(b, a * 4, 1), nn.PixelShuffle(2))
                                 for a, b in zip(widths[:-1], widths[1:]))
        self.decoders = nn.ModuleList(_stage(w, n, rep, lp) for w, n in zip(widths[:-1], dec_blocks))
        self.head = nn.Conv2d(widths[0], in_channels * unshuffle ** 2, 3, padding=1)
        # Zero-initialised head: the untrained network is the identity (no rain removed), the right start
        # for a residual predictor whose input is already close to the target.
        assert self.head.bias is not None  # built with the default bias=True
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.full_width = full_width
        if full_width:
            enc, dec = full_blocks
            self.full_stem = nn.Conv2d(in_channels, full_width, 3, padding=1)
            self.full_encoder = _stage(full_width, enc, rep, lp)
            self.full_down = nn.Conv2d(full_width, widths[0], unshuffle, stride=unshuffle)
            self.full_up = nn.Sequential(nn.Conv2d(widths[0], full_width * unshuffle ** 2, 1),
                                         nn.PixelShuffle(unshuffle))
            self.full_decoder = _stage(full_width, dec, rep, lp)
            self.full_head = nn.Conv2d(full_width, in_channels, 3, padding=1)
            # Zero entry into the trunk and zero head: adding the level leaves the network's function unchanged.
            for conv in (self.full_down, self.full_head):
                assert conv.bias is not None  # built with the default bias=True
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            # Full-resolution activations: measured 695 bytes per pixel in all at full_width 16 (float32,
            # 512x512, peak-RSS increase in a fresh one-thread process; 392 without the level).
            self.bytes_per_pixel = 400 + 19 * full_width
        self.size_multiple = unshuffle * 2 ** (len(widths) - 1)

    # The body runs in the dtype of the weights and the image-level residual in the input's (derain.inference.fastpath
    # stores the weights in bf16 on CPUs that compute it natively; the output keeps float32 precision).
    accepts_low_precision_weights = True
    # Dense 3x3 convolutions train faster channels-last on the CPU (see derain.train.config.TrainConfig).
    trains_faster_channels_last = True
    # Peak activation memory of an inference, bytes per input pixel (default widths, float32; measured
    # 389 at 512x512): derain.inference.restore.auto_tile sizes tiles from it.
    bytes_per_pixel = 400

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x.to(self.stem.weight.dtype)
        feat = self.stem(F.pixel_unshuffle(inp, self.unshuffle)) if self.unshuffle > 1 else self.stem(inp)
        if self.full_width:
            full_skip = self.full_encoder(self.full_stem(inp))
            feat = feat + self.full_down(full_skip)
        skips = []
        for i, enc in enumerate(self.encoders):
            feat = enc(feat)
            if i < len(self.downs):
                skips.append(feat)
                feat = self.downs[i](feat)
        for i in reversed(range(len(self.decoders))):
            feat = self.decoders[i](self.ups[i](feat) + skips[i])
        rain = self.head(feat)
        if self.unshuffle > 1:
            rain = F.pixel_shuffle(rain, self.unshuffle)
        if self.full_width:
            rain = rain + self.full_head(self.full_decoder(self.full_up(feat) + full_skip))
        return x - rain.to(x.dtype)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load the training (unfolded) form, or a folded one into an unfolded model (same function)."""
        return super().load_state_dict(unfolded_state_dict(dict(state_dict), self), strict=strict, assign=assign)

    def grown_state_dict(self, source: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """``source`` (a trained network without the full-resolution level, or with fewer residual blocks in a
        stage) completed with this network's own initial weights for what it lacks, and the names of the
        modules added.

        The added level starts with a zero entry and a zero head, and an added residual block with a zero scale
        (the identity), so the grown network computes exactly what ``source`` computed; training then teaches
        the new modules. Every other key must be there.
        """
        own = self.state_dict()
        source = unfolded_state_dict(dict(source), self)
        source_blocks = {_block_of(k) for k in source}
        added = [k for k in own if k not in source
                 and (k.startswith("full_") or (_block_of(k) is not None and _block_of(k) not in source_blocks))]
        merged = {**source, **{k: own[k] for k in added}}
        return merged, sorted({k.split(".")[0] if k.startswith("full_") else str(_block_of(k)) for k in added})

    @torch.no_grad()
    def fold(self) -> "FastDerain":
        """Replace every re-parameterisable conv by its single 3x3 equivalent and move every residual block's
        scale into its second convolution, in place (for inference)."""
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, RepConv3x3):
                    conv = child.to_conv().to(child.weight3.device, child.weight3.dtype)
                    setattr(module, name, conv)
        for module in self.modules():
            if isinstance(module, ResBlock):
                module.fold_scale()
        return self


def _block_of(key: str) -> str | None:
    """``encoders.3.2`` for ``encoders.3.2.conv1.weight3`` (a residual block of a stage), else None."""
    parts = key.split(".")
    if len(parts) > 3 and parts[0] in ("encoders", "decoders") and parts[1].isdigit() and parts[2].isdigit():
        return ".".join(parts[:3])
    return None


def unfolded_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a folded state dict (``...conv1.weight``) onto ``model``'s RepConv keys (``...conv1.weight3``).

    A folded kernel is loaded as the 3x3 branch with zero 1x1 and identity branches: the same function.
    Keys that already fit are kept.
    """
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if key not in own and leaf == "weight" and f"{prefix}.weight3" in own:
            out[f"{prefix}.weight3"] = value
            out[f"{prefix}.weight1"] = torch.zeros_like(own[f"{prefix}.weight1"])
            if f"{prefix}.identity_scale" in own:
                out[f"{prefix}.identity_scale"] = torch.zeros_like(own[f"{prefix}.identity_scale"])
        else:
            out[key] = value
        # A folded block's scale lives in its conv2: the training form gets a scale of one.
        block, _, conv = prefix.rpartition(".")
        if conv == "conv2" and f"{block}.scale" in own and f"{block}.scale" not in state:
            out[f"{block}.scale"] = torch.ones_like(own[f"{block}.scale"])
    return out


def coarser_start_state_dict(source: dict[str, torch.Tensor], student: FastDerain) -> dict[str, torch.Tensor]:
    """A start for ``student``, a FastDerain with the same levels as the trained ``source`` network but a stem
    that unshuffles ``r`` times more (e.g. 2 where the source has 1): a student of about ``r ** 2`` times fewer
    multiply-adds.

    The levels carry over unchanged; the stem sees each input channel's ``r x r`` sub-pixels with the source's
    kernel divided by ``r ** 2`` (the source's stem applied to the image averaged over ``r x r`` blocks), and
    the head gives every sub-pixel the source's rain. So the started student computes exactly
    ``x - nearest_upsample(source_rain(avg_pool(x, r)))``: the source network run at ``1/r`` of the size, a start
    that training then sharpens back to full resolution.
    """
    in_channels = student.head.weight.shape[0] // student.unshuffle ** 2
    teacher_r = round((source["stem.weight"].shape[1] / in_channels) ** 0.5)  # the stem reads in_channels * r * r
    r = student.unshuffle // teacher_r
    if r < 1 or student.unshuffle % teacher_r:
        raise ValueError("the student's unshuffle must be a multiple of the source's")
    own = student.state_dict()
    source = unfolded_state_dict(dict(source), student)
    out = {k: v for k, v in source.items() if k in own}
    missing = [k for k in own if k not in out]
    if missing:
        raise ValueError(f"the source lacks {', '.join(missing[:4])}: the student must have its levels")
    stem, head, head_bias = source["stem.weight"], source["head.weight"], source["head.bias"]
    # pixel_unshuffle puts channel c's sub-pixel k at c * r * r + k; pixel_shuffle reads the same order back.
    out["stem.weight"] = stem.repeat_interleave(r * r, dim=1) / (r * r)
    out["head.weight"] = head.repeat_interleave(r * r, dim=0)
    out["head.bias"] = head_bias.repeat_interleave(r * r, dim=0)
    for key in ("stem.weight", "head.weight", "head.bias"):
        if out[key].shape != own[key].shape:
            raise ValueError(f"{key} {tuple(out[key].shape)} does not fit the student's {tuple(own[key].shape)}")
    return out
