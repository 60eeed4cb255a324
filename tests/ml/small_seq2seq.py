"""A small attention model trained for a few seconds on real pairs, shared by decoding and benchmark tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ml.data.text import PAD, PairSplits, pad_batch
from ml.models.seq2seq import Seq2Seq


def train_small_seq2seq(data: PairSplits, hidden_size: int, steps: int, n_pairs: int = 512) -> Seq2Seq:
    """Peaked enough after `steps` Adam steps (batches of 64 from the first n_pairs) that near-ties are rare."""
    torch.manual_seed(0)
    model = Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), hidden_size=hidden_size, attention=True, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(steps):
        pairs = data.train[(step * 64) % n_pairs :][:64]
        src, src_len = pad_batch([data.src_vocab.encode(s) for s, _ in pairs])
        tgt = [data.tgt_vocab.encode(t) for _, t in pairs]
        logits = model(src, src_len, pad_batch(tgt, add_sos=True)[0])  # (B, T, V)
        tgt_out = pad_batch(tgt, add_eos=True)[0]  # (B, T)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
