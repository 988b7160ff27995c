"""Native Open-Sora-Plan v1.2 CausalVAE, the autoencoder of the released Qihoo-T2X pipeline
(docs/inference.md#the-released-pipeline).

* `CausalVAEConfig`: the reference's constructor arguments (defaults: the released pipeline's VAE).
* `CausalVAEModel`: the network, state-dict compatible with the released checkpoint; moments and unscaled z.
* `CausalVAE`: the `ptdit.encoders.VAE` adapter (latents scaled by 0.18215); `load_causalvae(path)` builds it
  from a folder or weights file. `ptdit.encoders.load_vae(folder)` dispatches here on the folder's config.json.

Modules: `config`, `layers` (convs, resamplers, blocks), `model` (encoder, decoder), `tiling`, `loading`,
`adapter`.
"""

from ptdit.encoders.causalvae.adapter import LATENT_SCALE, CausalVAE, load_causalvae
from ptdit.encoders.causalvae.config import CausalVAEConfig, is_causalvae_config
from ptdit.encoders.causalvae.loading import load_causalvae_model, save_causalvae_model
from ptdit.encoders.causalvae.model import CausalVAEModel, posterior_mean_logvar

__all__ = [
    "LATENT_SCALE",
    "CausalVAE",
    "CausalVAEConfig",
    "CausalVAEModel",
    "is_causalvae_config",
    "load_causalvae",
    "load_causalvae_model",
    "posterior_mean_logvar",
    "save_causalvae_model",
]
