"""What the build machine's CPU offers, for the manifest (TVM code is built for it)."""

from __future__ import annotations

import platform
from pathlib import Path

_SIMD_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "vnni", "neon", "asimd", "sve")


def cpu_features() -> list[str]:
    """SIMD-related CPU flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(f for f in value.split() if f.startswith(_SIMD_PREFIXES))
    return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
