"""Per-replica LRU of per-user scale vectors: the mapping network runs once per fingerprint, not once per request."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from genprint.fingerprint import from_hex


class ScaleCache:
    """fingerprint id -> that user's scales (one (1, C_k) tensor per modulated conv)."""

    def __init__(self, model, capacity: int):
        self.model = model
        self.capacity = capacity
        self._items: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def batch(self, keys: list[tuple[str, str]]) -> list[torch.Tensor]:
        """(fingerprint id, fingerprint hex) per sample -> per-conv scales stacked over the batch, in order.
        The misses go through the mapping network in one call."""
        with self._lock:
            missing = list(dict.fromkeys((fid, hx) for fid, hx in keys if fid not in self._items))
            missing_ids = {fid for fid, _ in missing}
            self.hits += sum(fid not in missing_ids for fid, _ in keys)
            self.misses += len(missing)
            if missing:
                bits = torch.stack([torch.as_tensor(from_hex(hx, self.model.nbits)) for _, hx in missing])
                with torch.no_grad():
                    fresh = self.model.scales(bits)
                for row, (fid, _) in enumerate(missing):
                    self._items[fid] = [s[row : row + 1] for s in fresh]
            for fid, _ in keys:
                self._items.move_to_end(fid)
            per_sample = [self._items[fid] for fid, _ in keys]
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return [torch.cat(convs) for convs in zip(*per_sample)]
