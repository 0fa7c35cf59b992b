"""The causal video autoencoder: video <-> latents, one-shot or chunked at flat memory (chapter 11.4)."""

from kinema.autoencoder.causal_vae import CausalVAEConfig, CausalVideoVAE, DiagonalGaussian
from kinema.autoencoder.directory import SHIPPED_AUTOENCODER, LatentNormalization, load_autoencoder, save_autoencoder
from kinema.autoencoder.layers import StreamState
from kinema.autoencoder.streaming import (
    Tiling,
    decode_chunked,
    encode_chunked,
    iter_decode,
    iter_encode,
    iter_reconstruct,
)

__all__ = [
    "SHIPPED_AUTOENCODER",
    "CausalVAEConfig",
    "CausalVideoVAE",
    "DiagonalGaussian",
    "LatentNormalization",
    "StreamState",
    "Tiling",
    "decode_chunked",
    "encode_chunked",
    "iter_decode",
    "iter_encode",
    "iter_reconstruct",
    "load_autoencoder",
    "save_autoencoder",
]
