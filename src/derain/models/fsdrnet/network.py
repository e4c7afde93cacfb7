"""FSDRNet, all-in-one restoration with frequency guidance and degradation routing: our reconstruction.

The authors published an abstract, a figure and a results table, no code; this network follows
docs/METHODS.md section 5.2, our design faithful to them. Two stages, feature enhancement then
dynamic processing:

    embed:     I --3x3 conv--> x1
    encoder:   x1 --FAM1--> g1     x1 --[EFMA x n1 | g1]--> e1 --down--> x2
               x2 --FAM2--> g2     x2 --[EFMA x n2 | g2]--> e2 --down--> x3
               x3 --FAM3--> g3     x3 --[EFMA x n3 | g3]--> e3 --down--> x4
               x4 --FAM4--> g4     x4 --[EFMA x n4 | g4]--> latent
    selector:  [avg-pool(latent), band energies of FAM1..4] --MLP--> logits --> pi
    decoder:   latent --up, concat e3, 1x1--> [EFMA x n3 | g3]
                      --up, concat e2, 1x1--> [EFMA x n2 | g2]
                      --up, concat e1-------> [EFMA x n1 | g1'] --> [refinement | g1'] --> feat
    heads:     out = sum_k pi_k * head_k(I, feat) + conv3x3(feat)      k in TASKS

    [EFMA x n | g]  n EFMA blocks, every one modulated by the guidance g of its level's FAM (g1' is FAM1's
                    guidance at the decoder's 2C width). One way only, frequency -> spatial: a FAM reads
                    the input of its level, never what the EFMA blocks of that level or the decoder compute.
    pi              routing weights over TASKS: the selector's softmax (default), its top-1, or one-hot on
                    a forced task.

``unshuffle`` > 1 (the small model) runs the U-Net on the pixel-unshuffled embedding, while the level-1 FAM
still reads the full-resolution spectrum (its guidance is unshuffled to the U-Net's resolution) and the heads
still filter the full-resolution image (they pixel-shuffle their predicted parameters back to full resolution).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from derain.models.fsdrnet.efma import GuidedStage
from derain.models.fsdrnet.frequency import FrequencyAuxiliary, FrequencyOutput, Guidance
from derain.models.fsdrnet.heads import PhysicalHeads
from derain.models.fsdrnet.selector import TASKS, DegradationSelector, check_task, routing_weights
from derain.models.restormer import Downsample, OverlapPatchEmbed, Upsample


class FSDRNetOutput(NamedTuple):
    """A forward pass with everything the training loss and the CLI need."""

    image: torch.Tensor  # (B, 3, H, W) restored image
    logits: torch.Tensor  # (B, len(TASKS)) selector logits (for the cross-entropy on the task label)
    weights: torch.Tensor  # (B, len(TASKS)) routing weights actually used over the heads


class FSDRNet(nn.Module):
    """FSDRNet (our reconstruction; no public code). ``forward(x)`` returns the restored image;
    :meth:`forward_with_logits` also returns the selector's logits and the routing weights.

    ``task``: None or ``"auto"`` routes by the selector; one of :data:`TASKS` forces that head (one-hot).
    ``routing``: ``"soft"`` mixes the heads by the selector's softmax, ``"top1"`` uses its argmax only.
    After every forward, :attr:`last_choice` holds the chosen task of each image (argmax of the weights) and
    :attr:`last_weights` the weights (B, 5), for the CLI to print. Input sides must be multiples of
    :attr:`size_multiple` (8 x ``unshuffle``).

    ``frequency=False`` is the ablation without the frequency auxiliary modules: no guidance reaches the EFMA
    blocks and the selector sees the pooled bottleneck features only.

    ``selector_crop`` > 0 (the training patch side): in ``auto`` routing, an image larger than that is
    classified from up to 3 x 3 crops of that side spread over it (the geometric mean of their selector
    probabilities), not from the whole image. The selector's pooled features and band energies depend on the
    scale it sees: trained on 96x96 patches, ``fsdrnet-small`` chose rain for 94 of 100 Rain100L centre crops
    of 96x96 but for 7 of 100 at 320x320 (docs/journal/methods.md). The crops cost one more encoder pass over at most
    9 crops.
    """

    def __init__(self, inp_channels: int = 3, dim: int = 42, num_blocks: Sequence[int] = (2, 3, 3, 4),
                 num_refinement_blocks: int = 2, heads: Sequence[int] = (1, 2, 4, 8),
                 ffn_expansion_factor: float = 2.66, bias: bool = False, LayerNorm_type: str = "WithBias",  # noqa: N803
                 bands: int = 8, selector_hidden: int = 128, head_hidden: int = 32, kernel_size: int = 5,
                 unshuffle: int = 1, full_channels: int = 4, routing: str = "soft",
                 task: str | None = None, frequency: bool = True, selector_crop: int = 0) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need one entry per level (4)")
        routing_weights(torch.zeros(1, len(TASKS)), task, routing)  # validates both now, not at the first image
        self.task = check_task(task)
        self.routing = routing
        if selector_crop < 0 or selector_crop % (8 * unshuffle):
            raise ValueError(f"selector_crop must be 0 or a multiple of {8 * unshuffle}, not {selector_crop}")
        self.selector_crop = selector_crop
        self.unshuffle = unshuffle
        self.dim = dim
        self.size_multiple = 8 * unshuffle
        self.last_choice: list[str] = []
        self.last_weights: torch.Tensor | None = None
        ffn, norm = ffn_expansion_factor, LayerNorm_type
        full = dim if unshuffle == 1 else full_channels  # channels of the full-resolution embedding

        def stage(n: int, width: int, level: int) -> GuidedStage:
            return GuidedStage(n, width, heads[level], ffn, bias, norm)

        # Feature enhancement: embedding, then a U-Net of EFMA blocks guided by one FAM per level.
        self.patch_embed = OverlapPatchEmbed(inp_channels, full)
        self.fam = nn.ModuleList([
            FrequencyAuxiliary(full, (dim, dim * 2), bands, downscale=unshuffle),  # encoder 1; decoder 1
            FrequencyAuxiliary(dim * 2, (dim * 2,), bands),  # levels 2 and 3: encoder and decoder share
            FrequencyAuxiliary(dim * 4, (dim * 4,), bands),
            FrequencyAuxiliary(dim * 8, (dim * 8,), bands),  # bottleneck
        ]) if frequency else None
        self.to_levels = (nn.Identity() if unshuffle == 1 else
                          nn.Sequential(nn.PixelUnshuffle(unshuffle), nn.Conv2d(full * unshuffle ** 2, dim, 1)))
        self.encoder_level1 = stage(num_blocks[0], dim, 0)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(num_blocks[1], dim * 2, 1)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(num_blocks[2], dim * 4, 2)
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(num_blocks[3], dim * 8, 3)

        self.selector = DegradationSelector(dim * 8, 4 * bands if frequency else 0, selector_hidden)

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(num_blocks[2], dim * 4, 2)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(num_blocks[1], dim * 2, 1)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(num_blocks[0], dim * 2, 0)  # keeps the concatenated 2C, as Restormer
        self.refinement = stage(num_refinement_blocks, dim * 2, 0)

        # Dynamic processing: physically-guided heads, applied to the full-resolution image.
        self.restoration = PhysicalHeads(dim * 2, head_hidden, kernel_size, scale=unshuffle)

    @property
    def bytes_per_pixel(self) -> int:
        """Peak activation memory of a float32 inference per input pixel; derain.inference.restore.auto_tile sizes tiles
        from it. Measured as the peak-RSS delta of one forward in a fresh one-thread process: ``fsdrnet``
        (dim 42) 11,600 at 256x256 and 8,780 at 512x512; ``fsdrnet-small`` (dim 24, unshuffle 4) 930 and 685.
        The larger (256x256) figure is kept, scaled with the width for other configurations."""
        if self.unshuffle == 1:
            return 12_000 * self.dim // 42
        return 1_000 * self.dim // 24

    # Tells the training engine that this network has a degradation selector (its cross-entropy term applies).
    has_selector = True

    def forward(self, x: torch.Tensor, details: bool = False) -> torch.Tensor | FSDRNetOutput:
        """The restored image (B, 3, H, W), routed as :attr:`task` and :attr:`routing` say; with
        ``details=True`` the whole :class:`FSDRNetOutput` (a DDP-wrapped model is only reachable through
        ``forward``, so that is how the training loop gets the logits)."""
        out = self.forward_with_logits(x)
        return out if details else out.image

    def forward_with_logits(self, x: torch.Tensor, task: str | None = None,
                            routing: str | None = None) -> FSDRNetOutput:
        """Restored image, selector logits and routing weights. ``task``/``routing`` override the model's
        attributes for this call (``task=None`` keeps :attr:`task`; ``"auto"`` uses the selector)."""
        task = self.task if task is None else check_task(task)
        enc = self._encode(x)
        crop = self.selector_crop
        if task is None and crop and max(x.shape[-2:]) > crop:
            logits = self._crop_logits(x, crop)
        else:
            logits = self._select(enc)
        weights = routing_weights(logits, task, routing or self.routing)
        g1, g2, g3, _ = enc.guidance
        latent, enc1, enc2, enc3 = enc.latent, enc.enc1, enc.enc2, enc.enc3

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)), _guide(g3, 0))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)), _guide(g2, 0))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1), _guide(g1, 1))
        feat = self.refinement(dec1, _guide(g1, 1))

        image = self.restoration(x, feat, weights).to(x.dtype)
        self.last_weights = weights.detach().cpu()
        self.last_choice = [TASKS[i] for i in self.last_weights.argmax(dim=1).tolist()]
        return FSDRNetOutput(image, logits, weights)

    def _encode(self, x: torch.Tensor) -> _Encoded:
        """Feature enhancement up to the bottleneck: every level's guidance and encoder output."""
        full = self.patch_embed(x)
        g1 = self._frequency(0, full)
        enc1 = self.encoder_level1(self.to_levels(full), _guide(g1, 0))
        x2 = self.down1_2(enc1)
        g2 = self._frequency(1, x2)
        enc2 = self.encoder_level2(x2, _guide(g2, 0))
        x3 = self.down2_3(enc2)
        g3 = self._frequency(2, x3)
        enc3 = self.encoder_level3(x3, _guide(g3, 0))
        x4 = self.down3_4(enc3)
        g4 = self._frequency(3, x4)
        latent = self.latent(x4, _guide(g4, 0))
        return _Encoded(enc1, enc2, enc3, latent, (g1, g2, g3, g4))

    def _select(self, enc: _Encoded) -> torch.Tensor:
        """Selector logits (B, len(TASKS)) from the bottleneck and the band energies of every level."""
        return self.selector(enc.latent, [g.bands for g in enc.guidance if g is not None])

    def _crop_logits(self, x: torch.Tensor, crop: int) -> torch.Tensor:
        """Log of the normalised geometric mean of the selector's probabilities over crops of ``x``."""
        b, _, h, w = x.shape
        ch, cw = min(crop, h), min(crop, w)  # sides stay multiples of size_multiple: x is padded to them
        tops = _spread(h - ch, round(h / ch))
        lefts = _spread(w - cw, round(w / cw))
        crops = torch.cat([x[..., t:t + ch, s:s + cw] for t in tops for s in lefts])  # (n * B, 3, ch, cw)
        log_p = self._select(self._encode(crops)).float().log_softmax(-1)
        return log_p.view(-1, b, log_p.shape[-1]).mean(0)

    def _frequency(self, level: int, x: torch.Tensor) -> FrequencyOutput | None:
        """The level's frequency auxiliary module on ``x``; None in the ablation without them."""
        return None if self.fam is None else self.fam[level](x)


class _Encoded(NamedTuple):
    """What the encoder hands to the selector and the decoder."""

    enc1: torch.Tensor
    enc2: torch.Tensor
    enc3: torch.Tensor
    latent: torch.Tensor
    guidance: tuple[FrequencyOutput | None, ...]  # FAM outputs of levels 1..4 (None without them)


def _spread(span: int, count: int, most: int = 3) -> list[int]:
    """``min(count, most)`` (at least 1) offsets spread evenly over ``0 .. span``."""
    n = max(1, min(count, most))
    return [round(i * span / (n - 1)) for i in range(n)] if n > 1 else [span // 2]


def _guide(out: FrequencyOutput | None, index: int) -> Guidance | None:
    """The ``index``-th guidance of a FAM's output (None without frequency modules: unguided EFMA blocks)."""
    return None if out is None else out.guides[index]
