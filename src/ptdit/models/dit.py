"""DiT baseline (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023) in ptdit's conventions.

Global self-attention, adaLN-Zero, class labels with a null class, learned-sigma head (8 output channels).
Parameter names follow facebookresearch/DiT `models.py`, so its checkpoints load. Latents are
(B, C, F, H, W); F > 1 runs full global attention over all frames (the "full 3D attention" comparison).

Shape legend: B batch, L tokens, D width, N heads, K head dim.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ptdit.attention.backends import AttentionBackend
from ptdit.attention.functional import attention
from ptdit.config import DiTConfig
from ptdit.models.common import check_class_labels, check_latents, expand_timesteps
from ptdit.nn.embeddings import LabelEmbedder, PatchEmbed, sincos_pos_embed_2d, timestep_embedding, unpatchify
from ptdit.nn.layers import Linear, layer_norm, modulate


class DiTTimestepEmbedder(nn.Module):
    """Sinusoidal features -> MLP, with DiT's key names `mlp.0`, `mlp.2`."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t_B: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t_B, self.frequency_dim).to(self.mlp[0].weight.dtype))


class FusedQKVAttention(nn.Module):
    """timm-style self-attention (`qkv`, `proj`) routed through ptdit's attention seam."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)
        self.backend: AttentionBackend | str | None = None

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        q_BNLK, k_BNLK, v_BNLK = rearrange(
            self.qkv(x_BLD), "b l (three n k) -> three b n l k", three=3, n=self.num_heads
        )
        out_BNLK = attention(q_BNLK, k_BNLK, v_BNLK, backend=self.backend)
        return self.proj(rearrange(out_BNLK, "b n l k -> b l (n k)"))


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (timm names)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim, activation="gelu_tanh")  # GELU inside: one fused kernel on CPU bf16
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class DiTBlock(nn.Module):
    """adaLN-Zero block: x + gate * branch(modulate(norm(x), shift, scale)) for attention and MLP."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        D = config.dim
        self.norm1 = layer_norm(D, config.norm_eps)
        self.attn = FusedQKVAttention(D, config.num_heads)
        self.norm2 = layer_norm(D, config.norm_eps)
        self.mlp = Mlp(D, config.mlp_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x_BLD: torch.Tensor, c_BD: torch.Tensor) -> torch.Tensor:
        mods = self.adaLN_modulation(c_BD)[:, None].chunk(6, dim=2)  # six (B, 1, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x_BLD = x_BLD + gate_msa * self.attn(modulate(self.norm1(x_BLD), shift_msa, scale_msa))
        return x_BLD + gate_mlp * self.mlp(modulate(self.norm2(x_BLD), shift_mlp, scale_mlp))


class DiTFinalLayer(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        D = config.dim
        self.norm_final = layer_norm(D, config.norm_eps)
        self.linear = Linear(D, config.patch_size**2 * config.out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x_BLD: torch.Tensor, c_BD: torch.Tensor) -> torch.Tensor:
        shift_B1D, scale_B1D = self.adaLN_modulation(c_BD)[:, None].chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x_BLD), shift_B1D, scale_B1D))


class DiT(nn.Module):
    """Class-conditional DiT. `pos_embed` is DiT's fixed (frozen) table for `input_size`, kept so DiT
    checkpoints load and parameter counts match; other grids get the same function computed on the fly."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        D, p = config.dim, config.patch_size
        self.x_embedder = PatchEmbed(config.in_channels, D, p, pe_kind="2d")
        self.t_embedder = DiTTimestepEmbedder(D)
        self.y_embedder = LabelEmbedder(config.num_classes, D, config.class_dropout_prob)
        self.base_grid = (1, config.input_size // p, config.input_size // p)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.base_grid[1] * self.base_grid[2], D), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        self.final_layer = DiTFinalLayer(config)
        self.initialize_weights()

    conditioning = "class"

    def block_list(self) -> list[nn.Module]:
        """The repeated blocks (targets for activation checkpointing, compile and FSDP wrapping)."""
        return list(self.blocks)

    def initialize_weights(self) -> None:
        """DiT's initialisation: xavier linears, sin-cos table, N(0, 0.02) embeddings, adaLN-Zero."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        if not self.pos_embed.is_meta:
            self.pos_embed.data.copy_(sincos_pos_embed_2d(self.base_grid, self.config.dim)[None])
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like nn.Linear, on the flattened kernel
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output starts at zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        class_labels: torch.Tensor | None = None,
        force_drop_mask: torch.Tensor | None = None,
        window_size: None = None,
    ) -> torch.Tensor:
        """(B, C_in, F, H, W) latents, (B,) times in [0, 1000], (B,) labels -> (B, C_out, F, H, W) float32."""
        cfg = self.config
        check_latents(x, cfg.in_channels, self.final_layer.linear.weight.dtype)
        if context is not None or window_size is not None:
            raise ValueError("DiT is class-conditional with global attention: it takes no context or window_size")
        B, dtype = x.shape[0], self.final_layer.linear.weight.dtype
        grid = self.x_embedder.token_grid(x.shape)
        stored = self.pos_embed[0] if grid == self.base_grid else None
        x_BLD = self.x_embedder(x.to(dtype), pos_embed=stored)
        c_BD = self.t_embedder(expand_timesteps(t, B, x.device))
        c_BD = c_BD + self.y_embedder(check_class_labels(class_labels, B).to(x.device), force_drop_mask)
        for block in self.blocks:
            x_BLD = block(x_BLD, c_BD)
        return unpatchify(self.final_layer(x_BLD, c_BD), grid, cfg.patch_size, cfg.out_channels).float()
