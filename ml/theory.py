"""The assignment's theory questions as small, tested functions.

Convolution as a matrix product
    A convolutional layer without bias is linear in its input, so it equals one matrix product:
    `conv_as_matrix(W, (C_in, H, W))` returns the matrix M with vec(conv2d(x, W)) = M vec(x), where vec
    flattens (C, H, W) row-major. Row (o, i, j) of M holds the kernel W[o] placed over the input window
    of output pixel (i, j); every other entry is zero, so M is sparse and its weights are shared
    across rows. Zero padding only drops the taps that fall outside the input.

Parameter counts (Question 1)
    `conv2d_params` (C_out * C_in * kH * kW + C_out) and `linear_params` (n_out * n_in + n_out) count
    one layer; `conv_output_size` is floor((size + 2 * padding - kernel) / stride) + 1 (max pooling
    with kernel = stride = 2 uses the same formula). `cnn_param_count` counts inkwell's CNN layer by
    layer; `fc_replacement_param_count` counts the same network with each convolutional layer replaced
    by a fully-connected layer from that layer's flattened input to the flattened output the
    convolution produced. The conv network needs far fewer parameters because its weights are local
    and shared across positions.

Self-attention with 1x1 projections
    `self_attention_1x1(x)` treats every pixel of a 2-D array as a token of dimension 1 and sets
    W_Q = W_K = W_V = 1, so queries, keys and values all equal vec(x). The attention weights are
    P[i, j] = softmax_j(x_i * x_j) (no 1/sqrt(d) scaling since d = 1) and out_i = sum_j P[i, j] x_j.
"""

from __future__ import annotations

from itertools import pairwise
from math import prod

import torch

from ml.errors import InputError

# ---------------------------------------------------------------- convolution as a matrix


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution (or pooling) along one axis."""
    if stride < 1 or padding < 0 or kernel < 1:
        raise InputError("kernel and stride must be >= 1 and padding >= 0")
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise InputError(f"kernel {kernel} does not fit an input of size {size} with padding {padding}")
    return out


def conv_as_matrix(
    weights: torch.Tensor, input_shape: tuple[int, int, int], stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """The matrix M, shape (C_out*H_out*W_out, C_in*H*W), with vec(conv2d(x, weights)) = M vec(x).

    Built by index arithmetic: for every (output pixel, kernel tap) pair we compute the row of the
    output pixel and the column of the input pixel under that tap, then scatter the tap's weight.
    """
    if weights.dim() != 4:
        raise InputError("weights must have shape (C_out, C_in, kH, kW)")
    c_out, c_in, k_h, k_w = weights.shape
    in_c, h, w = input_shape
    if in_c != c_in:
        raise InputError(f"input has {in_c} channels but the weights expect {c_in}")
    h_out = conv_output_size(h, k_h, stride, padding)
    w_out = conv_output_size(w, k_w, stride, padding)

    def axis(n: int, dim: int) -> torch.Tensor:
        """arange(n) shaped to broadcast along `dim` of (C_out, H_out, W_out, C_in, kH, kW)."""
        shape = [1] * 6
        shape[dim] = n
        return torch.arange(n, device=weights.device).view(shape)

    o, i, j = axis(c_out, 0), axis(h_out, 1), axis(w_out, 2)
    c, u, v = axis(c_in, 3), axis(k_h, 4), axis(k_w, 5)
    y = i * stride + u - padding  # (1, H_out, 1, 1, kH, 1) input row under each tap
    x = j * stride + v - padding  # (1, 1, W_out, 1, 1, kW) input column under each tap

    full = (c_out, h_out, w_out, c_in, k_h, k_w)
    rows = ((o * h_out + i) * w_out + j).expand(full)  # index into vec(output)
    cols = ((c * h + y) * w + x).expand(full)  # index into vec(input); garbage where padded
    vals = weights.view(c_out, 1, 1, c_in, k_h, k_w).expand(full)
    inside = ((y >= 0) & (y < h) & (x >= 0) & (x < w)).expand(full)  # taps on padding contribute 0

    m = weights.new_zeros(c_out * h_out * w_out, c_in * h * w)  # (C_out*H_out*W_out, C_in*H*W)
    m[rows[inside], cols[inside]] = vals[inside]  # each (row, col) pair occurs at most once
    return m


# ---------------------------------------------------------------- parameter counts


def conv2d_params(c_in: int, c_out: int, k_h: int, k_w: int, bias: bool = True) -> int:
    """Parameters of a Conv2d layer: one kH x kW x C_in kernel (plus a bias) per output channel."""
    return c_out * c_in * k_h * k_w + (c_out if bias else 0)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Parameters of a fully-connected layer: an n_out x n_in matrix (plus a bias)."""
    return n_out * n_in + (n_out if bias else 0)


# inkwell's CNN (ml/models/cnn.py): (out channels, kernel, padding) per conv, each followed by
# ReLU and 2x2 max pooling; then the hidden sizes of the fully-connected head.
_IMAGE = (1, 28, 28)
_CONVS = ((8, 5, 2), (16, 3, 0))
_HIDDEN = (600, 120)


def _conv_stages() -> list[tuple[tuple[int, int, int], tuple[int, int, int], int]]:
    """Per conv layer: (input shape, conv output shape, kernel size); the last pooled shape follows."""
    stages = []
    c, h, w = _IMAGE
    for c_out, k, p in _CONVS:
        out = (c_out, conv_output_size(h, k, 1, p), conv_output_size(w, k, 1, p))
        stages.append(((c, h, w), out, k))
        c, h, w = c_out, conv_output_size(out[1], 2, 2), conv_output_size(out[2], 2, 2)  # max pool 2
    return stages


def _head_params(n_flat: int, n_classes: int) -> dict[str, int]:
    """The fully-connected head: n_flat -> 600 -> 120 -> n_classes."""
    sizes = (n_flat, *_HIDDEN, n_classes)
    return {f"fc{k + 1}": linear_params(a, b) for k, (a, b) in enumerate(pairwise(sizes))}


def _flat_after_convs() -> int:
    """Length of the flattened features entering the head (16 * 6 * 6 = 576)."""
    _, (c, h, w), _ = _conv_stages()[-1]
    return c * conv_output_size(h, 2, 2) * conv_output_size(w, 2, 2)


def cnn_param_count(n_classes: int = 10) -> dict[str, int]:
    """Per-layer and total parameters of inkwell's CNN: keys conv1, conv2, fc1, fc2, fc3, total."""
    counts = {
        f"conv{k + 1}": conv2d_params(shape_in[0], shape_out[0], ker, ker)
        for k, (shape_in, shape_out, ker) in enumerate(_conv_stages())
    }
    counts |= _head_params(_flat_after_convs(), n_classes)
    counts["total"] = sum(counts.values())
    return counts


def fc_replacement_param_count(n_classes: int = 10) -> dict[str, int]:
    """The same network with each conv layer replaced by a fully-connected layer of equal in/out size.

    Keys as in `cnn_param_count`; conv1 and conv2 count the fully-connected layers in their place
    (1*28*28 -> 8*28*28 and 8*14*14 -> 16*12*12).
    """
    counts = {
        f"conv{k + 1}": linear_params(prod(shape_in), prod(shape_out))
        for k, (shape_in, shape_out, _) in enumerate(_conv_stages())
    }
    counts |= _head_params(_flat_after_convs(), n_classes)
    counts["total"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------- self-attention


def self_attention_1x1(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-head self-attention over the pixels of `x` with W_Q = W_K = W_V = 1.

    Returns (P, out): P (N, N) with N = x.numel(), P[i, j] = softmax_j(x_i * x_j), and out with x's
    shape, out_i = sum_j P[i, j] x_j. Softmax subtracts each row's maximum, so large values stay finite.
    """
    if x.numel() == 0:
        raise InputError("self-attention needs at least one pixel")
    v = x.reshape(-1)  # (N,) queries = keys = values
    if not v.is_floating_point():
        v = v.float()
    scores = v[:, None] * v[None, :]  # (N, N) q_i . k_j with d = 1
    p = torch.softmax(scores, dim=1)  # (N, N) rows sum to 1
    out = p @ v  # (N,)
    return p, out.reshape(x.shape)
