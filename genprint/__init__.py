"""genprint: weight-modulation fingerprinting (WOUAF) for latent decoders.

The core library has no Ray or MLflow imports: `pipelines/` and `serving/` build on it.
"""

__version__ = "0.1.0"
# Bumped whenever a bundle written by this version cannot be read by older code (or vice versa).
BUNDLE_FORMAT = 2  # 2: config.json records each weight file's sha256, and model_id is their digest
