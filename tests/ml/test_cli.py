"""`python -m ml …` end to end in subprocesses, on the real shared data."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.cli import build_parser
from ml.evaluation import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_ml(*args: str, data_dir: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if data_dir is not None:
        env["INKWELL_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "ml", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def digit_png(shared_data: Path, index: int, tmp_path: Path) -> tuple[Path, int]:
    with gzip.open(shared_data / "mnist-8k" / "mnist8k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(shared_data / "mnist-8k" / "mnist8k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    # dark ink on white paper, larger than 28x28, as a user would upload
    img = Image.fromarray(255 - images[index]).resize((112, 112), Image.BILINEAR)
    path = tmp_path / f"digit{index}.png"
    img.save(path)
    return path, int(labels[index])


@pytest.fixture(scope="module")
def cnn_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn")
    proc = run_ml("train", "cnn", "--data", f"idx:{shared_data / 'mnist-8k'}", "--limit", "1500", "--epochs", "2",
                  "--batch-size", "16", "--lr", "0.001", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json_lines(proc.stdout)


@pytest.fixture(scope="module")
def s2s_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("s2s")
    proc = run_ml("train", "seq2seq", "--data", "pairs:spa-eng", "--attention", "--limit", "256", "--epochs", "1",
                  "--hidden-size", "32", "--out", out, "--json", data_dir=shared_data)
    assert proc.returncode == 0, proc.stderr
    return out, json_lines(proc.stdout)


def test_train_cnn_json_lines(cnn_run):
    out, lines = cnn_run
    assert [line["epoch"] for line in lines[:-1]] == [1, 2]
    assert set(lines[0]) == {"epoch", "train_loss", "val_accuracy", "seconds"}
    assert set(lines[-1]) == {"test_accuracy", "checkpoint", "best_epoch", "best_test_accuracy", "best_checkpoint"}
    assert lines[-1]["test_accuracy"] > 0.6
    assert Path(lines[-1]["checkpoint"]).is_file() and Path(lines[-1]["best_checkpoint"]).is_file()
    best = max(lines[:-1], key=lambda line: line["val_accuracy"])  # the earliest among equals
    assert lines[-1]["best_epoch"] == best["epoch"]
    for name in ("metrics.json", "loss.png", "validation.png"):
        assert (out / name).is_file()


def test_predict_and_activations_on_a_user_image(cnn_run, shared_data, tmp_path):
    out, _ = cnn_run
    paths = [digit_png(shared_data, i, tmp_path) for i in (7000, 7001, 7002, 7003, 7004, 7005)]
    proc = run_ml("predict", "--checkpoint", out / "checkpoint.pt", *[p for p, _ in paths])
    assert proc.returncode == 0, proc.stderr
    preds = json_lines(proc.stdout)
    assert len(preds) == 6 and all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in preds)
    assert sum(p["label"] == label for p, (_, label) in zip(preds, paths, strict=True)) >= 4
    png = tmp_path / "maps.png"
    proc = run_ml("activations", "--checkpoint", out / "checkpoint.pt", "--layer", "conv2", "--out", png, paths[0][0])
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout)[0]["shape"] == [16, 12, 12]
    assert Image.open(io.BytesIO(png.read_bytes())).format == "PNG"


def test_evaluate_cnn(cnn_run, shared_data):
    out, lines = cnn_run
    proc = run_ml("evaluate", "--checkpoint", out / "checkpoint.pt", "--data", f"idx:{shared_data / 'mnist-8k'}",
                  "--split", "val", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] == 800 and 0.5 < result["accuracy"] <= 1 and result["seconds"] > 0
    assert result["epoch"] == 2 and "details" not in result


def test_evaluate_limit_and_details_give_evaluate_checkpoints_numbers(cnn_run, s2s_run, shared_data):
    spec = f"idx:{shared_data / 'mnist-8k'}"
    proc = run_ml("evaluate", "--checkpoint", cnn_run[0] / "best.pt", "--data", spec, "--split", "val",
                  "--limit", "100", "--details", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = evaluate_checkpoint(cnn_run[0] / "best.pt", spec, shared_data, split="val", limit=100)
    assert got["n"] == expected.n == 100 and got["accuracy"] == expected.value and got["epoch"] == expected.epoch
    assert sum(map(sum, got["details"]["confusion"])) == 100 and len(got["details"]["mistakes"]) <= 12

    ckpt = s2s_run[0] / "checkpoint.pt"
    proc = run_ml("evaluate", "--checkpoint", ckpt, "--data", "spa-eng", "--split", "val", "--limit", "40",
                  "--decoding", "beam", "--beam-size", "2", "--alpha", "0.5", "--details", "--json",
                  data_dir=shared_data)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = evaluate_checkpoint(ckpt, "pairs:spa-eng", shared_data, split="val", limit=40, decoding="beam",
                                   beam_size=2, length_penalty=0.5, details=True)
    assert got["n"] == 40 and got["error_rate"] == expected.value and got["details"] == expected.details


def test_evaluate_takes_length_penalty_or_its_old_name_alpha():
    base = ["evaluate", "--checkpoint", "c.pt", "--data", "mnist"]
    assert build_parser().parse_args([*base, "--length-penalty", "0.5"]).length_penalty == 0.5
    assert build_parser().parse_args([*base, "--alpha", "0.25"]).length_penalty == 0.25
    args = build_parser().parse_args(base)
    assert (args.length_penalty, args.limit, args.details, args.batch_size) == (0.0, None, False, None)


def test_train_translate_and_evaluate_seq2seq(s2s_run, shared_data):
    out, lines = s2s_run
    assert set(lines[0]) == {"epoch", "train_loss", "val_error_rate", "seconds"}
    assert "test_error_rate" in lines[-1]
    ckpt = out / "checkpoint.pt"
    proc = run_ml("translate", "--checkpoint", ckpt, "--decoding", "beam", "--beam-size", "4", "--n-best", "3",
                  "¡Hola!", "Tengo frío.")
    assert proc.returncode == 0, proc.stderr
    results = json_lines(proc.stdout)
    assert [r["input"] for r in results] == ["hola !", "tengo frio ."]
    for r in results:
        scores = [h["score"] for h in r["n_best"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and r["output"] == r["n_best"][0]["text"]
    greedy = run_ml("evaluate", "--checkpoint", ckpt, "--file", shared_data / "spa-eng" / "val-eng-spa.txt", "--json")
    beam = run_ml("evaluate", "--checkpoint", ckpt, "--data", f"pairs:{shared_data / 'spa-eng'}", "--split", "val",
                  "--decoding", "beam", "--beam-size", "3", "--json")
    assert greedy.returncode == 0 and beam.returncode == 0, greedy.stderr + beam.stderr
    g, b = json.loads(greedy.stdout), json.loads(beam.stdout)
    assert g["n"] > 500 and g["n"] == b["n"] and g["error_rate"] > 0 and b["error_rate"] > 0


def test_sweep_prints_the_learning_rate_table(shared_data, tmp_path):
    proc = run_ml("sweep", "cnn", "--data", f"idx:{shared_data / 'mnist-8k'}", "--lrs", "0.01,0.001", "--limit", "200",
                  "--epochs", "1", "--batch-size", "32", "--out", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    table = json_lines(proc.stdout)[-1]["sweep"]
    assert [row["learning_rate"] for row in table] == [0.01, 0.001]
    assert (tmp_path / "sweep.png").is_file() and (tmp_path / "lr-0.01" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("args, fragment", [
    (("predict", "--checkpoint", "/nonexistent/model.pt", "x.png"), "checkpoint not found"),
    (("train", "cnn", "--data", "nosuchspec", "--out", "/tmp/x"), "nosuchspec"),
    (("train", "seq2seq", "--data", "pairs:/nonexistent", "--out", "/tmp/x"), "/nonexistent"),
    (("train", "cnn", "--data", "mnist", "--lr", "-1", "--out", "/tmp/x"), "learning_rate"),
])
def test_bad_input_gives_one_line_and_exit_code_2(args, fragment):
    proc = run_ml(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert fragment in proc.stderr


def test_bad_user_inputs_to_trained_models(cnn_run, s2s_run, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    cases = [
        (("predict", "--checkpoint", cnn_run[0] / "checkpoint.pt", not_image), "not an image"),
        (("predict", "--checkpoint", cnn_run[0] / "checkpoint.pt", tmp_path / "missing.png"), "not found"),
        (("translate", "--checkpoint", s2s_run[0] / "checkpoint.pt", "日本語"), ""),
        (("translate", "--checkpoint", cnn_run[0] / "checkpoint.pt", "hola"), "cnn"),
    ]
    for args, fragment in cases:
        proc = run_ml(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert fragment in proc.stderr
