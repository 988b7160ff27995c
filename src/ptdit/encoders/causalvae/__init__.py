"""Native Open-Sora-Plan v1.2 CausalVAE, the autoencoder of the released Qihoo-T2X pipeline (SPEC section 16).

* `CausalVAEConfig`: the reference's constructor arguments (defaults: the released pipeline's VAE).
* `CausalVAEModel`: the network, state-dict compatible with the released checkpoint; moments and unscaled z.
"""

from ptdit.encoders.causalvae.config import CausalVAEConfig, is_causalvae_config
from ptdit.encoders.causalvae.model import CausalVAEModel, posterior_mean_logvar

__all__ = ["CausalVAEConfig", "CausalVAEModel", "is_causalvae_config", "posterior_mean_logvar"]
