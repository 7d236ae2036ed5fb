"""A one-line description of the machine a number was measured on (for metrics files and the README)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe_machine() -> str:
    """e.g. 'AMD EPYC, 2 cores, avx512_bf16, 23 GiB RAM, Linux x86_64'."""
    features = [f for f in ("amx_bf16", "avx512_bf16") if f in cpu_flags()]
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        ram_text = f"{ram:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        ram_text = "RAM unknown"
    parts = [cpu_model(), f"{os.cpu_count()} cores", *features, ram_text, f"{platform.system()} {platform.machine()}"]
    return ", ".join(parts)


def trained_on(config: dict) -> str | None:
    """Where a recorded run trained, in a few words: 'AMD EPYC' or 'Intel Xeon' (the processor of its machine
    line, without trademark signs), or the GPU's name for a run trained with --device cuda; None if unrecorded."""
    machine = config.get("machine")
    if not machine:
        return None
    if config.get("device") == "cuda":
        return machine.rsplit(",", 1)[-1].strip()
    return machine.split(",")[0].replace("(R)", "").replace(" Processor", "").strip()
