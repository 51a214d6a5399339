"""What hardware swapd sees: GPUs (total and free memory), CPU, system RAM.

An :class:`Inventory` asks several sources and keeps every answer it got; a source that fails
(tool not installed, driver not loaded, a timeout, output it cannot read) is reported in the
snapshot's ``sources`` — never fatal. Sources, in order:

- ``nvml``: NVIDIA's management library through the optional ``pynvml`` module
  (``pip install nvidia-ml-py``);
- ``nvidia-smi``: ``nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.free
  --format=csv,noheader,nounits`` (MiB), used for NVIDIA devices when NVML gave none (and
  ``--query-gpu=driver_version`` for the driver version, which recipes use to pick images);
- ``rocm-smi``: ``rocm-smi --showmeminfo vram --showproductname --json`` (bytes);
- ``meminfo``: ``/proc/meminfo``, capped by the cgroup's memory limit (v2 ``memory.max``, or
  v1 ``memory.limit_in_bytes``) when swapd runs in a container;
- ``cpu``: ``/proc/cpuinfo`` and the CPUs this process may run on.

Snapshots are cached for :data:`DEFAULT_MAX_AGE` seconds (free GPU memory changes as engines
come and go; ``refresh=True`` asks again). The placement inventory (``swapd.inventory``) reuses
:class:`Device` and :meth:`Inventory.detect`; ``GET /api/hardware`` answers
:meth:`Snapshot.as_dict`.

How busy and hot each GPU is (``swapd nodes``): :func:`probe_activity` (NVML's utilisation
rates and temperature, else ``nvidia-smi --query-gpu=index,utilization.gpu,temperature.gpu``).

What a set of processes uses, for learning a model's real need: :func:`gpu_processes` (GPU
memory per process: NVML's ``nvmlDeviceGetComputeRunningProcesses``, else ``nvidia-smi
--query-compute-apps``), :func:`pid_tree` and :func:`rss_bytes` (resident memory of a process
and its descendants, from ``/proc``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

MIB = 1024 * 1024
KIB = 1024
PROBE_TIMEOUT = 10.0  # seconds one external tool may take
DEFAULT_MAX_AGE = 5.0  # seconds a snapshot is reused
NVIDIA_SMI_QUERY = "index,name,uuid,memory.total,memory.free"
COMPUTE_APPS_QUERY = "gpu_uuid,pid,used_memory"
ACTIVITY_QUERY = "index,utilization.gpu,temperature.gpu"
_VERSION = re.compile(r"\d+(\.\d+)+")
# NVML_VALUE_NOT_AVAILABLE for an unsigned long long (older bindings pass it through)
_NVML_NOT_AVAILABLE = (1 << 64) - 1
# A cgroup v1 "no limit" is a huge number (the page-rounded max int64).
_NO_LIMIT = 1 << 60


class ProbeError(Exception):
    """A source could not answer (the message says why, for ``sources[].error``)."""


@dataclass(frozen=True, slots=True)
class Device:
    """One accelerator. Memory in bytes; ``None`` when the source does not say."""

    index: int
    vendor: str  # nvidia | amd
    name: str
    total_bytes: int | None
    free_bytes: int | None
    uuid: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Memory:
    """System RAM as this process may use it (bytes)."""

    total_bytes: int
    available_bytes: int | None
    cgroup_limit_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Cpu:
    model: str | None
    logical_cpus: int | None
    usable_cpus: int | None  # the CPUs this process may run on (affinity / cpuset)
    architecture: str


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Nvidia:
    """What an NVIDIA source answered: its devices and the driver version."""

    devices: list[Device]
    driver_version: str | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """How busy (percent of time a kernel ran) and how hot (degrees C) one GPU is; None where
    the source does not say. Asked on demand (``swapd nodes``), not by the inventory."""

    utilization_percent: float | None
    temperature_c: float | None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU (bytes; ``None`` where the driver does not say,
    e.g. under Windows WDDM)."""

    pid: int
    index: int | None  # device index; None when its uuid names no known device
    used_bytes: int | None
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    captured_at: float
    devices: tuple[Device, ...]
    memory: Memory | None
    cpu: Cpu | None
    sources: tuple[Source, ...]
    driver_version: str | None = None  # NVIDIA driver, e.g. "570.86.15"

    @property
    def usable(self) -> bool:
        """At least one source answered."""
        return any(s.ok for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "captured_at": self.captured_at,
            "devices": [asdict(d) for d in self.devices],
            "memory": asdict(self.memory) if self.memory else None,
            "cpu": asdict(self.cpu) if self.cpu else None,
            "sources": [asdict(s) for s in self.sources],
            "driver_version": self.driver_version,
        }


# ── parsers (pure: tested with recorded outputs) ────────────────────────────────────────────


def _number(text: str) -> float | None:
    text = text.strip()
    if not text or text.startswith("[") or text.upper() in ("N/A", "NOT SUPPORTED"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_nvidia_smi(text: str) -> list[Device]:
    """``nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.free --format=csv,
    noheader,nounits`` output (memory in MiB; ``[N/A]`` for unknown values)."""
    devices = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5:
            raise ProbeError(f"nvidia-smi line {n}: expected 5 fields, got {line!r}")
        # a name may itself contain commas: index first, uuid and the two numbers last
        index, name = fields[0], ", ".join(fields[1:-3])
        uuid, total, free = fields[-3], _number(fields[-2]), _number(fields[-1])
        if not index.isdigit():
            raise ProbeError(f"nvidia-smi line {n}: not a device index: {index!r}")
        devices.append(
            Device(
                index=int(index),
                vendor="nvidia",
                name=name,
                total_bytes=int(total * MIB) if total is not None else None,
                free_bytes=int(free * MIB) if free is not None else None,
                uuid=uuid if uuid and not uuid.startswith("[") else None,
                source="nvidia-smi",
            )
        )
    return devices


def parse_rocm_smi(text: str) -> list[Device]:
    """``rocm-smi --showmeminfo vram --showproductname --json`` output: one object per
    ``cardN`` with ``VRAM Total Memory (B)`` and ``VRAM Total Used Memory (B)`` (strings)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProbeError(f"rocm-smi printed no JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProbeError("rocm-smi JSON is not an object")
    devices = []
    for key, card in data.items():
        if not (key.startswith("card") and key[4:].isdigit() and isinstance(card, dict)):
            continue  # e.g. "system"
        total = _number(str(card.get("VRAM Total Memory (B)", "")))
        used = _number(str(card.get("VRAM Total Used Memory (B)", "")))
        name = next(
            (
                str(card[k])
                for k in ("Card Series", "Card series", "Card Model", "Card model", "Device Name")
                if card.get(k)
            ),
            f"AMD GPU {key[4:]}",
        )
        devices.append(
            Device(
                index=int(key[4:]),
                vendor="amd",
                name=name,
                total_bytes=int(total) if total is not None else None,
                free_bytes=int(total - used) if total is not None and used is not None else None,
                uuid=str(card["Unique ID"]) if card.get("Unique ID") else None,
                source="rocm-smi",
            )
        )
    return sorted(devices, key=lambda d: d.index)


def parse_driver_version(text: str) -> str | None:
    """The driver version from ``nvidia-smi --query-gpu=driver_version --format=csv,noheader``
    (one line per GPU, all alike); None when the output is not a version."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if _VERSION.fullmatch(first) else None


def parse_compute_apps(text: str, devices: Sequence[Device]) -> list[GpuProcess]:
    """``nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,
    nounits`` (MiB): one line per process and GPU; the uuid is matched to ``devices``'
    indexes. No processes: no lines (older tools print "No running processes found")."""
    by_uuid = {d.uuid: d.index for d in devices if d.uuid}
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.strip().lower().startswith("no running"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[1].isdigit():
            raise ProbeError(f"nvidia-smi compute-apps line {n}: unexpected {line!r}")
        used = _number(fields[2])
        uuid = fields[0] if not fields[0].startswith("[") else None
        found.append(
            GpuProcess(
                pid=int(fields[1]),
                index=by_uuid.get(uuid) if uuid else None,
                used_bytes=int(used * MIB) if used is not None else None,
                uuid=uuid,
            )
        )
    return found


def parse_meminfo(text: str) -> tuple[int, int | None]:
    """(MemTotal, MemAvailable) in bytes from ``/proc/meminfo``."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = KIB if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[key.strip()] = int(parts[0]) * scale
    if "MemTotal" not in values:
        raise ProbeError("/proc/meminfo has no MemTotal")
    return values["MemTotal"], values.get("MemAvailable")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_memory(root: Path = Path("/sys/fs/cgroup")) -> tuple[int | None, int | None]:
    """(limit, usage) in bytes of this process's memory cgroup; ``None`` where unlimited or
    unknown. Looks at the cgroup v2 unified root, then v1's memory controller."""
    for limit_file, usage_file in (
        (root / "memory.max", root / "memory.current"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes"),
    ):
        raw = _read(limit_file)
        if raw is None:
            continue
        raw = raw.strip()
        limit = int(raw) if raw.isdigit() and int(raw) < _NO_LIMIT else None
        used_raw = (_read(usage_file) or "").strip()
        return limit, int(used_raw) if used_raw.isdigit() else None
    return None, None


# ── sources ─────────────────────────────────────────────────────────────────────────────────

Runner = Callable[[list[str]], str]


def run_tool(argv: list[str]) -> str:
    """Run a tool found on ``PATH``; its stdout, or a ProbeError saying why not."""
    program = shutil.which(argv[0])
    if program is None:
        raise ProbeError(f"{argv[0]} not found on PATH")
    try:
        done = subprocess.run(
            [program, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{argv[0]} did not answer within {PROBE_TIMEOUT:g}s") from exc
    except OSError as exc:
        raise ProbeError(f"{argv[0]} could not run: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        detail = f": {said[-1][:300]}" if said else ""
        raise ProbeError(f"{argv[0]} exited with status {done.returncode}{detail}")
    return done.stdout


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def _nvml() -> Iterator[Any]:
    """The ``pynvml`` module, initialised for the block; ProbeError when it cannot be."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError as exc:
        raise ProbeError("pynvml is not installed (pip install nvidia-ml-py)") from exc
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, …
        raise ProbeError(f"NVML unavailable: {exc}") from exc
    try:
        yield nvml
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError(f"NVML query failed: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def probe_nvml() -> Nvidia:
    with _nvml() as nvml:
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            devices.append(
                Device(
                    index=i,
                    vendor="nvidia",
                    name=_text(name),
                    total_bytes=int(mem.total),
                    free_bytes=int(mem.free),
                    uuid=_text(uuid),
                    source="nvml",
                )
            )
        return Nvidia(devices, _text(nvml.nvmlSystemGetDriverVersion()))


def probe_nvidia_smi(run: Runner = run_tool) -> Nvidia:
    # The driver query first: when the tool is missing or broken, its error is the source's
    # and the device query is not tried in vain.
    version = parse_driver_version(
        run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    )
    out = run(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"])
    return Nvidia(parse_nvidia_smi(out), version)


def parse_activity(text: str) -> dict[int, Activity]:
    """``nvidia-smi --query-gpu=index,utilization.gpu,temperature.gpu --format=csv,noheader,
    nounits`` output (percent, degrees C; ``[N/A]`` for unknown values), by device index."""
    found = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[0].isdigit():
            raise ProbeError(f"nvidia-smi activity line {n}: unexpected {line!r}")
        found[int(fields[0])] = Activity(_number(fields[1]), _number(fields[2]))
    return found


def nvml_activity() -> dict[int, Activity]:
    """Utilisation and temperature of every GPU through NVML (None where it says nothing)."""
    with _nvml() as nvml:
        found = {}
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            util = temp = None
            with contextlib.suppress(Exception):  # NVMLError_NotSupported on some devices
                util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            with contextlib.suppress(Exception):
                temp = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            found[i] = Activity(util, temp)
        return found


def probe_activity(run: Runner = run_tool, *, nvml: bool = True) -> dict[int, Activity]:
    """How busy and hot each NVIDIA GPU is: NVML (when ``nvml``: this machine only), else
    ``nvidia-smi`` through ``run``. ProbeError naming the last source that failed."""
    if nvml:
        with contextlib.suppress(ProbeError):
            return nvml_activity()
    argv = ["nvidia-smi", f"--query-gpu={ACTIVITY_QUERY}", "--format=csv,noheader,nounits"]
    return parse_activity(run(argv))


def nvml_processes() -> list[GpuProcess]:
    """Compute processes on every GPU with their memory, through NVML."""
    with _nvml() as nvml:
        found = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = getattr(proc, "usedGpuMemory", None)
                if used == _NVML_NOT_AVAILABLE:
                    used = None
                found.append(
                    GpuProcess(int(proc.pid), i, None if used is None else int(used), uuid)
                )
        return found


def gpu_processes(devices: Sequence[Device], run: Runner = run_tool) -> list[GpuProcess]:
    """GPU memory per process: NVML, else ``nvidia-smi`` (``devices`` map its uuids to
    indexes). ProbeError naming both when neither answers."""
    try:
        return nvml_processes()
    except ProbeError as nvml_error:
        try:
            out = run(
                [
                    "nvidia-smi",
                    f"--query-compute-apps={COMPUTE_APPS_QUERY}",
                    "--format=csv,noheader,nounits",
                ]
            )
        except ProbeError as smi_error:
            raise ProbeError(f"{nvml_error}; {smi_error}") from smi_error
        return parse_compute_apps(out, devices)


def probe_rocm_smi(run: Runner = run_tool) -> list[Device]:
    return parse_rocm_smi(run(["rocm-smi", "--showmeminfo", "vram", "--showproductname", "--json"]))


def probe_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> Memory:
    text = _read(meminfo)
    if text is None:
        raise ProbeError(f"cannot read {meminfo}")
    total, available = parse_meminfo(text)
    limit, used = cgroup_memory(cgroup)
    if limit is not None and limit < total:
        total = limit
        room = limit - used if used is not None else limit
        available = min(available, room) if available is not None else room
    return Memory(total_bytes=total, available_bytes=available, cgroup_limit_bytes=limit)


def parent_pids(proc: Path = Path("/proc")) -> dict[int, int]:
    """Every visible process's parent (from ``/proc/<pid>/stat``'s fourth field, read after
    the command name, which may itself hold spaces and parentheses)."""
    parents = {}
    for entry in _pid_dirs(proc):
        stat = _read(entry / "stat")
        if stat is None:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry.name)] = int(fields[1])
    return parents


def _pid_dirs(proc: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if entry.name.isdigit():
                yield entry


def pid_tree(pids: Iterable[int], proc: Path = Path("/proc")) -> set[int]:
    """``pids`` and all their descendants that are alive."""
    children: dict[int, list[int]] = {}
    for pid, parent in parent_pids(proc).items():
        children.setdefault(parent, []).append(pid)
    tree: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def rss_bytes(pids: Iterable[int], proc: Path = Path("/proc")) -> int:
    """The summed resident memory (``VmRSS``) of ``pids``; processes gone count 0."""
    total = 0
    for pid in pids:
        for line in (_read(proc / str(pid) / "status") or "").splitlines():
            if line.startswith("VmRSS:"):
                parts = line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    total += int(parts[1]) * KIB
                break
    return total


def probe_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    model = None
    for line in (_read(cpuinfo) or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            model = value.strip()
            break
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return Cpu(
        model=model or platform.processor() or None,
        logical_cpus=os.cpu_count(),
        usable_cpus=usable,
        architecture=platform.machine(),
    )


# ── inventory ───────────────────────────────────────────────────────────────────────────────


@dataclass
class Inventory:
    """Cached hardware snapshots. ``probes`` may be replaced (tests, declared hardware)."""

    max_age: float = DEFAULT_MAX_AGE
    run: Runner = run_tool
    meminfo: Path = Path("/proc/meminfo")
    cgroup: Path = Path("/sys/fs/cgroup")
    cpuinfo: Path = Path("/proc/cpuinfo")
    _cached: Snapshot | None = field(default=None, repr=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)

    def detect(self) -> Snapshot:
        """Ask every source now (blocking: external tools run as subprocesses)."""
        sources: list[Source] = []
        devices: list[Device] = []

        def attempt(name: str, probe: Callable[[], Any]) -> Any:
            try:
                result = probe()
            except ProbeError as exc:
                sources.append(Source(name, False, str(exc)))
                return None
            except Exception as exc:  # a source must never take the others down
                sources.append(Source(name, False, f"{type(exc).__name__}: {exc}"))
                return None
            sources.append(Source(name, True))
            return result

        nvml: Nvidia | None = attempt("nvml", probe_nvml)
        smi: Nvidia | None = attempt("nvidia-smi", lambda: probe_nvidia_smi(self.run))
        # NVML first; the tool when NVML is not there
        nvidia = nvml if nvml is not None and nvml.devices else smi
        devices.extend(nvidia.devices if nvidia is not None else [])
        devices.extend(attempt("rocm-smi", lambda: probe_rocm_smi(self.run)) or [])
        memory = attempt("meminfo", lambda: probe_memory(self.meminfo, self.cgroup))
        cpu = attempt("cpu", lambda: probe_cpu(self.cpuinfo))
        version = next((n.driver_version for n in (nvml, smi) if n and n.driver_version), None)
        return Snapshot(time.time(), tuple(devices), memory, cpu, tuple(sources), version)

    def cached(self) -> Snapshot | None:
        return self._cached

    async def snapshot(self, *, refresh: bool = False) -> Snapshot:
        """The cached snapshot while fresh, else a new one (detected in a worker thread; one
        detection at a time, concurrent callers share it)."""
        async with self._lock:
            cached = self._cached
            if (
                cached is not None
                and not refresh
                and time.time() - cached.captured_at < self.max_age
            ):
                return cached
            snap = await anyio.to_thread.run_sync(self.detect)
            self._cached = snap
            return snap
