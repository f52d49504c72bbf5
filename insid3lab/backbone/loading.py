"""Load any DINOv3 ViT checkpoint into one ``DinoV3Backbone``; save it back in Meta's format."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from insid3lab.backbone.archs import META_ARCHS, MetaArch, config_for_arch, get_arch, match_released_arch
from insid3lab.backbone.convert import (
    CheckpointFormatError,
    detect_format,
    hf_to_meta_state_dict,
    infer_meta_arch,
    meta_to_hf_state_dict,
    unwrap_state_dict,
)
from insid3lab.backbone.devices import resolve_device, resolve_dtype
from insid3lab.backbone.hub import load_from_hub
from insid3lab.backbone.model import DinoV3Backbone, default_rope_periods
from insid3lab.backbone.random import RANDOM_SCHEME, parse_random_source, random_backbone
from insid3lab.core.files import json_text, write_atomic

__all__ = [
    "load_backbone",
    "parse_random_source",
    "save_meta_checkpoint",
    "save_pretrained",
    "random_backbone",
    "resolve_device",
    "resolve_dtype",
    "meta_to_transformers",
    "transformers_to_meta",
]

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
_RELEASED = "vits16, vits16plus, vitb16, vitl16 (LVD-1689M and SAT-493M), vitl16plus, vith16plus, vit7b16"
# The config key under which save_pretrained() records the RoPE periods in use.
PERIODS_CONFIG_KEY = "insid3lab_rope_periods"


def _resolve_periods(rope_periods, head_dim: int, base: float, checkpoint_periods: Tensor | None) -> Tensor:
    """Pick the RoPE periods (see :func:`load_backbone`)."""
    if isinstance(rope_periods, (torch.Tensor, list, tuple)):
        return torch.as_tensor(rope_periods, dtype=torch.float32)
    allowed = "'auto', 'checkpoint', 'bf16', 'fp32' or a tensor of periods"
    if not isinstance(rope_periods, str):
        raise ValueError(f"rope_periods={rope_periods!r}: allowed {allowed}")
    if rope_periods == "auto":
        if checkpoint_periods is not None:
            return checkpoint_periods.float()
        return default_rope_periods(head_dim, base, bf16=True)
    if rope_periods == "checkpoint":
        if checkpoint_periods is None:
            raise ValueError(
                "rope_periods='checkpoint': this checkpoint stores no RoPE periods; use 'auto', 'bf16' or 'fp32'"
            )
        return checkpoint_periods.float()
    if rope_periods == "bf16":
        return default_rope_periods(head_dim, base, bf16=True)
    if rope_periods == "fp32":
        return default_rope_periods(head_dim, base, bf16=False)
    raise ValueError(f"rope_periods={rope_periods!r}: allowed {allowed}")


_ROPE_CHOICES = ("auto", "checkpoint", "bf16", "fp32")


def _check_rope_periods_arg(rope_periods) -> None:
    """Reject an unknown ``rope_periods`` before anything is loaded."""
    if isinstance(rope_periods, (torch.Tensor, list, tuple)):
        return
    if not (isinstance(rope_periods, str) and rope_periods in _ROPE_CHOICES):
        raise ValueError(
            f"rope_periods={rope_periods!r}: allowed 'auto', 'checkpoint', 'bf16', 'fp32' or a tensor of periods"
        )


def _config_arch_name(cfg: DINOv3ViTConfig, arch: str | None, source: str) -> str | None:
    """The architecture name of a transformers config; with ``arch`` given, the config must match it."""
    got = (
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        bool(cfg.use_gated_mlp),
    )
    if arch is not None:
        base = get_arch(arch)
        want = base.sizes
        if got != want:
            raise CheckpointFormatError(
                f"{source}: the model (hidden_size, layers, heads, intermediate_size, gated) = {got} "
                f"does not match the {base.name} architecture {want} given by arch={arch!r}"
            )
        return base.name
    found = match_released_arch(*got)
    return found.name if found is not None else None


def _build_model(config: DINOv3ViTConfig, hf_sd: dict[str, Tensor], source: str) -> DINOv3ViTModel:
    """Instantiate ``DINOv3ViTModel`` without random initialisation and load ``hf_sd`` strictly."""
    with torch.device("meta"):
        model = DINOv3ViTModel(config)
    missing, unexpected = [], []
    try:
        result = model.load_state_dict(hf_sd, strict=False, assign=True)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    except RuntimeError as e:  # shape mismatch
        raise CheckpointFormatError(f"{source}: the weights do not fit the architecture: {e}") from e
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{source}: the weights do not fit a DINOv3ViTModel: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    # Non-persistent buffers are still on the meta device; DinoV3Backbone sets inv_freq.
    model.rope_embeddings.register_buffer(
        "inv_freq", torch.ones(config.hidden_size // config.num_attention_heads // 4), persistent=False
    )
    return model.eval()


def meta_to_transformers(
    sd: dict[str, Tensor], *, filename: str = "", arch: str | None = None
) -> tuple[DINOv3ViTModel, Tensor, dict[str, Tensor], MetaArch]:
    """Build a transformers ``DINOv3ViTModel`` from a Meta state dict.

    Returns the model, the checkpoint's RoPE periods, Meta-only extras and the architecture.
    """
    source = filename or "<state dict>"
    if detect_format(sd, source) != "meta":
        raise CheckpointFormatError(f"{source}: expected Meta key names (cls_token, blocks.N...)")
    a = infer_meta_arch(sd, filename=os.path.basename(filename), arch=arch)
    try:
        hf_sd, periods, extras, key_bias = meta_to_hf_state_dict(sd)
    except KeyError as e:
        raise CheckpointFormatError(
            f"{source}: incomplete DINOv3 ViT checkpoint: tensor {e.args[0]!r} is missing"
        ) from e
    config = config_for_arch(a, key_bias=key_bias)
    model = _build_model(config, hf_sd, source)
    return model, periods, extras, a


def _config_from_hf_state_dict(sd: dict[str, Tensor], arch: str | None, source: str) -> DINOv3ViTConfig:
    """Infer a ``DINOv3ViTConfig`` for a transformers-keyed state dict that came without config.json."""
    sd = {re.sub(r"^layer\.", "model.layer.", k): v for k, v in sd.items()}
    needed = [
        "embeddings.cls_token",
        "embeddings.register_tokens",
        "embeddings.patch_embeddings.weight",
        "model.layer.0.mlp.up_proj.weight",
    ]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointFormatError(
            f"{source}: a transformers DINOv3 ViT state dict needs {missing}, which this one lacks"
        )
    C = sd["embeddings.cls_token"].shape[-1]
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"model\.layer\.(\d+)\.", k))})
    gated = "model.layer.0.mlp.gate_proj.weight" in sd
    inter = sd["model.layer.0.mlp.up_proj.weight"].shape[0]
    if arch is not None:
        heads = get_arch(arch).num_heads
    else:
        # A state dict does not record the head count: take a released architecture's when the
        # sizes are one's, else 64-dim heads (every released DINOv3 ViT but the 7B).
        released = [
            a
            for a in META_ARCHS.values()
            if a.name != "tiny" and (a.embed_dim, a.depth, a.intermediate_size, a.gated) == (C, depth, inter, gated)
        ]
        heads = released[0].num_heads if released else max(1, C // 64)
    return config_for_arch(
        MetaArch(
            "custom",
            C,
            depth,
            heads,
            inter / C,
            "swiglu" if gated else "mlp",
            qkv_bias="model.layer.0.attention.q_proj.bias" in sd,
            patch_size=sd["embeddings.patch_embeddings.weight"].shape[-1],
            n_storage_tokens=sd["embeddings.register_tokens"].shape[1],
            ffn_hidden=inter,
        ),
        key_bias="model.layer.0.attention.k_proj.bias" in sd,
    )


TRUST_PICKLE_ENV = "INSID3LAB_TRUST_PICKLE"
# First bytes of the files torch.load reads: a zip archive (torch >= 1.6) or a pickle (protocol >= 2).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _trust_pickle(trust_pickle: bool | None) -> bool:
    if trust_pickle is not None:
        return bool(trust_pickle)
    return os.environ.get(TRUST_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _read_state_dict(path: Path, *, trust_pickle: bool | None = None) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, with one-line errors that name it.

    ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)``, which admits
    tensors and plain containers only; a file that pickles other objects is refused unless
    ``trust_pickle`` (or ``$INSID3LAB_TRUST_PICKLE=1``) says to run its pickle code.
    """
    not_ckpt = f"{path}: cannot be read as a checkpoint: it is not a DINOv3 checkpoint"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any reader failure means "not a checkpoint"
            raise CheckpointFormatError(f"{not_ckpt} (not a valid safetensors file: {type(e).__name__})") from None
        return unwrap_state_dict(obj, str(path))
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointFormatError(f"{path}: cannot be read ({type(e).__name__}: {e.strerror or e})") from None
    if not head.startswith(_TORCH_MAGIC):
        raise CheckpointFormatError(f"{not_ckpt} (neither a PyTorch nor a safetensors file)")
    trusted = _trust_pickle(trust_pickle)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        if not trusted and "Unsupported global" in str(e):
            raise CheckpointFormatError(
                f"{path}: the checkpoint pickles Python objects besides tensors, and loading it would run code "
                f"from the file; if you trust its source, pass trust_pickle=True to load_backbone or set "
                f"{TRUST_PICKLE_ENV}=1"
            ) from None
        raise CheckpointFormatError(f"{not_ckpt} (its PyTorch data is damaged or of another kind)") from None
    except Exception as e:  # noqa: BLE001 - any reader failure means "not a checkpoint"
        raise CheckpointFormatError(f"{not_ckpt} (unreadable: {type(e).__name__})") from None
    return unwrap_state_dict(obj, str(path))


def _config_periods(value, cfg_file: Path) -> Tensor:
    """The RoPE periods recorded in a config.json: a list of positive finite numbers."""
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    t = torch.tensor(value, dtype=torch.float32) if ok else None
    if t is None or not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise CheckpointFormatError(
            f"{cfg_file}: {PERIODS_CONFIG_KEY} must be a list of positive numbers (the RoPE periods); "
            f"got {str(value)[:80]}"
        )
    return t


def _looks_like_hub_id(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", s)) and not s.endswith(_CHECKPOINT_SUFFIXES)


def load_backbone(
    source,
    *,
    arch: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    rope_periods: str | Tensor = "auto",
    trust_pickle: bool | None = None,
) -> DinoV3Backbone:
    """Load DINOv3 ViT weights from any supported source into a :class:`DinoV3Backbone`.

    Args:
        source: one of
            * a Hugging Face model id (``"facebook/dinov3-vitl16-pretrain-lvd1689m"``), loaded with
              transformers' ``from_pretrained`` (the usual cache, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` apply);
            * a local transformers folder (``config.json`` + weights);
            * a Meta checkpoint file (``dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth`` and siblings;
              ``.pth``/``.pt``/``.safetensors`` with Meta key names), converted on load;
            * a single ``.safetensors``/``.pth`` file with transformers key names (config inferred);
            * an already built ``DINOv3ViTModel`` or ``DinoV3Backbone``;
            * ``"random:ARCH[:SEED]"`` (``random:tiny``, ``random:vitl16:3``): random weights from
              :func:`random_backbone` (seed 0 when omitted; ``random:`` alone is ``tiny``).
        arch: architecture name (``vits16``, ``vitb16``, ``vitl16``, ``vitl16plus``, ``vith16plus``,
            ``vit7b16``, ...) overriding what the file name says; the weights must fit it.
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device.
        dtype: float32 (default), bfloat16 or float16.
        rope_periods: which RoPE periods to run with.
            ``"auto"``: the checkpoint's own (Meta files store ``rope_embed.periods``); for transformers
            checkpoints, which store none, Meta's default periods rounded to bfloat16, which reproduces
            the released models' numerics. ``"checkpoint"``: require the stored ones. ``"bf16"``: the
            default periods rounded to bfloat16. ``"fp32"``: the default periods in float32 (what
            transformers computes on its own). Or a (head_dim/4,) tensor.
        trust_pickle: ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)``,
            which admits tensors and plain containers only. ``True`` reads a checkpoint that pickles
            other Python objects too, which runs code from the file: only for files from a source you
            trust. Default (None): ``$INSID3LAB_TRUST_PICKLE`` (``1`` to trust), else False.

    A hub id is looked up in the local Hugging Face cache first; the hub is contacted only when a
    connection to it opens within a few seconds, so an unreachable hub fails at once with the ways
    forward (Meta's download page, or ``random:vits16`` weights to try the mechanics).

    Returns:
        A :class:`DinoV3Backbone` in eval mode on ``device``.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    _check_rope_periods_arg(rope_periods)
    if arch is not None:
        get_arch(arch)
    if isinstance(source, DinoV3Backbone):
        bb = source
        if arch is not None:
            _config_arch_name(bb.config, arch, bb.source)
        if not (isinstance(rope_periods, str) and rope_periods in ("auto", "checkpoint")):
            bb.set_rope_periods(_resolve_periods(rope_periods, bb.head_dim, bb.config.rope_theta, bb.rope_periods))
        return bb.to(device=dev, dtype=dt)
    if isinstance(source, DINOv3ViTModel):
        cfg = source.config
        hd = cfg.hidden_size // cfg.num_attention_heads
        periods = _resolve_periods(rope_periods, hd, cfg.rope_theta, None)
        name = _config_arch_name(cfg, arch, "<DINOv3ViTModel>")
        bb = DinoV3Backbone(source, rope_periods=periods, source="<DINOv3ViTModel>", arch_name=name)
        return bb.to(device=dev, dtype=dt)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a hub id, a folder, a checkpoint file path or a DINOv3ViTModel; got {type(source).__name__}"
        )
    src = str(source)
    if isinstance(source, str) and source.startswith(RANDOM_SCHEME):
        arch_name, seed = parse_random_source(source)
        return load_backbone(
            random_backbone(arch_name, seed=seed), arch=arch, device=dev, dtype=dt, rope_periods=rope_periods
        )
    path = Path(src).expanduser()
    stored_periods: Tensor | None = None
    extras: dict[str, Tensor] = {}
    arch_name = arch
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            ckpts = sorted(p.name for p in path.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
            hint = f" It holds {', '.join(ckpts[:3])}: pass that file's path instead." if ckpts else ""
            raise FileNotFoundError(
                f"{path}: a transformers folder needs a config.json, and this folder has none.{hint}"
            )
        try:
            cfg_dict = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointFormatError(f"{cfg_file}: not valid JSON ({e})") from e
        if cfg_dict.get("model_type") != "dinov3_vit":
            raise CheckpointFormatError(
                f"{cfg_file}: model_type is {cfg_dict.get('model_type')!r}; insid3lab needs a DINOv3 ViT ('dinov3_vit')"
            )
        if PERIODS_CONFIG_KEY in cfg_dict:
            stored_periods = _config_periods(cfg_dict[PERIODS_CONFIG_KEY], cfg_file)
        try:
            model = DINOv3ViTModel.from_pretrained(str(path), dtype=torch.float32)
        except Exception as e:  # noqa: BLE001
            raise CheckpointFormatError(
                f"{path}: transformers could not load this folder ({type(e).__name__}: {e})"
            ) from e
    elif path.is_file():
        sd = _read_state_dict(path, trust_pickle=trust_pickle)
        fmt = detect_format(sd, str(path))
        if fmt == "meta":
            model, stored_periods, extras, a = meta_to_transformers(sd, filename=str(path), arch=arch)
            arch_name = a.name
        else:
            config = _config_from_hf_state_dict(sd, arch, str(path))
            sd = {re.sub(r"^layer\.", "model.layer.", k): v for k, v in sd.items()}
            model = _build_model(config, sd, str(path))
    elif _looks_like_hub_id(src) and not src.startswith((".", "/", "~")):
        model = load_from_hub(src)
    else:
        raise FileNotFoundError(
            f"source={src!r}: no such file or folder, and not a Hugging Face model id (owner/name). "
            "Give a transformers folder, a Meta checkpoint (.pth/.safetensors) or a hub id such as "
            "'facebook/dinov3-vitl16-pretrain-lvd1689m'."
        )
    cfg = model.config
    if arch_name is None or arch is not None:
        arch_name = _config_arch_name(cfg, arch, src)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    periods = _resolve_periods(rope_periods, head_dim, cfg.rope_theta, stored_periods)
    bb = DinoV3Backbone(model, rope_periods=periods, source=src, meta_extras=extras, arch_name=arch_name)
    return bb.to(device=dev, dtype=dt)


def transformers_to_meta(backbone: DinoV3Backbone) -> dict[str, Tensor]:
    """The Meta state dict of a backbone (tensors copied, no arithmetic): the inverse of loading a Meta file."""
    sd = {k: v.detach().cpu() for k, v in backbone.model.state_dict().items()}
    extras = {k: v.detach().cpu() for k, v in backbone.meta_extras.items()}
    return hf_to_meta_state_dict(sd, backbone.rope_periods.clone(), extras)


def save_meta_checkpoint(backbone: DinoV3Backbone, path: str | os.PathLike) -> Path:
    """Write ``backbone`` as a Meta checkpoint (``.pth``/``.pt`` with torch.save, or ``.safetensors``).

    Loading the file back with :func:`load_backbone` gives bitwise-equal tensors.
    """
    path = Path(path)
    if path.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"{path}: the file name must end in .pth, .pt or .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in transformers_to_meta(backbone).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path), metadata={"format": "pt", "producer": "insid3lab"})
    else:
        torch.save(sd, str(path))
    return path


def save_pretrained(backbone: DinoV3Backbone, folder: str | os.PathLike) -> Path:
    """Write ``backbone`` as a transformers folder (config.json + model.safetensors).

    The RoPE periods in use are recorded in config.json under ``insid3lab_rope_periods``
    (transformers ignores the key) so that :func:`load_backbone` restores them exactly.
    """
    folder = Path(folder)
    backbone.model.save_pretrained(str(folder))
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg[PERIODS_CONFIG_KEY] = [float(v) for v in backbone.rope_periods.tolist()]
    write_atomic(cfg_file, json_text(cfg, sort_keys=True))
    return folder
