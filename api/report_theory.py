"""The report's theory section: the answers ml/theory.py computes (always ready, computed once)."""

from __future__ import annotations

from functools import lru_cache

import torch

from api.report_schemas import ConvMatrix, TheorySection
from ml.theory import cnn_param_count, conv_as_matrix, fc_replacement_param_count

# The assignment's example (tests/ml/test_theory.py, the hand example): a 3x3 input, a 2x2 kernel
# [[a, b], [c, d]], stride 1, no padding: a 4x9 matrix whose rows are the kernel laid over each window.
EXAMPLE_INPUT = (1, 3, 3)
EXAMPLE_TAPS = ("a", "b", "c", "d")
# The CNN's first layer: 8 kernels 5x5 with padding 2 over a 28x28 image.
CONV1_INPUT, CONV1_KERNEL, CONV1_PADDING = (1, 28, 28), (8, 1, 5, 5), 2


def _described(weights: torch.Tensor, input_shape: tuple[int, int, int], padding: int, symbols: bool,
               ) -> ConvMatrix:
    m = conv_as_matrix(weights, input_shape, padding=padding)
    nonzeros = int(torch.count_nonzero(m))
    matrix = None
    if symbols:  # weights 1..4 stand for the taps a..d
        matrix = [[EXAMPLE_TAPS[int(v) - 1] if v else "0" for v in row] for row in m.tolist()]
    return ConvMatrix(input_shape=list(input_shape), kernel_shape=list(weights.shape), stride=1, padding=padding,
                      matrix_shape=list(m.shape), nonzeros=nonzeros, sparsity=1.0 - nonzeros / m.numel(),
                      matrix=matrix)


@lru_cache(maxsize=1)
def theory_section() -> TheorySection:
    example = _described(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), EXAMPLE_INPUT, 0, symbols=True)
    conv1 = _described(torch.ones(CONV1_KERNEL), CONV1_INPUT, CONV1_PADDING, symbols=False)
    cnn, fc = cnn_param_count(), fc_replacement_param_count()
    return TheorySection(ready=True, conv_example=example, cnn_conv1=conv1, cnn_parameters=cnn, fc_parameters=fc,
                         ratio=fc["total"] / cnn["total"])
