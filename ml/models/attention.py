"""Bilinear (Luong "general") attention over encoder outputs, for all decoder steps at once."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BilinearAttention(nn.Module):
    """score(q, h_i) = (W_q q) . h_i; p = softmax over real source positions; out = tanh(W_o [q; c])."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, queries: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """queries (B,T,H), memory (B,S,H), mask (B,S) True where real -> (out (B,T,H), p (B,T,S))."""
        z = self.query(queries)  # (B, T, H)
        scores = torch.bmm(z, memory.transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, T, S)
        p = torch.softmax(scores, dim=-1)  # (B, T, S); exactly 0 on padding
        context = torch.bmm(p, memory)  # (B, T, H)
        out = torch.tanh(self.out(torch.cat([queries, context], dim=-1)))  # (B, T, H)
        return out, p
