"""ptdit: PT-DiT, the Proxy-Tokenized Diffusion Transformer (Qihoo-T2X / PT-T2I/V), and its baselines.

Public API re-exports only. Heavy optional pieces (encoders, pipelines) live in their subpackages and import
diffusers / transformers lazily.
"""

from ptdit.attention.backends import AttentionBackend, use_attention_backend
from ptdit.config import DiTConfig, PixArtConfig, PTDiTConfig, config_from_dict
from ptdit.models.dit import DiT
from ptdit.models.pixart import PixArtAlpha
from ptdit.models.ptdit import PTDiT
from ptdit.models.registry import build_model, count_parameters, load_model, save_model
from ptdit.presets.models import MODEL_PRESETS, get_preset
from ptdit.train.parallel import apply_activation_checkpointing

__version__ = "0.1.0"

__all__ = [
    "MODEL_PRESETS",
    "AttentionBackend",
    "DiT",
    "DiTConfig",
    "PTDiT",
    "PTDiTConfig",
    "PixArtAlpha",
    "PixArtConfig",
    "__version__",
    "apply_activation_checkpointing",
    "build_model",
    "config_from_dict",
    "count_parameters",
    "get_preset",
    "load_model",
    "save_model",
    "use_attention_backend",
]
