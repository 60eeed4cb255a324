"""One dynamic batcher per loaded model (api/batcher.py): /predict's forward passes and /transliterate's
searches. Requests for the same model (and, for searches, the same decoding settings) share one call;
each gets exactly what it would get alone (tests/api/test_predict_batching.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from fastapi import HTTPException

from api.batcher import Batcher, BatchStats, Overloaded
from api.serving_stats import EndpointStats, ServingMetrics
from core.settings import Settings
from ml.decoding import Hypothesis
from ml.inference import Classifier, Prediction, Predictor, Transliterator

RETRY_AFTER_SECONDS = 1
SearchParams = tuple[tuple[str, Any], ...]  # decoding, beam_size, n_best, alpha, attention as sorted pairs


def _classify(classifier: Classifier) -> Callable[[list[torch.Tensor]], Sequence[Prediction]]:
    n_classes = len(classifier.classes)

    def run(images: list[torch.Tensor]) -> Sequence[Prediction]:
        return classifier.predict(torch.stack(images), k=n_classes)  # (B, 1, 28, 28): one forward pass

    return run


def _search(model: Transliterator) -> Callable[[list[tuple[list[str], SearchParams]]], list[list[list[Hypothesis]]]]:
    def run(requests: list[tuple[list[str], SearchParams]]) -> list[list[list[Hypothesis]]]:
        params = dict(requests[0][1])  # one group: every request of the batch has the same settings
        flat = [text for texts, _ in requests for text in texts]
        found = model.translate(flat, **params)  # batched greedy or beam search, results in input order
        out, start = [], 0
        for texts, _ in requests:
            out.append(found[start : start + len(texts)])
            start += len(texts)
        return out

    return run


def _search_rows(request: tuple[list[str], SearchParams]) -> int:
    """Rows of the batched search one /transliterate request adds: its texts x its beam (1 for greedy)."""
    texts, params = request
    settings = dict(params)
    return len(texts) * (settings.get("beam_size", 1) if settings.get("decoding") == "beam" else 1)


BatcherKey = tuple[str, str]  # run id, checkpoint ("best" | "last"): best and last are two models of one run


class ModelBatchers:
    """A batcher per (run, checkpoint) and its loaded model: a reloaded checkpoint gets a new one and the old
    one is closed."""

    endpoint = ""

    def __init__(self, settings: Settings, max_items: int, metrics: ServingMetrics | None = None) -> None:
        self.settings, self.max_items = settings, max_items
        self.stats = EndpointStats(self.endpoint, metrics)
        self._lock = threading.Lock()
        self._batchers: dict[BatcherKey, tuple[Predictor, Batcher]] = {}

    def batch_cost(self) -> dict[str, Any]:
        """Batcher arguments bounding a batch's work beyond its item count (none by default)."""
        return {}

    def batcher(self, run_id: str, model: Predictor, make_run: Callable[[Any], Callable], checkpoint: str = "last",
                ) -> Batcher:
        key = (run_id, checkpoint)
        with self._lock:
            found = self._batchers.get(key)
            if found is not None and found[0] is model:
                return found[1]
            s = self.settings
            batcher = Batcher(make_run(model), max_items=self.max_items, max_wait=s.batch_max_wait_ms / 1000,
                              max_queue=s.batch_queue, name=f"batcher-{run_id[:8]}-{checkpoint}",
                              stats=BatchStats(on_batch=self.stats.observe_batch), **self.batch_cost())
            self._batchers[key] = (model, batcher)
        if found is not None:
            found[1].close(timeout=0)
        return batcher

    async def submit(self, batcher: Batcher, item: Any, key: Hashable = None) -> Any:
        try:
            return await batcher.submit(item, key)
        except Overloaded as exc:
            self.stats.observe_rejected()
            raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None

    def _live(self) -> list[Batcher]:
        with self._lock:
            return [b for _, b in self._batchers.values()]

    def queue_depth(self) -> int:
        """Requests waiting for this endpoint's models now (the /metrics gauge)."""
        return sum(b.depth for b in self._live())

    def summary(self) -> dict[str, Any]:
        """This endpoint's queue and recent batches (GET /serving/stats)."""
        batchers = self._live()
        return {**self.stats.summary(sum(b.depth for b in batchers), self.settings.batch_queue, self.max_items),
                "models_loaded": len(batchers), "batching": self.settings.batching}

    def close(self) -> None:
        with self._lock:
            for _, batcher in self._batchers.values():
                batcher.close(timeout=1)
            self._batchers.clear()


class ClassifierBatchers(ModelBatchers):
    endpoint = "predict"

    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None) -> None:
        super().__init__(settings, settings.batch_max_items, metrics)

    async def predict(self, run_id: str, classifier: Classifier, image: torch.Tensor, k: int,
                      checkpoint: str = "last") -> Prediction:
        """`image`'s (1, 28, 28) prediction, batched with concurrent requests for the same model (the run's
        `checkpoint`)."""
        found = await self.submit(self.batcher(run_id, classifier, _classify, checkpoint), image)
        return Prediction(found.label, found.class_name, found.probabilities, found.top_k[:k])


class TransliteratorBatchers(ModelBatchers):
    endpoint = "transliterate"

    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None) -> None:
        super().__init__(settings, settings.batch_max_requests, metrics)

    def batch_cost(self) -> dict[str, Any]:
        """A search of at most INKWELL_MAX_DECODE_ROWS rows (texts x beams), as one request may hold."""
        return {"cost": _search_rows, "max_cost": self.settings.max_decode_rows}

    async def translate(self, run_id: str, model: Transliterator, texts: list[str], checkpoint: str = "last",
                        **params: Any) -> list[list[Hypothesis]]:
        """Hypotheses per text, searched together with concurrent requests for the same model (the run's
        `checkpoint`) that use the same settings."""
        key: SearchParams = tuple(sorted(params.items()))
        return await self.submit(self.batcher(run_id, model, _search, checkpoint), (texts, key), key=key)
