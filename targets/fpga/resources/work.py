"""What each layer of an integer design computes per image, before any folding: the input of
the resource model (resources/estimate.py), filled in per layer kind there and, for decoder
layers, in resources/decoder.py."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerWork:
    """What a layer computes per image, independent of the folding."""

    name: str
    op: str
    products: int  # int8 x int8 multiplications
    max_lanes: int  # the parallelism its loops expose
    outputs: int
    requant_bits: int  # accumulator width into the requantizer (0: no requantizer)
    adders: list[tuple[int, int]] = field(default_factory=list)  # (additions, bits) per image
    weight_bits: int = 0
    weight_count: int = 1  # the most banks a cyclic partition of the weights can make
    activation_bits: int = 0  # the output buffer
    direct_products: int = 0  # SFC: what the direct convolution would multiply
    algorithm: str = ""
    packed: bool = True  # int8 x int8 products (packable); False: wider, one per DSP
    work_adds: int = 0  # spiking layers: the additions that replace products
    work_bits: int = 0  # their accumulator width
