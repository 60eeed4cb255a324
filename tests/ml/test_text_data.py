"""Normalisation, vocabularies, pair loading and padding, on the real spa-eng data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from ml.data.text import (
    EOS,
    PAD,
    SOS,
    UNK,
    PairSplits,
    Vocab,
    load_pairs,
    normalize,
    pad_batch,
    read_pairs_file,
)
from ml.errors import DataError

ALLOWED = re.compile(r"^[a-z.!?]+( [a-z.!?]+)*$")


def read_lines(path: Path) -> list[tuple[str, str]]:
    """(english, spanish) as written in a data file, read independently of ml.data.text."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            eng, spa = line.split("\t")[:2]
            rows.append((eng, spa))
    return rows


@pytest.fixture(scope="module")
def spa_eng(shared_data: Path) -> Path:
    return shared_data / "spa-eng"


@pytest.fixture(scope="module")
def splits(shared_data: Path) -> PairSplits:
    return load_pairs("pairs:spa-eng", shared_data)


# --- normalize --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("¿Qué tal, Señor?", "que tal senor ?"),
        ("¡Él está aquí!", "el esta aqui !"),
        ("Tom's  dog...  ran", "tom s dog . . . ran"),
        ("  Ça va? 123 OK.  ", "ca va ? ok ."),
        ("naïve café—crème", "naive cafecreme"),  # the dash is non-ASCII: dropped, not a space
        ("naïve café - crème", "naive cafe creme"),
        ("日本 hello", "hello"),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_real_sentences(spa_eng: Path) -> None:
    rows = read_lines(spa_eng / "train-eng-spa.txt")[:500]
    for eng, spa in rows:
        for text in (eng, spa):
            out = normalize(text)
            assert out == "" or ALLOWED.match(out), out
            assert normalize(out) == out
            # the files are stored normalised except for stray spaces (where a leading ¿ or ¡ was)
            assert out == " ".join(text.split())


def test_normalize_undoes_accents_case_and_inverted_marks(spa_eng: Path) -> None:
    accents = str.maketrans({"a": "á", "e": "é", "i": "í", "o": "ó", "u": "ü", "n": "ñ"})
    rows = read_lines(spa_eng / "val-eng-spa.txt")[:300]
    for _, spa in rows:
        clean = " ".join(spa.split())
        body = clean.rstrip(" ?!.")
        mark = clean[len(body) :].strip()
        opener = {"?": "¿", "!": "¡"}.get(mark, "")
        dressed = opener + body.translate(accents).upper() + mark  # e.g. "¿CÓMO HÁS ESTÁDÓ?"
        assert normalize(dressed) == clean, dressed


def test_normalize_empty() -> None:
    assert normalize("¿¡ ,;: 42 !?") == "! ?"
    assert normalize(" ,;: 42 ") == ""


# --- Vocab ------------------------------------------------------------------------------------------


def test_vocab_build_order_and_roundtrip(spa_eng: Path) -> None:
    texts = [normalize(spa) for _, spa in read_lines(spa_eng / "val-eng-spa.txt")[:200]]
    vocab = Vocab.build(texts)
    chars = sorted(set("".join(texts)))
    assert vocab.itos == ["<pad>", "<sos>", "<eos>", "<unk>", *chars]
    assert (PAD, SOS, EOS, UNK) == (0, 1, 2, 3)
    assert len(vocab) == 4 + len(chars)
    for text in texts[:50]:
        ids = vocab.encode(text)
        assert len(ids) == len(text) and min(ids) >= 4
        assert [vocab.itos[i] for i in ids] == list(text)
        assert vocab.decode(ids) == text


def test_vocab_unknown_and_decode_rules() -> None:
    vocab = Vocab.build(["ab c"])
    assert vocab.encode("abz") == [vocab.stoi["a"], vocab.stoi["b"], UNK]
    a, b = vocab.stoi["a"], vocab.stoi["b"]
    assert vocab.decode([SOS, a, PAD, b, EOS, a, b]) == "ab"
    assert vocab.decode(torch.tensor([a, b, a])) == "aba"
    assert vocab.known_fraction("ab zz") == pytest.approx(2 / 4)
    assert vocab.known_fraction("zz") == 0.0
    assert vocab.known_fraction("   ") == 0.0


def test_vocab_list_roundtrip() -> None:
    vocab = Vocab.build(["hola amigo !", "que tal ?"])
    itos = vocab.to_list()
    assert isinstance(itos, list) and all(isinstance(s, str) for s in itos)
    again = Vocab.from_list(itos)
    assert again == vocab and again.stoi == vocab.stoi
    itos.append("#")  # the returned list is a copy
    assert len(vocab) == len(again)
    with pytest.raises(ValueError):
        Vocab.from_list(["a", "b"])


# --- load_pairs --------------------------------------------------------------------------------------


def test_load_pairs_real_data(splits: PairSplits, spa_eng: Path) -> None:
    train_raw = read_lines(spa_eng / "train-eng-spa.txt")
    val_raw = read_lines(spa_eng / "val-eng-spa.txt")
    expected_train = [
        (normalize(s), normalize(e))
        for e, s in train_raw
        if len(normalize(s)) < 20 and len(normalize(e)) < 20
    ]
    assert splits.train == expected_train
    assert len(splits.val) == sum(1 for e, s in val_raw if len(normalize(s)) < 20 and len(normalize(e)) < 20)
    # no test file: test is the val split
    assert splits.test == splits.val
    assert splits.name == "spa-eng"
    # vocabularies from the train split
    assert splits.src_vocab.itos[4:] == sorted(set("".join(s for s, _ in splits.train)))
    assert splits.tgt_vocab.itos[4:] == sorted(set("".join(t for _, t in splits.train)))


def test_load_pairs_direction_and_max_length(shared_data: Path, splits: PairSplits) -> None:
    flipped = load_pairs("pairs:spa-eng", shared_data, direction="eng-spa")
    assert flipped.train == [(t, s) for s, t in splits.train]
    assert flipped.src_vocab == splits.tgt_vocab

    short = load_pairs("pairs:./spa-eng", shared_data, max_length=12)
    both = [(s, t) for s, t in splits.train if len(s) < 12 and len(t) < 12]
    assert short.train == both
    assert 0 < len(short.train) < len(splits.train)
    for split in (short.train, short.val, short.test):
        assert all(len(s) < 12 and len(t) < 12 for s, t in split)


def test_load_pairs_absolute_path_and_limit(shared_data: Path, splits: PairSplits, tmp_path: Path) -> None:
    absolute = load_pairs(f"pairs:{shared_data / 'spa-eng'}", tmp_path, limit=50)
    assert absolute.train == splits.train[:50]
    assert absolute.val == splits.val[:50]


def test_load_pairs_test_file_and_train_only_vocab(spa_eng: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mini"
    folder.mkdir()
    lines = (spa_eng / "train-eng-spa.txt").read_text(encoding="utf-8").splitlines()
    (folder / "train-x.txt").write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    (folder / "val-x.txt").write_text("zzz qqq .\tjjj www .\t1\n" + "\n".join(lines[40:50]), encoding="utf-8")
    (folder / "test-x.txt").write_text("\n".join(lines[50:60]), encoding="utf-8")
    data = load_pairs("pairs:mini", tmp_path)
    assert len(data.train) == 40 and len(data.val) == 11 and len(data.test) == 10
    assert data.test != data.val
    train_chars = set("".join(s for s, _ in data.train))
    assert set(data.src_vocab.itos[4:]) == train_chars
    assert data.val[0] == ("jjj www .", "zzz qqq .")


def test_load_pairs_errors(shared_data: Path, spa_eng: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_pairs("pairs:no-such-folder", tmp_path)
    with pytest.raises(DataError, match="pairs:PATH"):
        load_pairs("spa-eng", shared_data)
    with pytest.raises(DataError, match="direction"):
        load_pairs("pairs:spa-eng", shared_data, direction="fra-eng")
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    shutil.copy(spa_eng / "train-eng-spa.txt", only_train / "train-eng-spa.txt")
    with pytest.raises(DataError, match=r"val-\*\.txt"):
        load_pairs("pairs:only-train", tmp_path)
    with pytest.raises(DataError, match="max_length=2"):
        load_pairs("pairs:spa-eng", shared_data, max_length=2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-a.txt").write_text("hello .\thola .\nno tab here\n", encoding="utf-8")
    (bad / "val-a.txt").write_text("hello .\thola .\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_pairs("pairs:bad", tmp_path)
    with pytest.raises(DataError) as info:
        load_pairs("pairs:no-such-folder", tmp_path)
    assert "\n" not in str(info.value)


def test_read_pairs_file(spa_eng: Path, shared_data: Path, tmp_path: Path) -> None:
    val = load_pairs("pairs:spa-eng", shared_data, max_length=15).val
    assert read_pairs_file(spa_eng / "val-eng-spa.txt", max_length=15) == val
    flipped = read_pairs_file(str(spa_eng / "val-eng-spa.txt"), direction="eng-spa", max_length=15)
    assert flipped == [(t, s) for s, t in val]
    with pytest.raises(DataError, match="not found"):
        read_pairs_file(tmp_path / "missing.txt")


# --- pad_batch ---------------------------------------------------------------------------------------


def test_pad_batch(splits: PairSplits) -> None:
    seqs = [splits.src_vocab.encode(s) for s, _ in splits.train[:7]]
    ids, lengths = pad_batch(seqs)
    assert ids.dtype == torch.int64 and lengths.dtype == torch.int64
    assert ids.shape == (7, max(map(len, seqs)))
    assert lengths.tolist() == [len(s) for s in seqs]
    for row, seq in zip(ids.tolist(), seqs, strict=True):
        assert row[: len(seq)] == seq and all(x == PAD for x in row[len(seq) :])

    ids, lengths = pad_batch(seqs, add_sos=True, add_eos=True)
    assert lengths.tolist() == [len(s) + 2 for s in seqs]
    for row, seq in zip(ids.tolist(), seqs, strict=True):
        assert row[: len(seq) + 2] == [SOS, *seq, EOS]
        assert all(x == PAD for x in row[len(seq) + 2 :])
