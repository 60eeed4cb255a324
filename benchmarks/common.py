"""Shared pieces of the benchmarks: arguments, machine description, timing, JSON output, a trained model."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """INKWELL_TEST_DATA when set, else the shared data beside the checkout (../shared/data)."""
    return Path(os.environ.get("INKWELL_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


def base_parser(description: str, repeats: int = 3) -> argparse.ArgumentParser:
    """--data-dir, --repeats and --seed, common to every benchmark."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(),
                   help="folder with spa-eng/ and mnist-8k/ (default: $INKWELL_TEST_DATA or ../shared/data)")
    p.add_argument("--repeats", type=int, default=repeats,
                   help=f"timed repetitions per path (default {repeats})")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    return p


def apply_threads(threads: int | None) -> None:
    """Use `threads` intra-op threads when given; otherwise leave torch's default (one per core)."""
    if threads is not None:
        torch.set_num_threads(threads)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; the load average shows whether the machine was shared."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "device": "cpu",
        "cuda_available": torch.cuda.is_available(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call of `fn`."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def summary(times: list[float]) -> dict[str, Any]:
    """Median, min and every run, in seconds."""
    return {"median_s": round(median(times), 4), "min_s": round(min(times), 4),
            "runs_s": [round(t, 4) for t in times]}


def ratio(slow: float, fast: float) -> float:
    """How many times faster `fast` is than `slow`."""
    return round(slow / fast, 3) if fast > 0 else float("inf")


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's one JSON object, with the load average at the end added."""
    result.setdefault("machine", {})["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, ensure_ascii=False), flush=True)
