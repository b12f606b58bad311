"""FPGA device profiles for the resource model: data-sheet capacities and an assumed clock.

Capacities are the parts' data-sheet totals (AMD/Xilinx DS180, DS891, DS962). The clock is
the target a typical HLS design closes timing at on that family, an assumption the report
states beside every latency. `int8_per_dsp`: int8 x int8 products one DSP slice computes per
cycle: 1 on the DSP48E1 (25 x 18 multiplier); 2 on the DSP48E2 (27 x 18), packing two
products that share one operand (AMD WP486), which every MAC lane here does: one activation
against two output channels' weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

BRAM_BITS = 36 * 1024  # one BRAM36 block
URAM_BITS = 288 * 1024  # one UltraRAM block


@dataclass(frozen=True)
class Device:
    key: str
    name: str
    part: str
    dsp: int
    lut: int
    ff: int
    bram36: int
    uram: int
    clock_mhz: float
    dsp_kind: str
    int8_per_dsp: int
    multiplier_width: int  # the DSP's wider multiplier input, bits

    def as_dict(self) -> dict:
        return asdict(self)


DEVICES: dict[str, Device] = {
    "artix7-100t": Device("artix7-100t", "Artix-7 100T", "xc7a100t", dsp=240, lut=63_400,
                          ff=126_800, bram36=135, uram=0, clock_mhz=100.0, dsp_kind="DSP48E1",
                          int8_per_dsp=1, multiplier_width=25),
    "zu9eg": Device("zu9eg", "Zynq UltraScale+ ZU9EG", "xczu9eg", dsp=2_520, lut=274_080,
                    ff=548_160, bram36=912, uram=0, clock_mhz=200.0, dsp_kind="DSP48E2",
                    int8_per_dsp=2, multiplier_width=27),
    "u250": Device("u250", "Alveo U250", "xcu250", dsp=12_288, lut=1_728_000, ff=3_456_000,
                   bram36=2_688, uram=1_280, clock_mhz=300.0, dsp_kind="DSP48E2",
                   int8_per_dsp=2, multiplier_width=27),
}


def device(key: str) -> Device:
    if key not in DEVICES:
        raise ValueError(f"unknown fpga device {key!r} (known: {', '.join(DEVICES)})")
    return DEVICES[key]
