"""How many torch CPU threads training and inference use: the physical cores this process may run on.

One setting everywhere (`ktune train --threads`, `ktune ask/predict/chat --threads`, `TrainConfig.threads`,
`PipelineConfig.threads`):

  auto (0 or None)  the physical cores in the process's CPU affinity set; `$KTUNE_THREADS` overrides it
  N                 exactly N threads
  adaptive          training only, opt-in: start at the physical cores and re-check the other processes'
                    CPU use every few steps (`AdaptiveThreads`)

Why not one load sample: a single 0.5 s look at /proc/stat, taken right after loading and converting the
model, once saw a busy core and kept one thread for a whole demo run (half the steps fit in its time cap).
Hyper-threads are not counted: two threads on the sibling of one core only wait on each other in GEMMs.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ktune.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
ADAPTIVE = "adaptive"
ENV = "KTUNE_THREADS"
SYS_CPU = Path("/sys/devices/system/cpu")
PROC_CPUINFO = Path("/proc/cpuinfo")


def parse_threads(value) -> int | str:
    """A threads setting from a flag, a config file or Python -> a positive int, "auto" or "adaptive"."""
    if value is None:
        return AUTO
    if isinstance(value, bool):
        raise ConfigError(f"threads must be a positive integer, 'auto' or 'adaptive', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"threads must be >= 0 (0 = auto), got {value}")
        return AUTO if value == 0 else value
    text = str(value).strip().lower()
    if text in (AUTO, ADAPTIVE):
        return text
    if text.isdigit():
        return parse_threads(int(text))
    raise ConfigError(f"threads must be a positive integer, 'auto' or 'adaptive', got {value!r}")


def allowed_cpus() -> set[int]:
    """The logical CPUs this process may run on (its affinity set; every CPU where that is unknown)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int] | None = None, sys_cpu: Path = SYS_CPU, cpuinfo: Path = PROC_CPUINFO) -> int:
    """Physical cores among `cpus` (default: the affinity set): sysfs topology, else /proc/cpuinfo, else the
    logical count. At least 1."""
    cpus = allowed_cpus() if cpus is None else set(cpus)
    if not cpus:
        return 1
    cores = _cores_from_sysfs(cpus, sys_cpu)
    if cores is None:
        cores = _cores_from_cpuinfo(cpus, cpuinfo)
    return max(1, cores if cores is not None else len(cpus))


def _cores_from_sysfs(cpus: set[int], sys_cpu: Path) -> int | None:
    groups = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topo / "physical_package_id").read_text().strip()
            siblings = (topo / "thread_siblings_list").read_text().strip()
        except OSError:
            return None
        groups.add((package, siblings))
    return len(groups)


def _cores_from_cpuinfo(cpus: set[int], cpuinfo: Path) -> int | None:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cores = set()
    for block in re.split(r"\n\s*\n", text):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        if int(fields["processor"]) not in cpus:
            continue
        if "core id" not in fields:
            return None  # no topology (some ARM kernels): count logical CPUs instead
        cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def env_threads() -> int | None:
    """`$KTUNE_THREADS` as a positive int, None when unset; a bad value is a ConfigError naming it."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"${ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def resolve_threads(setting=None, processes: int | None = None) -> int:
    """The thread count a setting means now: N as given; auto and adaptive start at $KTUNE_THREADS or the
    physical cores, shared among the `processes` on this machine (default: $LOCAL_WORLD_SIZE under
    `accelerate launch` / torchrun, else 1)."""
    value = parse_threads(setting)
    if isinstance(value, int):
        return value
    if processes is None:
        local = os.environ.get("LOCAL_WORLD_SIZE", "1")
        processes = int(local) if local.isdigit() and int(local) > 0 else 1
    return env_threads() or max(1, physical_cores() // processes)


def apply_threads(setting=None) -> int:
    """Set torch's intra-op threads from a setting; returns the count."""
    import torch

    n = resolve_threads(setting)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.debug("torch threads: %d (%s)", n, parse_threads(setting))
    return n


class CpuSampler:
    """Cores kept busy by *other* processes between two calls, from /proc/stat minus this process's own CPU
    time (no sleeping: the window is the time between calls, e.g. a few training steps)."""

    def __init__(self, stat: Path = Path("/proc/stat")):
        self.stat = stat
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            with open(self.stat, encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])  # guest time is already counted in user
        own = sum(os.times()[:2])  # user + system seconds of this process (all its threads)
        return (total - idle) / tick, total / tick, own

    def other_busy_cores(self) -> float | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        cpus = os.cpu_count() or 1
        wall = (now[1] - last[1]) / cpus  # /proc/stat totals count every CPU
        others = (now[0] - last[0]) - (now[2] - last[2])
        return max(0.0, others / max(wall, 1e-9))


class AdaptiveThreads:
    """Opt-in (`--threads adaptive`): every `every` steps, use the physical cores not kept busy by other
    processes over that window (at least 1), so threads go back up when the other work ends.

    Decided from a window of several steps, never from one instant, and re-decided for the whole run."""

    def __init__(self, every: int = 20, cores: int | None = None, sampler: CpuSampler | None = None, set_threads=None):
        import torch

        self.every = every
        self.cores = cores or resolve_threads(AUTO)
        self.sampler = sampler or CpuSampler()
        self._set = set_threads or torch.set_num_threads
        self.current = self.cores
        self._set(self.current)
        self.history: list[tuple[int, int]] = []  # (step, threads) at each change

    def __call__(self, step: int, _state: dict | None = None) -> None:
        if step % self.every:
            return
        busy = self.sampler.other_busy_cores()
        if busy is None:
            return
        want = max(1, min(self.cores, self.cores - int(busy + 0.5)))
        if want != self.current:
            log.info("adaptive threads: %d -> %d at step %d (other processes kept %.1f cores busy)",
                     self.current, want, step, busy)
            self.current = want
            self._set(want)
            self.history.append((step, want))
