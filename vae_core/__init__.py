"""vae_core: train variational autoencoders on images and analyse their latent space."""

__version__ = "0.1.0"
