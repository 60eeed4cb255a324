"""evaluate_checkpoint scores exactly what fit recorded, on tiny models trained on the real shared data."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from ml.config import TrainConfig
from ml.data.text import load_pairs
from ml.decoding import translate
from ml.errors import Cancelled, DataError, InputError
from ml.evaluation import EvaluationResult, evaluate_checkpoint, evaluate_pairs_file
from ml.inference import load_predictor
from ml.metrics import error_rate
from ml.training import FitResult, fit

S2S = {"attention": True, "limit": 256, "epochs": 2, "hidden_size": 32}


@pytest.fixture(scope="module")
def cnn(shared_data, tmp_path_factory) -> FitResult:
    config = TrainConfig.for_model("cnn", f"idx:{shared_data / 'mnist-8k'}", epochs=2, batch_size=64, limit=300)
    return fit(config, data_dir=shared_data, out_dir=tmp_path_factory.mktemp("cnn"), device="cpu")


@pytest.fixture(scope="module")
def s2s(shared_data, tmp_path_factory) -> FitResult:
    config = TrainConfig.for_model("seq2seq", "pairs:spa-eng", **S2S)
    return fit(config, data_dir=shared_data, out_dir=tmp_path_factory.mktemp("s2s"), device="cpu")


def _score(result: FitResult, shared_data, name: str, split: str, **kw) -> EvaluationResult:
    path = result.checkpoint.parent / name
    return evaluate_checkpoint(path, result.config.data, shared_data, split=split, limit=result.config.limit,
                               device="cpu", **kw)


@pytest.mark.parametrize("kind", ["cnn", "s2s"])
def test_last_and_best_checkpoints_score_exactly_what_fit_recorded(kind, request, shared_data):
    result: FitResult = request.getfixturevalue(kind)
    last_val = _score(result, shared_data, "checkpoint.pt", "val")
    assert last_val.metric == result.metric and last_val.n == (300 if kind == "cnn" else 256)
    assert last_val.value == result.history[-1].val_metric
    assert last_val.epoch == len(result.history)
    assert _score(result, shared_data, "checkpoint.pt", "test").value == result.test_metric
    assert result.best_epoch is not None
    best_val = _score(result, shared_data, "best.pt", "val")
    assert best_val.epoch == result.best_epoch
    assert best_val.value == result.history[result.best_epoch - 1].val_metric
    assert _score(result, shared_data, "best.pt", "test").value == result.best_test_metric
    assert last_val.details == {} and json.dumps(last_val.as_json())


def test_a_beam_of_one_is_greedy_search(s2s, shared_data):
    greedy = _score(s2s, shared_data, "checkpoint.pt", "val", details=True)
    beam = _score(s2s, shared_data, "checkpoint.pt", "val", details=True, decoding="beam", beam_size=1,
                  length_penalty=0.7)
    assert beam.value == greedy.value and beam.details == greedy.details


def test_chunks_with_progress_equal_one_translate_call_over_the_whole_split(s2s, shared_data):
    """Scored in chunks of translate's batch size (64 here: 4 chunks), with progress after each, the split
    gives what one translate call on all of it gives; the pairs file behind the val split scores the same."""
    cfg = s2s.config
    pairs = load_pairs(cfg.data, shared_data, direction=cfg.direction, max_length=cfg.max_length).val[:256]
    model = load_predictor(s2s.checkpoint, device="cpu")
    hyps = translate(model.model, model.src_vocab, model.tgt_vocab, [s for s, _ in pairs],
                     max_length=2 * cfg.max_length + 10, batch_size=64, device="cpu")
    seen: list[tuple[int, int]] = []
    result = evaluate_checkpoint(s2s.checkpoint, "spa-eng", shared_data, split="val", limit=256, batch_size=64,
                                 device="cpu", on_progress=lambda done, total: seen.append((done, total)))
    assert result.value == error_rate([h[0].text for h in hyps], [t for _, t in pairs])
    assert result.n == 256 and seen == [(64, 256), (128, 256), (192, 256), (256, 256)]
    from_file = evaluate_pairs_file(s2s.checkpoint, shared_data / "spa-eng" / "val-eng-spa.txt", limit=256,
                                    device="cpu")
    assert from_file.value == s2s.history[-1].val_metric and from_file.n == 256


def test_image_details_hold_the_confusion_matrix_and_the_most_confident_mistakes(cnn, shared_data):
    result = _score(cnn, shared_data, "checkpoint.pt", "val", details=True)
    d = result.details
    confusion = d["confusion"]
    assert len(confusion) == len(d["classes"]) == 10 and all(len(row) == 10 for row in confusion)
    assert sum(map(sum, confusion)) == result.n
    assert sum(confusion[i][i] for i in range(10)) / result.n == result.value
    assert [c["n"] for c in d["per_class"]] == [sum(row) for row in confusion]
    mistakes = d["mistakes"]
    assert 0 < len(mistakes) <= 12
    assert [m["confidence"] for m in mistakes] == sorted((m["confidence"] for m in mistakes), reverse=True)
    assert all(m["true"] != m["predicted"] for m in mistakes)
    head, data = mistakes[0]["image_png"].split(",", 1)
    assert head == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (28, 28)
    assert len(json.dumps(result.as_json())) < 20_000


def test_pair_details_list_the_worst_sentences_and_a_repeatable_sample(s2s, shared_data):
    first = _score(s2s, shared_data, "checkpoint.pt", "val", details=True)
    worst, sample = first.details["worst"], first.details["sample"]
    assert len(worst) == len(sample) == 10
    errors = [w["error"] for w in worst]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    assert set(worst[0]) == {"index", "source", "reference", "hypothesis", "error"}
    row = sample[0]
    assert row["error"] == round(error_rate([row["hypothesis"]], [row["reference"]]), 4)
    assert _score(s2s, shared_data, "checkpoint.pt", "val", details=True).details == first.details


def test_cancel_stops_between_batches(s2s, shared_data):
    with pytest.raises(Cancelled):
        _score(s2s, shared_data, "checkpoint.pt", "val", should_cancel=lambda: True)
    seen: list[int] = []
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        evaluate_checkpoint(s2s.checkpoint, "spa-eng", shared_data, split="val", limit=200, batch_size=100,
                            device="cpu", should_cancel=lambda: next(calls),
                            on_progress=lambda done, _: seen.append(done))
    assert seen == [100]


def test_a_dataset_of_the_wrong_kind_is_a_one_line_data_error(cnn, s2s, shared_data):
    with pytest.raises(DataError, match="holds text pairs; a cnn checkpoint") as err:
        evaluate_checkpoint(cnn.checkpoint, "spa-eng", shared_data, device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="holds images; a seq2seq checkpoint"):
        evaluate_checkpoint(s2s.checkpoint, "mnist-8k", shared_data, device="cpu")
    with pytest.raises(DataError, match="holds text pairs"):
        evaluate_pairs_file(cnn.checkpoint, shared_data / "spa-eng" / "val-eng-spa.txt", device="cpu")
    with pytest.raises(DataError, match="unknown dataset"):
        evaluate_checkpoint(cnn.checkpoint, "no-such-set", shared_data, device="cpu")
    with pytest.raises(InputError, match="split"):
        evaluate_checkpoint(cnn.checkpoint, "mnist-8k", shared_data, split="dev", device="cpu")
