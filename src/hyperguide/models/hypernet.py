"""Hypernetworks (docs/design.md §3.2): an MLP from a latent or a question embedding to a flat adapter weight vector,
and the FiLM conditioner of the `cond-multitask-film` baseline.

Init as the paper: Kaiming-normal (ReLU gain) hidden layers, Kaiming-normal with linear gain (std 1/sqrt(fan_in))
output layer, zero biases; so generated adapter weights start small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn


class HyperNet(nn.Module):
    """in_dim -> hidden_dims (ReLU) -> out_dim, no output activation. forward: (B, in_dim) -> (B, out_dim)."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        dims = [in_dim, *hidden_dims, out_dim]
        layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            nn.init.kaiming_normal_(layer.weight, nonlinearity="linear" if last else "relu")
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, hidden_dims[-1]): the last hidden activations, the input of the output layer."""
        for layer in self.layers[:-1]:
            z = torch.relu(layer(z))
        return z

    @property
    def output_layer(self) -> nn.Linear:
        return cast(nn.Linear, self.layers[-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.hidden(z))


class FiLM(nn.Module):
    """Question embedding (B, Dq) -> per-unit scale and shift (B, H) for the adapter's hidden layer.

    The output layer starts at zero, so the modulation starts as the identity (scale 1, shift 0).
    """

    def __init__(self, cond_dim: int, hidden_dim: int, units: int) -> None:
        super().__init__()
        # Built in this order (input layer first): the layers' random init depends on it.
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * units))
        out = cast(nn.Linear, self.net[2])
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def hidden(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, cond_dim) -> (B, hidden_dim): the hidden activations, the output layer's input."""
        return cast(torch.Tensor, self.net[1](self.net[0](cond)))

    def modulation(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scale and shift from the hidden activations."""
        delta_scale, shift = self.net[2](hidden).chunk(2, dim=-1)
        return 1.0 + delta_scale, shift

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.modulation(self.hidden(cond))
