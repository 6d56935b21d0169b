"""The CNN reader in-process: a loaded model's extractor run eagerly in torch (training, evaluation, `extract`)."""

from __future__ import annotations

import numpy as np
import torch

from genprint.model import GenprintModel
from genprint.readers.base import Reader


class TorchExtractorReader(Reader):
    def __init__(self, model: GenprintModel):
        self.model = model
        self.nbits = model.nbits
        self.model_id = getattr(model, "bundle_config", {}).get("model_id", "in-memory")
        self.runtime = [f"torch ({model._device()})"]

    def logits(self, images) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images, dtype=torch.float32)
        x = x[None] if x.ndim == (2 if self.model.adapter.modality == "audio" else 3) else x  # one image or clip
        self.model.extractor.eval()
        with torch.no_grad():
            return self.model.extract(x.to(self.model._device())).float().cpu().numpy()
