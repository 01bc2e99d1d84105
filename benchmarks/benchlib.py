"""What the namespace benchmarks (kea.py, idle.py, scale.py) share: the machine description,
progress lines, process CPU time and memory from /proc, network-namespace threads, and the
result files (NAME.json in the schema report.py reads, NAME.png).

Not a library for the project: benchmarks only. Everything runs as root (namespaces).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from dataplane.lab import metric_sum as metric_value  # noqa: E402, F401 (for the benchmarks)

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLONE_NEWNET = 0x40000000
_STARTED = time.monotonic()


def progress(msg: str) -> None:
    """One progress line on stderr, with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the Labs' teardown


def need_root(*commands: str) -> None:
    """Refuse to run without root or a needed command; make SIGTERM (timeout, kill) unwind
    like Ctrl-C, so namespaces and processes are still torn down."""
    signal.signal(signal.SIGTERM, _terminated)
    if os.geteuid() != 0:
        raise SystemExit("this benchmark needs root (network namespaces); run `make bench`")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: `make bench` installs them")


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(
        ["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "lmdp": commit or "unknown",
    }


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (said on stderr) when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return None
    return plt


def save_figure(fig, path: str, title: str, fontsize: int = 9, dpi: int = 120) -> None:
    """Title a matplotlib figure, lay it out, write it (PNG) and close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    return " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # After the command: state(0) ppid ... utime is field 14 of the line, index 11 here.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_seconds(pid: int) -> float:
    """Time on CPU of every thread of a process, in seconds, to the nanosecond: the sum of
    /proc/PID/task/*/schedstat (a thread that ended in between is not counted)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of `pid` (threads made later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass


def system_cpu_seconds() -> dict[str, float]:
    """Machine-wide CPU seconds by kind (/proc/stat's first line): user, system, softirq..."""
    with open("/proc/stat") as f:
        values = [int(v) / CLK_TCK for v in f.readline().split()[1:]]
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    return dict(zip(names, values, strict=False))


def per_cpu_busy() -> dict[int, tuple[float, float]]:
    """(busy, total) CPU seconds per CPU since boot (/proc/stat cpuN lines); busy excludes
    idle and iowait. Two readings give each CPU's busy share over an interval."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) / CLK_TCK for x in vals]
                total = sum(v[:8])
                out[int(name[3:])] = (total - v[3] - v[4], total)
    return out


def busy_seconds(before: dict, after: dict) -> float:
    """CPU seconds busy on the whole machine between two `per_cpu_busy` readings."""
    return sum(after[c][0] - b[0] for c, b in before.items() if c in after)


def wait_quiet(max_cores: float = 0.15, window: float = 1.0, timeout: float = 300) -> float:
    """Wait until the machine is nearly idle (others' tests and smoke runs do not take the
    benchmark lock): `window` seconds with at most `max_cores` cores busy, or `timeout`.
    Returns the cores busy in the last window."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        b0 = per_cpu_busy()
        time.sleep(window)
        busy = busy_seconds(b0, per_cpu_busy()) / window
        if busy <= max_cores or time.monotonic() > deadline:
            if told:
                progress(f"  machine quiet enough ({busy:.2f} cores busy)")
            return busy
        if not told:
            progress(f"  waiting for other work on the machine to end ({busy:.2f} cores busy)")
            told = True


def busy_pct(before: dict, after: dict) -> dict[int, float]:
    return {
        cpu: round(100 * (after[cpu][0] - b[0]) / max(after[cpu][1] - b[1], 1e-9), 1)
        for cpu, b in before.items()
        if cpu in after
    }


# -- network namespaces from this process ---------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _enter_netns(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsThread:
    """A worker thread that lives in network namespace `ns`: sockets it creates are there.

    `run(fn, *args)` calls fn in that thread and returns its result. Cheaper and more
    precise than `ip netns exec` for polling and packet timing (no process per call).
    """

    def __init__(self, ns: str):
        self.ns = ns
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"netns-{ns}", initializer=_enter_netns, initargs=(ns,)
        )

    def run(self, fn: Callable, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> NetnsThread:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_get(url: str, timeout: float = 2.0) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# -- statistics -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# -- results ----------------------------------------------------------------------------------


def fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,.0f}{unit}" if isinstance(value, int | float) else f"{value}{unit}"


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "NOT met")


def write_results(name: str, data: dict, plot: Callable[[dict, str], None] | None) -> None:
    """results/NAME.json, results/NAME.png (when matplotlib is there), and the table on stdout."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    written = [os.path.relpath(path, ROOT)]
    if plot is not None:
        png = os.path.join(RESULTS, f"{name}.png")
        if pyplot() is not None:
            plot(data, png)
            written.append(os.path.relpath(png, ROOT))
    sys.path.insert(0, HERE)
    import report

    print(report.render_one(data))
    progress(f"wrote {', '.join(written)}")
