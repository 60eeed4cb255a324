"""Character-level encoder-decoder: bi-LSTM encoder, LSTM decoder, optional attention, tied output layer.

The decoder has no input feeding, so one call runs it over a whole target sequence (teacher forcing) and
a call with T=1 advances it one step (search); both give the same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.data.text import PAD
from ml.models.attention import BilinearAttention

State = tuple[Tensor, Tensor]  # (h, c), each (1, B, H)

# A gate pre-activation this far from 0 saturates the sigmoid to exactly 0.0 or 1.0 in float32 (exp(1e4)
# overflows to inf), far beyond anything the weights, biases or a state in [-1, 1] can add.
_SHUT = 1e4


class Encoded(NamedTuple):
    memory: Tensor  # (B, S, H) encoder outputs, zero on padding
    mask: Tensor  # (B, S) bool, True on real source positions
    state: State  # decoder initial state, each (1, B, H)

    def index_select(self, rows: Tensor) -> Encoded:
        """The batch rows `rows` (N,) of everything, e.g. each sentence repeated once per beam."""
        h, c = self.state
        return Encoded(
            memory=self.memory.index_select(0, rows),  # (N, S, H)
            mask=self.mask.index_select(0, rows),  # (N, S)
            state=(h.index_select(1, rows), c.index_select(1, rows)),  # (1, N, H) each
        )

    def repeat_interleave(self, times: int) -> Encoded:
        """Each row repeated `times` times in a row: row b becomes rows b*times ... b*times+times-1."""
        rows = torch.arange(self.memory.size(0), device=self.memory.device).repeat_interleave(times)  # (B*k,)
        return self.index_select(rows)


class MaskDropout(nn.Module):
    """Inverted dropout, as nn.Dropout, from 16 random bits per element: about 2x faster on CPU.

    One 64-bit draw serves four elements (uniform floats cost one draw each, bernoulli_ more). The drop
    probability is p rounded to a multiple of 1/65536; kept values are scaled by 1 / (keep probability).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError("dropout must be in [0, 1)")
        self.p = p
        self.threshold = round(p * 65536)  # a 16-bit draw below this drops its element
        self.scale = 65536 / (65536 - self.threshold)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        draws = bits.view(torch.int16)[:n].view(x.shape)  # same shape as x, uniform over the int16 range
        keep = draws >= self.threshold - 32768  # True with probability 1 - threshold / 65536
        return x * keep.to(x.dtype).mul_(self.scale)


class Seq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        hidden_size: int = 128,
        attention: bool = False,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if hidden_size < 2 or hidden_size % 2:
            raise ValueError(
                "hidden_size must be an even number >= 2 (the encoder splits it over 2 directions)"
            )
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size
        self.hidden_size = hidden_size
        self.use_attention = attention
        self.dropout_p = dropout

        self.src_embedding = nn.Embedding(src_vocab_size, hidden_size, padding_idx=PAD)
        self.encoder = nn.LSTM(hidden_size, hidden_size // 2, batch_first=True, bidirectional=True)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, hidden_size)
        self.decoder = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.attention = BilinearAttention(hidden_size) if attention else None
        self.out_bias = nn.Parameter(torch.zeros(tgt_vocab_size))
        self.dropout = MaskDropout(dropout)

        # Small embeddings: the target one is also the output layer, so large values mean large logits.
        nn.init.uniform_(self.src_embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.tgt_embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.src_embedding.weight[PAD].zero_()

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src (B, S) int64 PAD-padded, src_lengths (B,) -> Encoded; results do not depend on padding.

        Exactly what the bi-LSTM computes on a packed sequence (`pack_padded_sequence`), without packing:
        see `_encode_padded`. Every length must be in [1, S].
        """
        batch, steps = src.shape
        lengths_cpu = src_lengths.detach().to("cpu", torch.int64)  # (B,)
        if batch and (int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > steps):
            raise ValueError(f"source lengths must be in [1, {steps}]")
        emb = self.dropout(self.src_embedding(src))  # (B, S, H)
        lengths = src_lengths.to(src.device)  # (B,)
        if bool((lengths_cpu == steps).all()):
            # No padding: one plain call (the padded path's extra input column and gather are not needed).
            memory, (h_n, c_n) = self.encoder(emb)  # (B, S, H); h_n, c_n: (2, B, H/2)
        else:
            memory, h_n, c_n = self._encode_padded(emb, lengths)
        positions = torch.arange(steps, device=src.device)  # (S,)
        mask = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
        h = torch.cat([h_n[0], h_n[1]], dim=-1).unsqueeze(0)  # (1, B, H)
        c = torch.cat([c_n[0], c_n[1]], dim=-1).unsqueeze(0)  # (1, B, H)
        return Encoded(memory=memory, mask=mask, state=(h, c))

    def _encode_padded(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The bi-LSTM over a right-padded batch in one fused call, equal to the packed result.

        emb (B, S, H), lengths (B,) -> memory (B, S, H) (zero on padding), h_n and c_n (2, B, H/2).

        Each step gets one more input, 1.0 on padding, whose weights (constants, not parameters) add -_SHUT
        to the input and output gates' pre-activations and +_SHUT to the forget gate's. On a pad step the
        gates are then exactly i = 0, f = 1, o = 0: the cell state passes through unchanged (c = c) and
        the output is exactly 0. So the backward direction, which reads the trailing pads first, starts its
        first real step from the zero state, as packing does, and ends with the packed final state; the
        forward direction's real steps never see a pad, its cell state at the end is the one after the last
        real character, and its final h (which a closed output gate zeroes on pads) is taken from its
        output at position len-1. Saturated gates have zero derivative, so gradients are the packed ones
        too. On CPU this costs about what an unpadded batch of the same width does; packing cost 2-3x more
        (forward + backward of a (64, 18, 128) batch, one thread).
        """
        lstm = self.encoder
        batch, steps, _ = emb.shape
        half = lstm.hidden_size  # H/2 per direction
        positions = torch.arange(steps, device=emb.device)  # (S,)
        is_pad = (positions.unsqueeze(0) >= lengths.unsqueeze(1)).to(emb.dtype)  # (B, S) 1.0 on padding
        x = torch.cat([emb, is_pad.unsqueeze(2)], dim=2)  # (B, S, H+1)
        shut = emb.new_zeros(4 * half, 1)  # (4H/2, 1): gate rows in nn.LSTM's order i, f, g, o
        shut[:half] = -_SHUT  # input gate closed
        shut[half : 2 * half] = _SHUT  # forget gate open: c passes through
        shut[3 * half :] = -_SHUT  # output gate closed: h = 0
        params = [
            torch.cat([lstm.weight_ih_l0, shut], dim=1), lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0,
            torch.cat([lstm.weight_ih_l0_reverse, shut], dim=1), lstm.weight_hh_l0_reverse,
            lstm.bias_ih_l0_reverse, lstm.bias_hh_l0_reverse,
        ]
        zeros = emb.new_zeros(2, batch, half)  # (2, B, H/2) initial (h, c) of both directions
        memory, h_n, c_n = torch.lstm(x, (zeros, zeros), params, True, 1, 0.0, self.training, True, True)
        last = (lengths - 1).view(batch, 1, 1).expand(batch, 1, half)  # (B, 1, H/2)
        h_forward = memory[:, :, :half].gather(1, last).squeeze(1)  # (B, H/2) after each row's last char
        return memory, torch.stack([h_forward, h_n[1]]), c_n  # (B, S, H), (2, B, H/2), (2, B, H/2)

    def decode(self, tgt_in: Tensor, state: State, encoded: Encoded) -> tuple[Tensor, State, Tensor | None]:
        """tgt_in (B, T) from state (1, B, H) x2 -> logits (B, T, V), new state, attn (B, T, S) | None."""
        emb = self.dropout(self.tgt_embedding(tgt_in))  # (B, T, H)
        out, new_state = self.decoder(emb, state)  # (B, T, H)
        attn = None
        if self.attention is not None:
            out, attn = self.attention(out, encoded.memory, encoded.mask)  # (B, T, H), (B, T, S)
        out = self.dropout(out)  # (B, T, H)
        logits = F.linear(out, self.tgt_embedding.weight, self.out_bias)  # (B, T, V)
        return logits, new_state, attn

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src (B, S), src_lengths (B,), tgt_in (B, T) = SOS + target -> logits (B, T, V)."""
        encoded = self.encode(src, src_lengths)
        logits, _, _ = self.decode(tgt_in, encoded.state, encoded)  # (B, T, V)
        return logits
