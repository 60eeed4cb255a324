"""One dynamic batcher per loaded image classifier (api/batcher.py): /predict's forward passes."""

from __future__ import annotations

import threading

import torch
from fastapi import HTTPException

from api.batcher import Batcher, Overloaded
from core.settings import Settings
from ml.inference import Classifier, Prediction

RETRY_AFTER_SECONDS = 1


class ClassifierBatchers:
    """A batcher per (run, loaded classifier): a reloaded checkpoint gets a new one, the old one is closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._batchers: dict[str, tuple[Classifier, Batcher[torch.Tensor, Prediction]]] = {}

    def _for(self, run_id: str, classifier: Classifier) -> Batcher[torch.Tensor, Prediction]:
        with self._lock:
            found = self._batchers.get(run_id)
            if found is not None and found[0] is classifier:
                return found[1]
            n_classes = len(classifier.classes)

            def run(images: list[torch.Tensor]) -> list[Prediction]:
                return classifier.predict(torch.stack(images), k=n_classes)  # (B, 1, 28, 28): one forward pass

            s = self.settings
            batcher: Batcher[torch.Tensor, Prediction] = Batcher(
                run, max_items=s.batch_max_items, max_wait=s.batch_max_wait_ms / 1000, max_queue=s.batch_queue,
                name=f"batcher-{run_id[:8]}")
            self._batchers[run_id] = (classifier, batcher)
        if found is not None:
            found[1].close(timeout=0)
        return batcher

    async def predict(self, run_id: str, classifier: Classifier, image: torch.Tensor, k: int) -> Prediction:
        """`image`'s (1, 28, 28) prediction, batched with concurrent requests for the same model."""
        try:
            found = await self._for(run_id, classifier).submit(image)
        except Overloaded as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        return Prediction(found.label, found.class_name, found.probabilities, found.top_k[:k])

    def close(self) -> None:
        with self._lock:
            for _, batcher in self._batchers.values():
                batcher.close(timeout=1)
            self._batchers.clear()
