"""LitServe baseline for the serving benchmark: inkwell's CNN behind a stock LitServe `POST /predict`.

    .venv-litserve/bin/python benchmarks/litserve_app.py --checkpoint PATH --port 18500

Runs in its own virtualenv (`benchmarks/litserve_env.sh`; LitServe is never one of inkwell's requirements)
and loads the checkpoint with inkwell's own code (`ml.inference.load_predictor`, `ml.imageprep`), so both
servers run the same model on the same tensors. Request and answer are inkwell's JSON `/predict`:
`{"pixels": 28x28 numbers, 0..255 (or 0..1)}` -> `{"label", "class_name", "probabilities", "top_k"}` (3 classes,
inkwell's default), without inkwell's `run_id`.

Processes (LitServe 0.2.19): one uvicorn API process (pydantic validates each body there, so a bad one is a
422 of its own instead of failing the batch it would join) and one inference worker
(`accelerator="cpu"`, `workers_per_device=1`) that gathers up to `--max-batch-size` requests into one
forward pass. The worker runs torch with ONE intra-op thread (`torch.set_num_threads(1)` in `setup`), as
inkwell's API does by default (`INKWELL_INFERENCE_THREADS`).

Batch timeout: 0.001 s by default. LitServe's batcher waits the whole window from when it starts collecting
(unless the batch fills), so every batch pays it: at 5 ms a single client cannot exceed ~200 req/s, while at
1 ms the requests that queued during the previous forward pass are still gathered. Measured once here
(2 cores, wrk, 5 s each): 1 connection 417 req/s at 1 ms vs 150 at 5 ms; 32 connections 739 vs 657.
A timeout of 0 is worse on a small machine: the worker then polls its queue without blocking (a busy core).
"""

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import litserve as ls
import torch
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the repository's `ml` package (also in the spawned inference worker)

from ml.imageprep import pixels_to_tensor  # noqa: E402
from ml.inference import Classifier, Prediction, load_predictor  # noqa: E402

TOP_K = 3  # inkwell's default top_k

Row = Annotated[list[Annotated[float, Field(ge=0, le=255)]], Field(min_length=28, max_length=28)]


class PixelsRequest(BaseModel):
    pixels: Annotated[list[Row], Field(min_length=28, max_length=28)]


class InkwellCNN(ls.LitAPI):
    def __init__(self, checkpoint: Path, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.checkpoint = checkpoint

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)  # this worker process's torch threads: inkwell's API default
        predictor = load_predictor(self.checkpoint, device)
        if not isinstance(predictor, Classifier):
            raise SystemExit(f"{self.checkpoint} is not an image classifier's checkpoint")
        self.classifier = predictor

    # LitServe reads the annotation of `request` at run time (so no `from __future__ import annotations` here)
    # as the endpoint's body model: pydantic validates it in the API process
    def decode_request(self, request: PixelsRequest) -> torch.Tensor:
        return pixels_to_tensor(request.pixels)  # (1, 28, 28)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)  # (B, 1, 28, 28)

    def predict(self, x: torch.Tensor) -> list[Prediction]:
        return self.classifier.predict(x, k=TOP_K)

    def unbatch(self, output: list[Prediction]) -> list[Prediction]:
        return output

    def encode_response(self, output: Prediction) -> dict[str, Any]:
        return {"label": output.label, "class_name": output.class_name,
                "probabilities": output.probabilities, "top_k": output.top_k}


MAIN_PID = os.getpid()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT -> KeyboardInterrupt, the only way into LitServe's shutdown (plain SIGTERM orphans its
    workers); in its forked API processes, which inherit this handler, the signal's default action."""
    if os.getpid() != MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="an inkwell CNN checkpoint.pt")
    parser.add_argument("--port", type=int, default=18500)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "0.0.0.0"])
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.001, help="seconds (see the module docstring)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    api = InkwellCNN(args.checkpoint.resolve(), args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background, where SIGINT is ignored
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
