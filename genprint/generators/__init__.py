"""Generator adapters: the latent decoder (and its encoder) that genprint fingerprints.

Every adapter works in the autoencoder's raw latent space and images in [0, 1], whatever
the underlying model's own conventions are, so the rest of genprint never branches on family.
"""

from genprint.generators.base import GeneratorAdapter, build_adapter, load_adapter_source

__all__ = ["GeneratorAdapter", "build_adapter", "load_adapter_source"]
