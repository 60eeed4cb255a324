"""The assignment's CNN for 28x28 grey images: two conv blocks, then three linear layers."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CNN(nn.Module):
    """conv(1->8, 5x5, pad 2) -> pool -> conv(8->16, 3x3) -> pool -> 576 -> 600 -> 120 -> n_classes."""

    def __init__(self, n_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 6 * 6, 600)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(600, 120)
        self.out = nn.Linear(120, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities (B, C) for images x (B, 1, 28, 28)."""
        h = self.pool(F.relu(self.conv1(x)))  # (B, 8, 14, 14)
        h = self.pool(F.relu(self.conv2(h)))  # (B, 16, 6, 6)
        h = h.flatten(1)  # (B, 576)
        h = self.dropout(F.relu(self.fc1(h)))  # (B, 600)
        h = F.relu(self.fc2(h))  # (B, 120)
        return F.log_softmax(self.out(h), dim=-1)  # (B, C)

    def activations(self, x: Tensor) -> dict[str, Tensor]:
        """Feature maps after each conv's ReLU, before pooling, for images x (B, 1, 28, 28)."""
        a1 = F.relu(self.conv1(x))  # (B, 8, 28, 28)
        a2 = F.relu(self.conv2(self.pool(a1)))  # (B, 16, 12, 12)
        return {"conv1": a1, "conv2": a2}
