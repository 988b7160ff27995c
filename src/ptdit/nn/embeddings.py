"""Embedding layers shared by PT-DiT and the baselines (docs/architecture.md#embeddings-and-conditioning).

Shape legend: B batch, C latent channels, F frames, H/W latent height/width, Y/X token rows/cols,
L tokens (F Y X, raster order), D width, S text tokens, E caption channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ptdit.nn.cache import cached_tensor_builder, fake_mode_active

Size3 = tuple[int, int, int]

# ----------------------------------------------------------------------------------------------------------------
# Fixed sin-cos positional embeddings
# ----------------------------------------------------------------------------------------------------------------


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """(L,) positions -> (L, dim) code [sin(pos w_0..), cos(pos w_0..)], w_i = 10000^(-i / (dim/2)), float64."""
    if dim % 2:
        raise ValueError(f"a sin-cos code needs an even dimension, got {dim}")
    omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


@cached_tensor_builder
def sincos_pos_embed_3d(
    grid: Size3, dim: int, *, interpolation_scale: float = 1.0, reference_compat: bool = False
) -> torch.Tensor:
    """Fixed 3D sin-cos embedding of PT-DiT (docs/architecture.md#3d-sin-cos-positional-embedding), (L, dim) float32 for
    the raster-ordered grid.

    Channels: [0, dim/4) code of the frame, then 3 dim/8 of the column, then 3 dim/8 of the row.

    Args:
        grid: (F, Y, X) token grid.
        dim: width, divisible by 16.
        interpolation_scale: spatial positions are divided by it (reference: 1 for the released config).
        reference_compat: reproduce the reference's meshgrid quirk
            (docs/decisions.md#positional-embedding-on-non-square-grids): for the raster index k = r X + c it encodes k
            mod Y as the column and k div Y as the row. Equal to the correct embedding only when Y == X.
    """
    if dim % 16:
        raise ValueError(f"the 3D sin-cos positional embedding needs dim divisible by 16, got {dim}")
    nf, ny, nx = grid
    k = torch.arange(ny * nx)
    if reference_compat:
        col, row = k % ny, k // ny
    else:
        col, row = k % nx, k // nx
    t_code = sincos_1d(torch.arange(nf), dim // 4)  # (F, dim/4)
    col_code = sincos_1d(col / interpolation_scale, 3 * dim // 8)  # (Y X, 3 dim/8)
    row_code = sincos_1d(row / interpolation_scale, 3 * dim // 8)
    spatial = torch.cat([col_code, row_code], dim=1)  # (Y X, 3 dim/4)
    emb = torch.cat([t_code[:, None].expand(nf, ny * nx, -1), spatial[None].expand(nf, -1, -1)], dim=2)
    return emb.reshape(nf * ny * nx, dim).float()


@cached_tensor_builder
def sincos_pos_embed_2d(grid: Size3, dim: int) -> torch.Tensor:
    """DiT's 2D sin-cos embedding, (L, dim) float32: [column code (dim/2), row code (dim/2)] per frame.

    Used by the DiT and PixArt-alpha baselines for images; videos (F > 1) fall back to the 3D embedding.
    """
    nf, ny, nx = grid
    if nf > 1:
        return sincos_pos_embed_3d(grid, dim)
    if dim % 4:
        raise ValueError(f"the 2D sin-cos positional embedding needs dim divisible by 4, got {dim}")
    k = torch.arange(ny * nx)
    return torch.cat([sincos_1d(k % nx, dim // 2), sincos_1d(k // nx, dim // 2)], dim=1).float()


# ----------------------------------------------------------------------------------------------------------------
# Patch embedding
# ----------------------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Per-frame Conv2d patchify plus a fixed positional embedding (named `pos_embed` in the checkpoints)."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        patch_size: int,
        *,
        pe_kind: str = "3d",
        pe_interpolation_scale: float = 1.0,
        reference_compat: bool = False,
    ) -> None:
        super().__init__()
        if pe_kind not in ("2d", "3d"):
            raise ValueError(f"pe_kind must be '2d' or '3d', got {pe_kind!r}")
        self.patch_size = patch_size
        self.pe_kind = pe_kind
        self.pe_interpolation_scale = pe_interpolation_scale
        self.reference_compat = reference_compat
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def token_grid(self, latent_shape: torch.Size | tuple[int, ...]) -> Size3:
        """(B, C, F, H, W) latent shape -> (F, Y, X) token grid; raises if H or W is not a multiple of the patch."""
        *_, nf, h, w = latent_shape
        p = self.patch_size
        if h % p or w % p:
            nearest = ", ".join(f"{n}={v - v % p} or {v - v % p + p}" for n, v in (("H", h), ("W", w)) if v % p)
            raise ValueError(
                f"latent height and width must be multiples of the patch size {p}, got H={h}, W={w}; "
                f"nearest valid: {nearest}"
            )
        return (nf, h // p, w // p)

    def pos_embed(self, grid: Size3, device: torch.device) -> torch.Tensor:
        """(L, D) float32 fixed embedding for `grid` (recomputed per grid, never stored in checkpoints)."""
        D = self.proj.out_channels
        if self.pe_kind == "2d":
            return sincos_pos_embed_2d(grid, D).to(device)
        return sincos_pos_embed_3d(
            grid, D, interpolation_scale=self.pe_interpolation_scale, reference_compat=self.reference_compat
        ).to(device)

    def forward(self, latents_BCFHW: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, L, D) tokens, frames processed independently, PE added in float32.

        `pos_embed` (L, D) replaces the computed embedding (DiT's stored table)."""
        B = latents_BCFHW.shape[0]
        grid = self.token_grid(latents_BCFHW.shape)
        frames = rearrange(latents_BCFHW, "b c f h w -> (b f) c h w")
        tokens_BLD = rearrange(self.proj(frames), "(b f) d y x -> b (f y x) d", b=B)
        pe_LD = self.pos_embed(grid, tokens_BLD.device) if pos_embed is None else pos_embed.float()
        return (tokens_BLD.float() + pe_LD).to(tokens_BLD.dtype)


def unpatchify(y_BLO: torch.Tensor, grid: Size3, patch_size: int, out_channels: int) -> torch.Tensor:
    """(B, L, p*p*C) per-token outputs, channel index (pi*p + qi)*C + c -> (B, C, F, Y*p, X*p) latents."""
    nf, ny, nx = grid
    return rearrange(
        y_BLO,
        "b (f y x) (pi qi c) -> b c f (y pi) (x qi)",
        f=nf,
        y=ny,
        x=nx,
        pi=patch_size,
        qi=patch_size,
        c=out_channels,
    )


# ----------------------------------------------------------------------------------------------------------------
# Timestep, caption and label conditioning
# ----------------------------------------------------------------------------------------------------------------


def timestep_embedding(t_B: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) float times -> (B, dim) float32 [cos(t f_i), sin(t f_i)], f_i = max_period^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t_B.device) / half)
    args = t_B.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features (256) -> Linear -> SiLU -> Linear (diffusers `TimestepEmbedding` names)."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.linear_1 = nn.Linear(frequency_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t_B: torch.Tensor) -> torch.Tensor:
        freq_BT = timestep_embedding(t_B, self.frequency_dim).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(freq_BT)))


class _TimestepEmbeddings(nn.Module):
    """Holder that gives the checkpoint key `adaln_single.emb.timestep_embedder.*`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(dim)


class AdaLNSingle(nn.Module):
    """PixArt-alpha adaLN-single: one (B, 6, D) modulation shared by every block
    (docs/architecture.md#timestep-embedding-and-adaln-single)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.emb = _TimestepEmbeddings(dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def embed(self, t_B: torch.Tensor) -> torch.Tensor:
        """(B,) network times -> (B, D) embedded timestep."""
        return self.emb.timestep_embedder(t_B)

    def modulation(self, c_BD: torch.Tensor) -> torch.Tensor:
        """(B, D) conditioning -> (B, 6, D): shift/scale/gate for attention, then for the MLP."""
        return self.linear(F.silu(c_BD)).unflatten(1, (6, -1))


class CaptionProjection(nn.Module):
    """Linear -> GELU(tanh) -> Linear applied to every text token, padding included (PixArt style)."""

    def __init__(self, context_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(context_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, ctx_BSE: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(ctx_BSE), approximate="tanh"))


class LabelEmbedder(nn.Module):
    """Class-label table with a null class (index num_classes) for classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels_B: torch.Tensor, force_drop_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeds labels; in training a fraction `dropout_prob` becomes the null class (or `force_drop_mask`)."""
        labels_B = labels_B.long()
        # Fake tensors (`ptdit bench memory`) carry no values to check.
        if labels_B.numel() and not fake_mode_active() and (labels_B.min() < 0 or labels_B.max() > self.num_classes):
            raise ValueError(
                f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = null class), "
                f"got range [{int(labels_B.min())}, {int(labels_B.max())}]"
            )
        if force_drop_mask is None and self.training and self.dropout_prob > 0:
            force_drop_mask = torch.rand(labels_B.shape, device=labels_B.device) < self.dropout_prob
        if force_drop_mask is not None:
            labels_B = torch.where(force_drop_mask.bool(), torch.full_like(labels_B, self.num_classes), labels_B)
        return self.embedding_table(labels_B)
