"""How much memory this process may use: the machine's, or its container's (cgroup) limit.

Torch-free. Used to refuse runs whose estimated peak memory cannot fit before any large
array is allocated (``roadx.predict.budget``).
"""

import os
from dataclasses import dataclass
from pathlib import Path

_MEMINFO = Path("/proc/meminfo")
_CGROUP_V2 = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """Bytes of memory: ``available`` now (free + reclaimable cache, within the container's
    limit) and ``total`` (physical memory plus swap, or the container's limit if lower)."""

    available: int
    total: int


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where the file does not exist)."""
    values: dict[str, int] = {}
    try:
        text = _MEMINFO.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def _cgroup_limit() -> tuple[int, int] | None:
    """``(limit, used)`` bytes of the cgroup v2 this process runs in, or None if unlimited."""
    try:
        limit = (_CGROUP_V2 / "memory.max").read_text().strip()
        used = (_CGROUP_V2 / "memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return int(limit), int(used)


def memory_limits() -> MemoryLimits | None:
    """Memory available to this process now and in total, or None where unknown.

    Linux: ``MemAvailable`` and ``MemTotal + SwapTotal`` of ``/proc/meminfo``, lowered to the
    cgroup v2 limit (``memory.max`` minus ``memory.current``) inside a limited container.
    Elsewhere: the physical memory (``sysconf``) as both numbers, when it can be read.
    """
    info = _meminfo()
    if "MemAvailable" in info and "MemTotal" in info:
        available = info["MemAvailable"]
        total = info["MemTotal"] + info.get("SwapTotal", 0)
    else:
        try:
            total = available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    cgroup = _cgroup_limit()
    if cgroup is not None:
        limit, used = cgroup
        available, total = min(available, max(limit - used, 0)), min(total, limit)
    return MemoryLimits(available=available, total=total)
