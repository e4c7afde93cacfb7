"""Which registered network a bare state_dict belongs to, read from its key names and tensor shapes.

A checkpoint written by ``derain train`` names its network; the official ``deraining.pth``, a DMSR release or
a state_dict saved by a script does not. :func:`detect_model` reads the hyperparameters that shape the weights
(Restormer's dim, blocks, heads and FFN width, FastDerain's widths and blocks, DMSR's base channels and
residual blocks, MSPFN's fusion steps and RCABs, ...) from the keys, picks the registered name whose default
configuration agrees best, and then checks the guess: the network built from it on the ``meta`` device (no
memory, no initialisation) must take exactly these keys and shapes. A guess that does not fit is never
returned, so a wrong network is never loaded with part of its weights.

Hyperparameters that leave no trace in the weights (MSPFN's ``zero_init_rain``, DMSR's test window,
FSDRNet's routing) keep the chosen model's defaults.
"""
from __future__ import annotations

import inspect
from math import isqrt
from typing import Any, Callable, Mapping

import torch

from derain.errors import DerainError
from derain.models.registry import build, get_spec, list_specs

Shapes = dict[str, tuple[int, ...]]


def _count(s: Shapes, prefix: str) -> int:
    """How many numbered children ``prefix.0``, ``prefix.1``, ... have weights."""
    found = set()
    for key in s:
        if key.startswith(prefix + "."):
            head = key[len(prefix) + 1:].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return len(found)


def _unshuffle_factor(channels: int, image_channels: int = 3) -> int | None:
    factor = isqrt(channels // image_channels)
    return factor if factor >= 1 and image_channels * factor ** 2 == channels else None


def _restormer_core(s: Shapes, p: str = "", attn: str = "attn") -> dict[str, Any]:
    """The Restormer-shaped part of a configuration (Restormer, its small variant, FSDRNet)."""
    levels = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
    dim = s[f"{p}encoder_level1.0.norm1.body.weight"][0]
    hidden = s[f"{p}encoder_level1.0.ffn.project_out.weight"][1]
    widths = [(s[f"{p}{level}.0.norm1.body.weight"][0], s[f"{p}{level}.0.ffn.project_out.weight"][1])
              for level in levels]
    # Each FFN's hidden width is int(width * factor): the published 2.66 where it fits, else a factor that
    # gives every level's width.
    ffn = next((f for f in (2.66, hidden / dim, (hidden + 0.5) / dim) if all(int(c * f) == h for c, h in widths)),
               hidden / dim)
    return dict(
        dim=dim,
        num_blocks=[_count(s, p + level) for level in levels],
        num_refinement_blocks=_count(s, p + "refinement"),
        heads=[s[f"{p}{level}.0.{attn}.temperature"][0] for level in levels],
        ffn_expansion_factor=ffn,
        bias=f"{p}encoder_level1.0.{attn}.qkv.bias" in s,
        LayerNorm_type="WithBias" if f"{p}encoder_level1.0.norm1.body.bias" in s else "BiasFree",
    )


def _restormer(s: Shapes) -> dict[str, Any] | None:
    if "output.weight" not in s or "encoder_level1.0.attn.temperature" not in s:
        return None
    config = dict(inp_channels=s["patch_embed.proj.weight"][1], out_channels=s["output.weight"][0],
                  **_restormer_core(s))
    if "skip_conv.weight" in s:
        config["dual_pixel_task"] = True
    return config


def _restormer_small(s: Shapes) -> dict[str, Any] | None:
    if "inner.output.weight" not in s or "inner.encoder_level1.0.attn.temperature" not in s:
        return None
    factor = _unshuffle_factor(s["inner.patch_embed.proj.weight"][1])
    return None if factor is None else dict(factor=factor, **_restormer_core(s, "inner."))


def _fastderain(s: Shapes) -> dict[str, Any] | None:
    if "stem.weight" not in s or "head.weight" not in s or "encoders.0.0.conv1.bias" not in s:
        return None
    full = "full_stem.weight" in s
    in_channels = s["full_stem.weight"][1] if full else 3
    unshuffle = _unshuffle_factor(s["stem.weight"][1], in_channels)
    if unshuffle is None:
        return None
    levels = _count(s, "encoders")
    config: dict[str, Any] = dict(
        in_channels=in_channels,
        widths=[s["stem.weight"][0]] + [s[f"downs.{i}.weight"][0] for i in range(levels - 1)],
        enc_blocks=[_count(s, f"encoders.{i}") for i in range(levels)],
        dec_blocks=[_count(s, f"decoders.{i}") for i in range(levels - 1)],
        unshuffle=unshuffle,
        rep=any(k.endswith(".weight3") for k in s),
    )
    if full:
        config.update(full_width=s["full_stem.weight"][0],
                      full_blocks=[_count(s, "full_encoder"), _count(s, "full_decoder")])
    return config


def _experts(s: Shapes) -> dict[str, Any] | None:
    """The rain experts: two FastDerain configurations under ``light.`` and ``general.``, and the gate's width.
    What the weights do not show (``low_precision_residuals``, the gate's scale) keeps the registry's values."""
    if "gate.entry.weight" not in s:
        return None
    defaults = get_spec("fastderain-experts").default_config
    config: dict[str, Any] = {}
    for part in ("light", "general"):
        found = _fastderain({k[len(part) + 1:]: v for k, v in s.items() if k.startswith(part + ".")})
        if found is None:
            return None
        config[part] = {**defaults[part], **found}
    config["gate_width"] = s["gate.entry.weight"][0]
    return config


def _dmsr_core(s: Shapes, p: str = "") -> dict[str, Any]:
    last = _count(s, f"{p}Encoder.0.layers") - 1  # only a stage's last residual block has the MPSRM
    pools = _count(s, f"{p}Encoder.0.layers.{last}.MPSRM.convs")
    return dict(num_res=_count(s, f"{p}Encoder.0.layers"), base_channel=s[f"{p}feat_extract.0.main.0.weight"][0],
                pool_sizes=[2 ** i for i in reversed(range(pools))])


def _dmsr(s: Shapes) -> dict[str, Any] | None:
    if "feat_extract.0.main.0.weight" not in s or "Encoder.0.layers.0.conv1.main.0.weight" not in s:
        return None
    config = _dmsr_core(s)
    if config["pool_sizes"] == [4, 2, 1]:  # the builder's own default, not part of the registered configs
        del config["pool_sizes"]
    if s["feat_extract.0.main.0.weight"][1] != 3:
        config["image_channels"] = s["feat_extract.0.main.0.weight"][1]
    return config


def _dmsr_small(s: Shapes) -> dict[str, Any] | None:
    if "inner.feat_extract.0.main.0.weight" not in s:
        return None
    factor = _unshuffle_factor(s["inner.feat_extract.0.main.0.weight"][1])
    return None if factor is None else dict(factor=factor, **_dmsr_core(s, "inner."))


def _mspfn_core(s: Shapes, p: str = "") -> dict[str, Any]:
    memory = f"{p}residual_memory."
    return dict(channels=s[f"{p}rnn1.conv.weight"][0], iterations=_count(s, f"{p}fusion"),
                rcabs=[_count(s, f"{p}fusion.0.branch{b}.rcabs") for b in (4, 2, 1)],
                lstm_hidden=[s[f"{memory}lstm_group{g}.conv.weight"][0] // 4 for g in ("4", "2", "")])


def _mspfn(s: Shapes) -> dict[str, Any] | None:
    if "rnn1.conv.weight" not in s or "fusion.0.branch4.down.conv.weight" not in s:
        return None
    config = _mspfn_core(s)
    if s["rnn1.conv.weight"][1] != 3:
        config["image_channels"] = s["rnn1.conv.weight"][1]
    return config


def _mspfn_small(s: Shapes) -> dict[str, Any] | None:
    if "inner.rnn1.conv.weight" not in s:
        return None
    factor = _unshuffle_factor(s["inner.rnn1.conv.weight"][1])
    return None if factor is None else dict(factor=factor, **_mspfn_core(s, "inner."))


def _rain2avoid_unet(s: Shapes) -> dict[str, Any] | None:
    if "enc_1.conv.weight" not in s or "dec_1.conv.weight" not in s:
        return None
    width, in_channels = s["enc_1.conv.weight"][:2]
    return dict(in_channels=in_channels, width=width)


def _fsdrnet(s: Shapes) -> dict[str, Any] | None:
    if "encoder_level1.0.attn.channel_mixer.temperature" not in s or "patch_embed.proj.weight" not in s:
        return None
    config = _restormer_core(s, attn="attn.channel_mixer")
    embed_out, config["inp_channels"] = s["patch_embed.proj.weight"][:2]
    unshuffle = 1
    to_levels = next((k for k in s if k.startswith("to_levels.") and k.endswith(".weight")), None)
    if to_levels is not None:  # unshuffled trunk: patch_embed is the thin full-resolution embedding
        config["full_channels"] = embed_out
        unshuffle = _unshuffle_factor(s[to_levels][1], embed_out) or 1
    config["unshuffle"] = unshuffle
    config["frequency"] = any(k.startswith("fam.") for k in s)
    if "fam.0.guides.0.film.0.weight" in s:
        config["bands"] = s["fam.0.guides.0.film.0.weight"][1]
    if "selector.mlp.1.weight" in s:
        config["selector_hidden"] = s["selector.mlp.1.weight"][0]
    if "restoration.heads.rain.reduce.weight" in s:
        config["head_hidden"] = s["restoration.heads.rain.reduce.weight"][0]
    if "restoration.heads.noise.kernels.0.weight" in s:
        config["kernel_size"] = isqrt(s["restoration.heads.noise.kernels.0.weight"][0] // unshuffle ** 2)
    return config


# One reader per builder; every registered model with that builder is a candidate name.
_READERS: dict[str, Callable[[Shapes], dict[str, Any] | None]] = {
    "derain.models.restormer:Restormer": _restormer,
    "derain.models.unshuffled:build_restormer_small": _restormer_small,
    "derain.models.fastderain:FastDerain": _fastderain,
    "derain.models.experts:RainExperts": _experts,
    "derain.models.dmsr:build_dmsr": _dmsr,
    "derain.models.unshuffled:build_dmsr_small": _dmsr_small,
    "derain.models.mspfn:build_mspfn": _mspfn,
    "derain.models.unshuffled:build_mspfn_small": _mspfn_small,
    "derain.models.rain2avoid_unet:R2AUNet": _rain2avoid_unet,
    "derain.models.fsdrnet.network:FSDRNet": _fsdrnet,
}


def _signature_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    """The builder's own keyword defaults (for hyperparameters that a registered config leaves out)."""
    return {name: p.default for name, p in inspect.signature(builder).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _differs(default: Any, value: Any) -> bool:
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(default) != list(value)
    return default != value


def _fits(name: str, options: dict[str, Any], state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the network ``name`` built with ``options`` takes exactly these keys and shapes (built on the
    meta device: no memory, no initialisation; its own load_state_dict, so FastDerain's folded form fits)."""
    try:
        with torch.device("meta"):
            net = build(name, **options)
            net.load_state_dict({k: torch.empty(v.shape, device="meta", dtype=v.dtype)
                                 for k, v in state.items()}, strict=True)
    except (DerainError, RuntimeError, ValueError, TypeError, KeyError, IndexError):
        return False
    return True


def detect_model(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """``(registry name, options)`` of the network that ``state`` (a bare state_dict, wrapper prefixes already
    removed) holds, such that ``build(name, **options)`` loads it strictly; a :class:`DerainError` otherwise.

    ``options`` are the hyperparameters that differ from the chosen model's default configuration (empty when
    the checkpoint is that model exactly).
    """
    shapes: Shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    specs = list_specs()
    for builder, reader in _READERS.items():
        try:
            found = reader(shapes)
        except (KeyError, IndexError, ValueError):
            found = None
        candidates = [spec for spec in specs if spec.builder == builder]
        if found is None or not candidates:
            continue

        base = _signature_defaults(candidates[0].resolve())
        by_name = {}
        for spec in candidates:
            defaults = {**base, **spec.default_config}
            by_name[spec.name] = {k: v for k, v in found.items() if k not in defaults or _differs(defaults[k], v)}
        # The model whose defaults are exactly these weights' shape (the first by name: dmsr, not dmsr-win128,
        # which differs only in how it tiles); otherwise the family's base model with the differences as options.
        name = next((n for n, options in by_name.items() if not options), candidates[0].name)
        if _fits(name, by_name[name], state):
            return name, by_name[name]
    raise DerainError("the weights match no registered network (see `derain models`); pass --model "
                      "NAME if it is one of them with an unusual configuration")


def describe_detection(name: str, options: Mapping[str, Any]) -> str:
    """One line for the user: ``fastderain (widths=[32, 48, 96, 192], enc_blocks=[1, 2, 3, 4], ...)``."""
    if not options:
        return f"{name} (its default configuration)"
    parts = ", ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in options.items())
    return f"{name} ({parts})"
