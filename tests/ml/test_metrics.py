"""error_rate against a hand-written edit distance; accuracy on tensors and lists."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from ml.metrics import accuracy, error_rate


def edit_distance(a: str, b: str) -> int:
    """Textbook dynamic programme: insertions, deletions and substitutions cost 1."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="module")
def english(shared_data: Path) -> list[str]:
    lines = (shared_data / "spa-eng" / "val-eng-spa.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[:200]]


def test_edit_distance_helper() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("ab", "ab") == 0


def test_error_rate_matches_dynamic_programme(english: list[str]) -> None:
    rng = random.Random(0)
    targets = english[:100]
    predictions = english[100:200]  # other real sentences as "wrong translations"
    expected = sum(edit_distance(p, t) / len(t) for p, t in zip(predictions, targets, strict=True)) / 100
    assert error_rate(predictions, targets) == pytest.approx(expected)

    def mutate(s: str) -> str:
        chars = list(s)
        for _ in range(rng.randint(0, 4)):
            op, pos = rng.choice("ids"), rng.randrange(len(chars) + 1)
            if op == "i":
                chars.insert(pos, rng.choice("abc xyz"))
            elif chars and pos < len(chars):
                if op == "d":
                    del chars[pos]
                else:
                    chars[pos] = rng.choice("abc xyz")
        return "".join(chars)

    noisy = [mutate(t) for t in targets]
    expected = sum(edit_distance(p, t) / len(t) for p, t in zip(noisy, targets, strict=True)) / 100
    assert error_rate(noisy, targets) == pytest.approx(expected)
    assert 0 < expected < 1


def test_error_rate_edges(english: list[str]) -> None:
    assert error_rate(english[:10], english[:10]) == 0.0
    assert error_rate(["", "abc"], ["abcd", "abc"]) == pytest.approx((4 / 4 + 0) / 2)
    assert error_rate(["ab"], [""]) == 2.0  # empty target: divide by 1, not 0
    with pytest.raises(ValueError):
        error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        error_rate([], [])


def test_accuracy_on_tensors_and_lists() -> None:
    torch.manual_seed(0)
    scores = torch.randn(50, 7)  # (N, C)
    labels = torch.randint(0, 7, (50,))
    expected = (
        sum(int(max(range(7), key=lambda c: scores[i, c].item()) == labels[i].item()) for i in range(50)) / 50
    )
    assert accuracy(scores, labels) == pytest.approx(expected)
    assert accuracy(scores.argmax(1), labels) == pytest.approx(expected)
    assert accuracy([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    assert accuracy((2, 2), [2, 2]) == 1.0
    with pytest.raises(ValueError):
        accuracy([1, 2], [1, 2, 3])
