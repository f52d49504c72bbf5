"""``DinoV3Backbone``: transformers' ``DINOv3ViTModel`` behind Meta's feature contract."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from insid3lab.core.digest import module_digest

__all__ = ["DinoV3Backbone", "default_rope_periods"]


def default_rope_periods(head_dim: int, base: float = 100.0, *, bf16: bool = True) -> Tensor:
    """Default RoPE periods ``base ** (4 i / head_dim)``, i = 0 .. head_dim/4 - 1, shape (head_dim/4,) float32.

    ``bf16=True``: computed in bfloat16 the way Meta's ``RopePositionEmbedding`` initialises
    them for training (``pos_embed_rope_dtype="bf16"``); these are the values Meta's
    released checkpoints store in ``rope_embed.periods``.
    ``bf16=False``: computed in float32 exactly as transformers' ``DINOv3ViTRopePositionEmbedding``
    does, so that ``1 / periods`` is bitwise its ``inv_freq``.
    """
    if bf16:
        exponents = 2 * torch.arange(head_dim // 4, dtype=torch.bfloat16) / (head_dim // 2)
        return (base**exponents).to(torch.float32)
    exponents = torch.arange(0, 1, 4 / head_dim, dtype=torch.float32)
    if exponents.numel() != head_dim // 4:
        exponents = 4 * torch.arange(head_dim // 4, dtype=torch.float32) / head_dim
    return base**exponents


class DinoV3Backbone(nn.Module):
    """A DINOv3 ViT with Meta's ``get_intermediate_layers`` / ``forward_features`` contract.

    The engine is a transformers ``DINOv3ViTModel`` (``self.model``). Three
    differences from using that model directly are taken care of here:

    * Meta applies the final LayerNorm to *every* requested block with ``norm=True``;
      transformers normalises only ``last_hidden_state`` (its ``hidden_states`` are
      pre-norm, larger by a big factor).
    * The sequence starts with 1 CLS + ``num_register_tokens`` register tokens; they
      are stripped from the patch tokens and returned separately on request.
    * RoPE: transformers recomputes ``inv_freq`` in float32 and saves nothing; this
      wrapper pins ``inv_freq = 1 / rope_periods`` (kept in float32 whatever the
      model dtype) so a Meta checkpoint runs with exactly its own periods.

    Attributes:
        model: the transformers ``DINOv3ViTModel``.
        patch_size: p, pixels per patch side.
        embed_dim: C, the token width.
        num_register_tokens: R (4 for every released DINOv3 ViT).
        num_prefix_tokens: 1 + R.
        n_blocks: number of transformer blocks.
        rope_periods: (head_dim/4,) float32 periods in use.
        source: where the weights came from (a path or a hub id).
        meta_extras: Meta tensors without a transformers counterpart (kept for saving back).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        rope_periods: Tensor | None = None,
        source: str = "<in-memory>",
        meta_extras: dict[str, Tensor] | None = None,
        arch_name: str | None = None,
    ):
        super().__init__()
        self.model = model.eval()
        cfg = model.config
        ps = cfg.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        self.embed_dim = int(cfg.hidden_size)
        self.num_register_tokens = int(cfg.num_register_tokens)
        self.num_prefix_tokens = 1 + self.num_register_tokens
        self.n_blocks = int(cfg.num_hidden_layers)
        self.num_heads = int(cfg.num_attention_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.in_chans = int(cfg.num_channels)
        self.source = source
        self.arch_name = arch_name
        self.meta_extras = dict(meta_extras or {})
        self.cls_norm: nn.Module | None = None
        if "cls_norm.weight" in self.meta_extras:
            self.cls_norm = nn.LayerNorm(self.embed_dim, eps=cfg.layer_norm_eps)
            self.cls_norm.weight.data.copy_(self.meta_extras["cls_norm.weight"])
            self.cls_norm.bias.data.copy_(self.meta_extras["cls_norm.bias"])
        if rope_periods is None:
            rope_periods = 1.0 / model.rope_embeddings.inv_freq.detach().float().cpu()
        self.set_rope_periods(rope_periods)
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ RoPE
    def set_rope_periods(self, periods: Tensor | Sequence[float]) -> None:
        """Use ``periods`` (shape (head_dim/4,)) for RoPE: ``inv_freq = 1 / periods`` in float32."""
        periods = torch.as_tensor(periods, dtype=torch.float32).detach().cpu().clone()
        want = self.head_dim // 4
        if periods.shape != (want,):
            raise ValueError(
                f"rope_periods must have shape ({want},) for head dim {self.head_dim}; got {tuple(periods.shape)}"
            )
        if not bool(torch.all(periods > 0)):
            raise ValueError("rope_periods must be positive")
        self.rope_periods = periods
        rope = self.model.rope_embeddings
        device = rope.inv_freq.device if rope.inv_freq.device.type != "meta" else torch.device("cpu")
        rope.register_buffer("inv_freq", (1.0 / periods).to(device), persistent=False)
        self._fingerprint = None

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        # Keep RoPE frequencies in float32 whatever dtype the weights are cast to.
        rope = self.model.rope_embeddings
        rope.register_buffer("inv_freq", (1.0 / self.rope_periods).to(rope.inv_freq.device), persistent=False)
        self._fingerprint = None
        return out

    # --------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        return self.model.embeddings.patch_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embeddings.patch_embeddings.weight.dtype

    @property
    def config(self):
        return self.model.config

    def fingerprint(self) -> str:
        """A short hex digest identifying the weights and RoPE periods (for caches and run summaries).

        Hashes every tensor's name, shape, dtype and bytes (see :func:`insid3lab.core.digest.module_digest`),
        recomputed on each call so that any change of the weights, in place or not, changes it.
        """
        return module_digest(self, {"rope_periods": self.rope_periods})

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, {self.in_chans}, H, W); got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, H, W) (a batch of normalised images); got {tuple(x.shape)}"
            )
        if x.shape[-2] < self.patch_size or x.shape[-1] < self.patch_size:
            raise ValueError(
                f"x is {x.shape[-2]}x{x.shape[-1]} pixels: both sides must be at least the patch size {self.patch_size}"
            )

    def _run_blocks(self, x: Tensor, take: set[int] | None) -> tuple[list[Tensor], Tensor]:
        """Embeddings and transformer blocks; returns the requested blocks' pre-norm outputs and the last one."""
        m = self.model
        x = x.to(device=self.device, dtype=self.dtype)
        hidden = m.embeddings(x)
        pos = m.rope_embeddings(x)
        outs = []
        last = max(take) if take else self.n_blocks - 1
        for i, layer in enumerate(m.model.layer):
            hidden = layer(hidden, position_embeddings=pos)
            if take is not None and i in take:
                outs.append(hidden)
            if take is not None and i >= last:
                break
        return outs, hidden

    def _norm(self, tokens: Tensor) -> Tensor:
        if self.cls_norm is None:
            return self.model.norm(tokens)
        p = self.num_prefix_tokens
        return torch.cat([self.cls_norm(tokens[:, :p]), self.model.norm(tokens[:, p:])], dim=1)

    # ----------------------------------------------------------- Meta API
    @torch.no_grad()
    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] = 1,
        *,
        reshape: bool = False,
        return_class_token: bool = False,
        return_extra_tokens: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Patch tokens of some blocks, exactly as Meta's ``DinoVisionTransformer`` returns them.

        Args:
            x: (B, 3, H, W) normalised images. Sides that are not multiples of the patch
                size are cropped by the strided patch embedding, as in Meta's code.
            n: an int takes the last ``n`` blocks; a sequence takes those block indices
                (0-based, negative allowed), returned in ascending block order.
            reshape: return (B, C, H//p, W//p) maps instead of (B, N, C) tokens.
            return_class_token: also return the CLS token (B, C) of each block.
            return_extra_tokens: also return the register tokens (B, R, C) of each block.
            norm: apply the final LayerNorm to every returned block (Meta's default);
                ``False`` returns the raw residual stream (transformers' ``hidden_states``).

        Returns:
            A tuple with one entry per block: the patch tokens, or a tuple
            (patches, cls) / (patches, registers) / (patches, cls, registers).
        """
        self._check_input(x)
        if isinstance(n, numbers.Integral):
            n = int(n)
            if not 1 <= n <= self.n_blocks:
                raise ValueError(f"n={n}: must be between 1 and the number of blocks ({self.n_blocks})")
            blocks = list(range(self.n_blocks - n, self.n_blocks))
        else:
            blocks = []
            for i in n:
                j = int(i) + self.n_blocks if int(i) < 0 else int(i)
                if not 0 <= j < self.n_blocks:
                    raise ValueError(f"n contains block index {i}: allowed -{self.n_blocks}..{self.n_blocks - 1}")
                blocks.append(j)
            if not blocks:
                raise ValueError("n is an empty sequence: give at least one block index")
        if len(set(blocks)) != len(blocks):
            raise ValueError(f"n={list(n)} names a block twice")
        outputs, _ = self._run_blocks(x, set(blocks))  # ascending block order, as Meta returns them
        if norm:
            outputs = [self._norm(o) for o in outputs]
        p = self.num_prefix_tokens
        class_tokens = [o[:, 0] for o in outputs]
        extra_tokens = [o[:, 1:p] for o in outputs]
        patches = [o[:, p:] for o in outputs]
        if reshape:
            B, _, H, W = x.shape
            h, w = H // self.patch_size, W // self.patch_size
            patches = [t.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous() for t in patches]
        if return_class_token and return_extra_tokens:
            return tuple(zip(patches, class_tokens, extra_tokens))
        if return_class_token:
            return tuple(zip(patches, class_tokens))
        if return_extra_tokens:
            return tuple(zip(patches, extra_tokens))
        return tuple(patches)

    @torch.no_grad()
    def forward_features(self, x: Tensor) -> dict[str, Tensor | None]:
        """Meta's ``forward_features`` dictionary for a (B, 3, H, W) batch.

        Returns:
            ``x_norm_clstoken`` (B, C), ``x_storage_tokens`` (B, R, C),
            ``x_norm_patchtokens`` (B, N, C), ``x_prenorm`` (B, 1+R+N, C), ``masks`` None.
        """
        self._check_input(x)
        _, last = self._run_blocks(x, None)
        normed = self._norm(last)
        p = self.num_prefix_tokens
        return {
            "x_norm_clstoken": normed[:, 0],
            "x_storage_tokens": normed[:, 1:p],
            "x_norm_patchtokens": normed[:, p:],
            "x_prenorm": last,
            "masks": None,
        }

    def forward(self, x: Tensor) -> dict[str, Tensor | None]:
        """Same as :meth:`forward_features`."""
        return self.forward_features(x)

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch_name or 'custom'}, embed_dim={self.embed_dim}, blocks={self.n_blocks}, "
            f"heads={self.num_heads}, patch_size={self.patch_size}, registers={self.num_register_tokens}, "
            f"source={self.source!r}"
        )
