"""One fixed-shape call captured as a CUDA graph: replaying it launches every kernel of the
call at once, which is what makes batch-1 decode (hundreds of microsecond-sized kernels)
cost the kernels' time rather than the launches'."""

from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP_CALLS = 3  # kernels pick their configurations and allocate before capture


class GraphedCall:
    """Replays write into the same output tensor: a caller that keeps a result past the next
    call copies it (the gpu engine copies every result to the host)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor,
                 pool: object = None) -> None:
        self.static_input = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                fn(self.static_input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.static_output = fn(self.static_input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output
