"""Restormer (Zamir et al., CVPR 2022): a 4-level encoder-decoder of transformer blocks.

Each transformer block is two residual steps on a channel-normalised feature map:

    x = x + MDTA(LayerNorm(x))   multi-Dconv head transposed attention: attention across channels, not pixels
    x = x + GDFN(LayerNorm(x))   gated depthwise feed-forward network

The network (Fig. 2 of the paper):

    3x3 conv embed -> L1 -> down -> L2 -> down -> L3 -> down -> latent
                                                                   | up
    L1 skip ----------------------> concat <- up <- L2' <- reduce <- concat(L3 skip) -> L3'
                                      |
                             L1' -> refinement -> 3x3 conv -> + input image

Attribute names and parameter shapes follow the authors' code exactly so their checkpoints load with
``strict=True`` (494 tensors, 26,126,644 values for the deraining configuration).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _WithBiasNorm(nn.Module):
    """LayerNorm over the channel vector of each pixel: (x - mean) / std * weight + bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: ... x C
        # Written out rather than F.layer_norm: this order of operations reproduces the official outputs
        # bit for bit (F.layer_norm differs by ~1e-6 relative, which grows to ~1e-5 through the network).
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class _BiasFreeNorm(nn.Module):
    """Restormer's bias-free variant: x / std * weight, without subtracting the mean from x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight


class ChannelLayerNorm(nn.Module):
    """LayerNorm across channels at every pixel of a B x C x H x W map."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        if kind not in ("WithBias", "BiasFree"):
            raise ValueError(f"LayerNorm_type must be 'WithBias' or 'BiasFree', not {kind!r}")
        self.body = _BiasFreeNorm(channels) if kind == "BiasFree" else _WithBiasNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class NormalizeChannels(nn.Module):
    """ChannelLayerNorm without its affine parameters, for the fast path after :meth:`Restormer.fold` has moved
    them into the next 1x1 convolution. One fused ``F.layer_norm`` per pixel (a free view in channels-last
    memory) instead of the reference's separate mean, variance and division."""

    def __init__(self, channels: int, subtract_mean: bool) -> None:
        super().__init__()
        self.channels = channels
        self.subtract_mean = subtract_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subtract_mean:
            return F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), eps=1e-5).permute(0, 3, 1, 2)
        return x * torch.rsqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5)


def fold_norm_into_conv(norm: ChannelLayerNorm, conv: nn.Conv2d) -> tuple[NormalizeChannels, nn.Conv2d]:
    """``conv(norm(x))`` rewritten as ``conv'(normalize(x))``: the norm's scale multiplies the 1x1 kernel's
    input channels and its shift becomes a bias (exact up to rounding)."""
    body = norm.body
    weight = conv.weight * body.weight[None, :, None, None]
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True).to(conv.weight.device, conv.weight.dtype)
    assert folded.bias is not None  # built with bias=True
    bias = conv.bias.clone() if conv.bias is not None else torch.zeros_like(folded.bias)
    if isinstance(body, _WithBiasNorm):
        bias = bias + conv.weight[:, :, 0, 0] @ body.bias
    folded.weight.copy_(weight)
    folded.bias.copy_(bias)
    return NormalizeChannels(conv.in_channels, isinstance(body, _WithBiasNorm)), folded


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: a C/heads x C/heads attention map per head, cost linear in pixels."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        # B x (heads * c') x H x W  ->  B x heads x c' x (H * W)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: GELU(branch 1) * branch 2, both after a depthwise 3x3 conv."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm residual MDTA followed by pre-norm residual GDFN."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 LayerNorm_type: str) -> None:  # official keyword name
        super().__init__()
        # NormalizeChannels once fold() has moved the affine part into the convs after it
        self.norm1: ChannelLayerNorm | NormalizeChannels = ChannelLayerNorm(dim, LayerNorm_type)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2: ChannelLayerNorm | NormalizeChannels = ChannelLayerNorm(dim, LayerNorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    @torch.no_grad()
    def fold(self) -> None:
        """Move both norms' affine parameters into the 1x1 convs after them (inference only)."""
        # both norms are folded together, so both are ChannelLayerNorm or neither is
        if isinstance(self.norm1, ChannelLayerNorm) and isinstance(self.norm2, ChannelLayerNorm):
            self.norm1, self.attn.qkv = fold_norm_into_conv(self.norm1, self.attn.qkv)
            self.norm2, self.ffn.project_in = fold_norm_into_conv(self.norm2, self.ffn.project_in)


class OverlapPatchEmbed(nn.Module):
    """A 3x3 convolution from image channels to the feature width (keeps the resolution)."""

    def __init__(self, in_c: int, embed_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution and double the channels: 3x3 conv to C/2, then pixel-unshuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution and halve the channels: 3x3 conv to 2C, then pixel-shuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _stage(n: int, dim: int, heads: int, ffn: float, bias: bool, norm: str) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, ffn, bias, norm) for _ in range(n)])


class Restormer(nn.Module):
    """Restormer with the official constructor's keyword names; predicts a residual added to the input."""

    size_multiple = 8  # three 2x downsamplings: inference pads height and width to multiples of this

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = "WithBias", dual_pixel_task: bool = False) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need one entry per level (4)")
        ffn, norm = ffn_expansion_factor, LayerNorm_type
        # The official network never passes ``bias`` to the embedding: it has no bias in any configuration.
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)

        self.encoder_level1 = _stage(num_blocks[0], dim, heads[0], ffn, bias, norm)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = _stage(num_blocks[1], dim * 2, heads[1], ffn, bias, norm)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = _stage(num_blocks[2], dim * 4, heads[2], ffn, bias, norm)
        self.down3_4 = Downsample(dim * 4)
        self.latent = _stage(num_blocks[3], dim * 8, heads[3], ffn, bias, norm)

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = _stage(num_blocks[2], dim * 4, heads[2], ffn, bias, norm)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = _stage(num_blocks[1], dim * 2, heads[1], ffn, bias, norm)
        self.up2_1 = Upsample(dim * 2)
        # Level 1 of the decoder keeps the concatenated 2C channels (no reduction), as in the paper.
        self.decoder_level1 = _stage(num_blocks[0], dim * 2, heads[0], ffn, bias, norm)
        self.refinement = _stage(num_refinement_blocks, dim * 2, heads[0], ffn, bias, norm)

        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:  # defocus deblurring from dual-pixel pairs: no global residual, a skip conv instead
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    @property
    def bytes_per_pixel(self) -> int:
        """Peak activation memory of an inference per input pixel (float32): measured 11,600 at dim 48
        (256x256), proportional to the width; derain.inference.restore.auto_tile sizes tiles from it."""
        return 250 * self.output.in_channels // 2

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        enc1_in = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(enc1_in)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.refinement(dec1)

        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(enc1_in))
        return self.output(dec1) + inp_img

    @torch.no_grad()
    def fold(self) -> "Restormer":
        """Fold every LayerNorm's affine parameters into the following 1x1 convolution, in place (the fast
        path of :mod:`derain.inference.fastpath`; the folded model no longer loads official checkpoints)."""
        for module in self.modules():
            if isinstance(module, TransformerBlock):
                module.fold()
        return self
