"""scripts/gpu-check: on a machine without CUDA it says so in one line and exits 0; its hidden --force-cpu
runs every step on the CPU with tiny sizes, so the path a GPU machine takes (children with timeouts, the
benchmarks, the table and the JSON) is exercised here too."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "gpu-check"


def load_script() -> ModuleType:
    """scripts/gpu-check as a module (it has no .py suffix); importing it runs nothing."""
    name = "inkwell_gpu_check"
    loader = importlib.machinery.SourceFileLoader(name, str(SCRIPT))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    return load_script()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INKWELL_GPU_CHECK_REEXEC", "INKWELL_DATA_DIR")}
    env.update(extra)
    return env


def _run(args: list[str], timeout: float, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env(**env))
    return proc, time.monotonic() - started


def test_the_script_is_executable_and_runs_with_the_projects_venv():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the check would really run")
    # Started as a user would (the shebang: whatever python3 is on PATH, re-executed with .venv's), and with
    # the base interpreter, which has no torch of its own when the project runs from .venv.
    interpreters = [[str(SCRIPT)]]
    base = Path(sys.base_prefix) / "bin" / "python3"
    if base.is_file() and (ROOT / ".venv" / "bin" / "python").is_file():
        interpreters.append([str(base), str(SCRIPT)])
    for command in interpreters:
        proc, seconds = _run(command, timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and "no CUDA device" in lines[0], proc.stdout
        assert seconds < 30, f"{command}: {seconds:.1f} s"


def test_force_cpu_runs_every_step_and_prints_the_table_and_json(shared_data, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    # About 20 s on a quiet 2-core machine; the script's own bound for --force-cpu is 240 s.
    proc, _ = _run([sys.executable, str(SCRIPT), "--force-cpu", "--data-dir", str(shared_data)], timeout=300,
                   TMPDIR=str(temp))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])  # the last line is the JSON
    assert report["gpu_check"] == "ok" and report["mode"] == "force-cpu"
    assert report["data_dir"] == str(shared_data)
    rows = {row["what"].split(",")[0]: row for row in report["rows"]}
    assert list(rows) == ["train cnn", "train seq2seq+attention", "predict cnn", "decode greedy", "decode beam-5",
                          "benchmarks.decoding", "benchmarks/serving.py"]
    for what, row in rows.items():
        expected = "skipped" if what == "benchmarks/serving.py" else "ok"
        assert row["status"] == expected, row
        assert row["device"] == "cpu", row
        if expected == "ok":
            assert isinstance(row["seconds"], float) and row["seconds"] >= 0, row
    cnn, s2s = rows["train cnn"]["detail"], rows["train seq2seq+attention"]["detail"]
    assert cnn["epochs"] == 1 and len(cnn["epoch_seconds"]) == 1 and 0 <= cnn["val_accuracy"] <= 1
    assert s2s["epochs"] == 1 and len(s2s["epoch_seconds"]) == 1 and s2s["val_error_rate"] >= 0
    assert rows["predict cnn"]["detail"]["images_per_s"] > 0
    assert rows["decode beam-5"]["detail"]["sentences_per_s"] > 0
    assert rows["benchmarks.decoding"]["detail"]["ratios"]["greedy_reference_over_batched"] > 0

    # The table above the JSON: a header, a rule, one line per row, then the summary line.
    header = next(i for i, line in enumerate(lines) if line.startswith("what"))
    assert all(word in lines[header] for word in ("device", "seconds", "metric / throughput", "status"))
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    body = lines[header + 2: header + 2 + len(rows)]
    for line, row in zip(body, report["rows"], strict=True):
        assert line.startswith(row["what"]) and line.rstrip().endswith(row["status"]), line
    assert lines[-2].startswith("ok: 6 of 7 steps passed")
    assert not list(temp.glob("inkwell-gpu-check-*")), "the temporary work folder was left behind"


def test_a_failing_step_is_reported_and_the_exit_status_is_1(tmp_path):
    missing = tmp_path / "no-data"
    work = tmp_path / "work"
    proc, _ = _run([sys.executable, str(SCRIPT), "--force-cpu", "--work-dir", str(work)], timeout=300,
                   INKWELL_DATA_DIR=str(missing))  # the data folder comes from the variable when no --data-dir
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    assert "mnist-8k, spa-eng not found in" in proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["gpu_check"] == "failed" and report["data_dir"] == str(missing)
    statuses = {row["what"].split(",")[0]: row["status"] for row in report["rows"]}
    assert statuses["train cnn"] == statuses["train seq2seq+attention"] == "failed"
    assert statuses["predict cnn"] == statuses["benchmarks.decoding"] == "skipped"  # nothing to load
    cnn = report["rows"][0]
    assert "mnist-8k" in cnn["metric"], cnn  # the child's last error line
    assert (work / "cnn.log").is_file() and (work / "plan.json").is_file()  # --work-dir is kept


def test_a_step_past_its_timeout_is_killed_with_everything_it_started(gpu_check, tmp_path):
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(p.pid, flush=True); time.sleep(60)")
    outcome = gpu_check.run_bounded([sys.executable, "-c", code], 2, tmp_path / "step.log")
    assert outcome.returncode is None and outcome.seconds < 15
    grandchild = int(outcome.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the step's child {grandchild} still runs")
    status, reason = gpu_check._failure(outcome, 2)
    assert status == "timeout" and "2 s timeout" in reason


def test_the_serving_benchmark_command_uses_options_it_has(gpu_check, tmp_path):
    # The decoding benchmark runs for real in the --force-cpu test; the serving one only where wrk is and
    # full-size training is affordable, so its command line is checked against its --help here.
    command = gpu_check.serving_command(tmp_path)
    first = next(i for i, word in enumerate(command) if word.startswith("--"))
    help_text = subprocess.run([*command[:first], "--help"], cwd=ROOT, capture_output=True, text=True,
                               timeout=60).stdout
    assert "usage:" in help_text
    for option in (word for word in command[first:] if word.startswith("--")):
        assert option in help_text, f"{option} is not an option of benchmarks/serving.py"


def test_serving_report_becomes_a_row_and_errors_fail_it(gpu_check):
    load = {"req_per_s": 1234.5, "p99_ms": 12.5, "non_2xx": 0, "socket_errors": 0, "requests": 2469}
    results = {name: dict(load) for name in ("predict_json_c1", "predict_json_c32", "healthz_c32",
                                              "transliterate_greedy_c32", "transliterate_beam_c32")}
    report = {"machine": {}, "results": {"inkwell batching=true": results}}
    printed = "wrk warming up\n" + json.dumps(report, indent=2) + "\n"  # serving.py prints indented JSON
    row = gpu_check.serving_row(gpu_check.last_json(printed), 42.0, "cuda")
    assert row.status == "ok" and row.device == "cuda" and "predict_json 1,234 req/s" in row.metric
    results["transliterate_beam_c32"]["non_2xx"] = 7
    row = gpu_check.serving_row(report, 42.0, "cuda")
    assert row.status == "failed" and "transliterate_beam_c32 7" in row.metric
    with pytest.raises(ValueError):
        gpu_check.last_json("no json here\n{not json")
