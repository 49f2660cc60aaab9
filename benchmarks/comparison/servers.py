"""The servers under test, one class per kind: how each is launched, how to know it is ready and
which key to send. Each start gets a free loopback port and a fresh temporary directory.

`user_threads` starts a server with the thread setting a user would leave it at (the contention
scenarios): Alveare without --threads (adaptive), llama-server and the sdist example with every
core, llama-cpp-python without its thread options. Otherwise every server gets --threads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from machine import admin_key_in, cpu_count, free_port

from comparison.procs import kill_group

MODEL_NAME = "chat"  # loadbench's default model name; every server is told to answer to it
BENCHMARKS = Path(__file__).resolve().parents[1]


def probe_settings(
    threads: int, llama_server: str, *, alveare_timeout: float = 600, start_timeout: float = 180
) -> SimpleNamespace:
    """What the servers read from compare.py's arguments, for a probe that starts them itself:
    Alveare from this interpreter's environment, CPU kernels as each server picks them, no GPU."""
    return SimpleNamespace(
        alveare=str(Path(sys.executable).parent / "alveare"),
        llama_server=llama_server,
        threads=threads,
        cpu_kernels="auto",
        safe_kernels=False,
        alveare_timeout=alveare_timeout,
        loadbench=str(BENCHMARKS.parents[1] / "shared/bench/loadbench.py"),
        gpu=False,
        start_timeout=start_timeout,
        optimized_model="",
    )


LOOKUP_SPECIALISTS = ("summarise", "extract", "qa")


class ServerFailed(RuntimeError):
    pass


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


class Server:
    """A server under test: how to launch it, how to know it is ready, what key to send."""

    name = ""
    owns_specialists = False  # True: serves loadbench's specialists itself (model = their name)
    optimized_model = False  # True: runs on --optimized-model instead of the run's model

    def __init__(self, args, model: Path, logdir: Path, user_threads: bool = False):
        self.args, self.logdir = args, logdir
        self.original_model = model
        self.model = Path(args.optimized_model) if self.optimized_model and args.optimized_model else model
        self.user_threads = user_threads
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

    def extra_env(self) -> dict[str, str]:
        return {}

    def threads_in_use(self) -> int | None:
        """The threads the server decodes with right now, where it says (None otherwise)."""
        return None

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
    """Alveare as a user starts it, on the run's model file as it is: 8 slots, the context and KV
    layout left to it (`--ctx 0`: on a CPU with the memory, every slot the model's whole context in
    its own stream). `--optimized-model off`: a first start on the embedded model would otherwise
    make its Q8_0 copy (about a minute) in every fresh data dir; the copy is `alveare-optimized`."""

    name = "alveare"
    owns_specialists = True
    # Flags that pin the KV cache, for the variants below.
    kv_flags: tuple[str, ...] = ()

    def check(self) -> None:
        if not Path(self.args.alveare).exists():
            raise ServerFailed(f"alveare executable not found at {self.args.alveare}")

    def build_command(self) -> list[str]:
        assert self.tmp is not None
        threads = [] if self.user_threads else ["--threads", str(self.args.threads)]
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
            *threads,
            "--slots",
            "8",
            *self.kv_flags,
            *(["--cpu-kernels", self.args.cpu_kernels] if self.args.cpu_kernels != "auto" else []),
            "--optimized-model",
            "off",
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

    def threads_in_use(self) -> int | None:
        # the adaptive thread count, as the hive status reports it
        try:
            r = httpx.get(
                self.base_url + "/v1/hive/status", headers={"Authorization": f"Bearer {self.key}"}, timeout=10
            )
            return r.json()["cpu"].get("threads")
        except (httpx.HTTPError, ValueError, AttributeError, KeyError):
            return None

    def after_ready(self) -> None:
        # the admin key is printed once (on the line after "Admin API key") on a terminal or by an older
        # revision; otherwise that line gives the 0600 file in the data dir that holds it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = log_lines(self.logfile, self.log_offset)  # this start's output only
            for i, line in enumerate(lines[:-1]):
                if "Admin API key" in line:
                    self.key = admin_key_in(line) or lines[i + 1].strip()
            if self.key:
                return
            time.sleep(0.2)
        # fall back to the CLI: an account on the scale plan and a key for it
        assert self.tmp is not None
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
    """llama.cpp's C++ server: 8 slots sharing one unified 8192-cell KV cache (-kvu), like
    alveare's --slots 8 --ctx 8192 and the sdist example's kv_unified."""

    name = "llama-server"

    def check(self) -> None:
        if not Path(self.args.llama_server).exists():
            raise ServerFailed(
                f"llama-server binary not found at {self.args.llama_server} (build it: see "
                "benchmarks/README.md or pass --llama-server)"
            )

    def build_command(self) -> list[str]:
        return [*self.base_command(), "-kvu"]

    def base_command(self) -> list[str]:
        # continuous batching (-cb, the default) on
        threads = str(cpu_count() if self.user_threads else self.args.threads)
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
            threads,
            "-tb",
            threads,
            "--alias",
            MODEL_NAME,
            "--no-webui",
            # where its repacked (AMX) kernels crash on this CPU (comparison/cpu_kernels.py)
            *(["--no-repack"] if self.args.safe_kernels else []),
            *(["-ngl", "999"] if self.args.gpu else []),
        ]

    def ready_url(self) -> str:
        return self.base_url + "/health"


class LlamaServerSplit(LlamaServer):
    """llama-server's default KV layout: each of the 8 slots gets its own 1024-cell stream."""

    name = "llama-server-split"

    def build_command(self) -> list[str]:
        return self.base_command()


class LlamaServerSplitNoFlash(LlamaServerSplit):
    """llama-server's split streams with flash attention off: what Alveare's `--flash-attn auto` picks
    for split streams on a CPU (hive/engine.py flash_attention), given to llama-server too."""

    name = "llama-server-split-nofa"

    def build_command(self) -> list[str]:
        return [*self.base_command(), "-fa", "off"]


class AlveareUnified(Alveare):
    """Alveare at `--ctx 8192`: one unified pool of 8192 cells, llama-server's `-c 8192` in
    memory, and any request may use all of it."""

    name = "alveare-unified"
    kv_flags = ("--ctx", "8192")


class AlveareSplit(Alveare):
    """Alveare at `--ctx 8192 --kv-cache split`: each of the 8 slots its own 1024-cell stream, the
    same layout, memory and per-request limit as llama-server-split."""

    name = "alveare-split"
    kv_flags = ("--ctx", "8192", "--kv-cache", "split")


def require_optimized_model(args) -> None:
    if not args.optimized_model or not Path(args.optimized_model).is_file():
        raise ServerFailed("needs --optimized-model PATH (a GGUF file)")


class AlveareOptimized(Alveare):
    """Alveare on --optimized-model (the file `alveare model optimize` writes), with the run's model
    as its solo model (`--solo-model PATH`: a request running alone decodes on it), as a start on the
    embedded model serves the copy where its report measured the original's one-row step faster."""

    name = "alveare-optimized"
    optimized_model = True

    def check(self) -> None:
        require_optimized_model(self.args)
        super().check()

    solo = True

    def build_command(self) -> list[str]:
        return [*super().build_command(), "--solo-model", str(self.original_model) if self.solo else "off"]


class AlveareOptimizedCopyOnly(AlveareOptimized):
    """alveare-optimized with `--solo-model off`: the copy decodes every step (opt-in, for an A/B)."""

    name = "alveare-optimized-copy-only"
    solo = False


class LlamaServerOptimized(LlamaServerSplit):
    """llama-server in its default (split) KV mode on --optimized-model."""

    name = "llama-server-optimized"
    optimized_model = True

    def check(self) -> None:
        require_optimized_model(self.args)
        super().check()
