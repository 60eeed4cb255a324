"""Text side of the seq2seq model: normalisation, character vocabularies, sentence pairs, padding.

A pairs dataset is a folder with `train-*.txt`, `val-*.txt` and optionally `test-*.txt`; each line is
`english<TAB>spanish[<TAB>anything else]`. When there is no test file, the test split is the val split.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ml.errors import DataError

PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")
DIRECTIONS = ("spa-eng", "eng-spa")

_PUNCT = re.compile(r"([.!?])")
_NON_LETTERS = re.compile(r"[^a-z.!?]+")


def normalize(s: str) -> str:
    """Lower-case ASCII letters and `. ! ?` (each after a space); other character runs -> one space."""
    decomposed = unicodedata.normalize("NFD", s.lower())
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    ascii_only = ascii_only.encode("ascii", "ignore").decode("ascii").lower()
    spaced = _PUNCT.sub(r" \1", ascii_only)
    return _NON_LETTERS.sub(" ", spaced).strip()


class Vocab:
    """Character vocabulary: the four specials first, then the characters in sorted order."""

    def __init__(self, itos: Sequence[str]) -> None:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {', '.join(SPECIALS)}")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary must not repeat a symbol")

    @classmethod
    def build(cls, texts: Iterable[str]) -> Vocab:
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls([*SPECIALS, *sorted(chars)])

    def encode(self, text: str) -> list[int]:
        """Character ids of `text` (unknown characters -> UNK); no SOS/EOS added."""
        return [self.stoi.get(ch, UNK) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters for `ids`, stopping at the first EOS and skipping PAD/SOS (UNK shows as `<unk>`)."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, SOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return "".join(out)

    def known_fraction(self, text: str) -> float:
        """Share of the non-space characters of `text` that the vocabulary knows (0.0 when there are none)."""
        chars = [ch for ch in text if not ch.isspace()]
        if not chars:
            return 0.0
        known = sum(1 for ch in chars if ch in self.stoi and self.stoi[ch] >= len(SPECIALS))
        return known / len(chars)

    def to_list(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_list(cls, itos: Sequence[str]) -> Vocab:
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols)"


@dataclass
class PairSplits:
    name: str
    train: list[tuple[str, str]]  # (source, target), normalised
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    src_vocab: Vocab
    tgt_vocab: Vocab


def _pairs_folder(spec: str, data_dir: Path) -> Path:
    kind, sep, path = spec.partition(":")
    if kind != "pairs" or not sep or not path:
        raise DataError(f"unknown text dataset spec {spec!r}; use pairs:PATH")
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        folder = Path(data_dir) / folder
    if not folder.is_dir():
        raise DataError(f"pairs folder not found: {folder}")
    return folder


def _read_file(file: Path) -> list[tuple[str, str]]:
    """(english, spanish) pairs of one `english<TAB>spanish[<TAB>...]` file, normalised."""
    pairs: list[tuple[str, str]] = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise DataError(f"{file.name} line {number}: expected english<TAB>spanish")
            pairs.append((normalize(fields[0]), normalize(fields[1])))
    return pairs


def _orient_and_filter(
    pairs: list[tuple[str, str]], direction: str, max_length: int
) -> list[tuple[str, str]]:
    """(english, spanish) -> (source, target) for `direction`, keeping non-empty sides < max_length."""
    if direction not in DIRECTIONS:
        raise DataError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    oriented = [(spa, eng) if direction == "spa-eng" else (eng, spa) for eng, spa in pairs]
    return [(s, t) for s, t in oriented if s and t and len(s) < max_length and len(t) < max_length]


def read_pairs_file(
    path: str | Path, direction: str = "spa-eng", max_length: int = 20
) -> list[tuple[str, str]]:
    """(source, target) pairs of one file, normalised and filtered as `load_pairs` does."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"pairs file not found: {file}")
    return _orient_and_filter(_read_file(file), direction, max_length)


def _read_split(folder: Path, split: str, required: bool) -> list[tuple[str, str]] | None:
    """(english, spanish) pairs from the `split-*.txt` files of `folder`, normalised."""
    files = sorted(folder.glob(f"{split}-*.txt"))
    if not files:
        if required:
            raise DataError(f"no {split}-*.txt file in {folder}")
        return None
    return [pair for file in files for pair in _read_file(file)]


def load_pairs(
    spec: str,
    data_dir: Path,
    direction: str = "spa-eng",
    max_length: int = 20,
    limit: int | None = None,
) -> PairSplits:
    """Read a `pairs:PATH` dataset; keep pairs whose source and target are shorter than `max_length`.

    Source is Spanish and target English for "spa-eng" ("eng-spa" flips them). Pairs with a side that
    is empty once normalised are dropped too. `limit` caps each split after filtering. Vocabularies
    come from the train split only. Without a test file, test = val.
    """
    if direction not in DIRECTIONS:
        raise DataError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    folder = _pairs_folder(spec, data_dir)
    raw = {split: _read_split(folder, split, required=split != "test") for split in ("train", "val", "test")}
    if raw["test"] is None:
        raw["test"] = raw["val"]

    splits: dict[str, list[tuple[str, str]]] = {}
    for split, pairs in raw.items():
        assert pairs is not None
        kept = _orient_and_filter(pairs, direction, max_length)
        if limit is not None:
            kept = kept[:limit]
        if not kept:
            raise DataError(f"no {split} pairs in {folder} shorter than max_length={max_length}")
        splits[split] = kept

    return PairSplits(
        name=folder.name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        src_vocab=Vocab.build(s for s, _ in splits["train"]),
        tgt_vocab=Vocab.build(t for _, t in splits["train"]),
    )


def pad_batch(
    seqs: Sequence[Sequence[int]], add_sos: bool = False, add_eos: bool = False
) -> tuple[Tensor, Tensor]:
    """PAD-padded ids (B, T) int64 and lengths (B,) int64, optionally with SOS before / EOS after each."""
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    prefix = [SOS] if add_sos else []
    suffix = [EOS] if add_eos else []
    rows = [torch.tensor([*prefix, *seq, *suffix], dtype=torch.int64) for seq in seqs]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)  # (B,)
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)  # (B, T)
    return ids, lengths
