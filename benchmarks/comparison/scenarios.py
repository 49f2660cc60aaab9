"""What a run measures and how: the scenario list, one loadbench run against a server, the CPU
hog of the contention scenarios, and one server's turn (start it, run its scenarios, stop it)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from machine import cpu_count

from comparison.procs import RssSampler, children_cpu_s, kill_group, log, machine_busy_s, tree_cpu_s, tree_rss_kb
from comparison.registry import SERVER_CLASSES
from comparison.servers import LOOKUP_SPECIALISTS, MODEL_NAME, Server, ServerFailed

HOG_SCRIPT = Path(__file__).resolve().parent / "hog.py"
EQUAL_WORK_SCRIPT = Path(__file__).resolve().parent / "equal_work.py"
CHAT_TURNS_SCRIPT = Path(__file__).resolve().parent / "chat_turns.py"


def scenarios(args) -> list[dict]:
    """The base scenarios (every --concurrency x stream mode, so c1 and c8 streamed and not by
    default), the --shared-prompt and --chat-turns ones, the --lookup specialists, then the
    --contention pairs: the 1-client scenarios again with every server at its user-default
    threads, once quiet and once beside the hog."""

    def each(kind: str, clients: list[int], **extra) -> list[dict]:
        """One scenario per client count and stream mode: c{C}-{kind}stream / nostream."""
        return [
            {"name": f"c{c}-{kind}{'stream' if stream else 'nostream'}", "concurrency": c, "stream": stream, **extra}
            for c in clients
            for stream in args.stream_modes
        ]

    out = [sc | {"variants": args.variants if sc["concurrency"] > 1 else 1} for sc in each("", args.concurrency)]
    if args.shared_prompt:
        # One specialist's traffic: every request the same system prompt (loadbench's chat prompt),
        # sent in the messages to every server; only the user text differs.
        out += each("shared-", [c for c in args.concurrency if c > 1], variants=1, specialists="chat")
    if args.chat_turns:
        # Chat traffic: each client holds one conversation and sends its whole history every turn
        # (comparison/chat_turns.py); a server that keeps a conversation's cells prefills only the
        # new question.
        out += each("chat-", args.concurrency, variants=1, turns=args.chat_turns)
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
    if args.contention:
        for stream in args.stream_modes:
            base = f"c1-{'stream' if stream else 'nostream'}"
            for phase, hog in (("quiet", None), ("busy", args.hog)):
                out.append(
                    {
                        "name": f"{base}-{phase}",
                        "concurrency": 1,
                        "stream": stream,
                        "variants": 1,
                        "user_threads": True,
                        "hog": hog,
                        "pair": base,
                    }
                )
    return out


def rounds(scs: list[dict], reuse_server: bool) -> list[list[dict]]:
    """The batches a server process runs: one scenario each (no scenario inherits the prompt
    cache the previous one warmed; loadbench sends the same prompts every time), or with
    --reuse-server one batch per thread setting."""
    if not reuse_server:
        return [[sc] for sc in scs]
    batches = [[sc for sc in scs if not sc.get("user_threads")], [sc for sc in scs if sc.get("user_threads")]]
    return [b for b in batches if b]


def chat_turns_command(args, server: Server, sc: dict) -> list[str]:
    cmd = [
        sys.executable,
        str(CHAT_TURNS_SCRIPT),
        "--loadbench",
        str(args.loadbench),
        "--base-url",
        server.base_url,
        "--model",
        MODEL_NAME,
        "--users",
        str(sc["concurrency"]),
        "--turns",
        str(sc["turns"]),
        "--max-tokens",
        str(args.max_tokens),
        "--timeout",
        str(args.request_timeout),
        "--label",
        f"{server.name}/{sc['name']}",
    ]
    if server.key:
        cmd += ["--key", server.key]
    if sc["stream"]:
        cmd.append("--stream")
    if not args.natural_length:
        cmd.append("--equal-work")
    return cmd


def run_loadbench(args, server: Server, sc: dict) -> dict:
    if "turns" in sc:
        return run_load(args, chat_turns_command(args, server, sc))
    own = "specialist" in sc and server.owns_specialists
    # Equal work (the default): every answer runs to max_tokens (equal_work.py says why).
    wrapper = [] if args.natural_length else [str(EQUAL_WORK_SCRIPT)]
    cmd = [
        sys.executable,
        *wrapper,
        str(args.loadbench),
        "--base-url",
        server.base_url,
        "--model",
        sc["specialist"] if own else MODEL_NAME,
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
    if "specialists" in sc:
        cmd += ["--specialists", sc["specialists"]]
    if "specialist" in sc:
        cmd += ["--specialists", sc["specialist"]]
        if own:
            cmd.append("--specialist-mode")  # the specialist adds the same system prompt itself
    if server.key:
        cmd += ["--key", server.key]
    if sc["stream"]:
        cmd.append("--stream")
    return run_load(args, cmd)


def run_load(args, cmd: list[str]) -> dict:
    """Run a load generator; its last JSON line."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"the load generator timed out after {args.run_timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if p.returncode != 0 or not lines:
        return {"failed": f"load generator exit {p.returncode}: {(p.stderr or p.stdout)[-400:]}"}
    return json.loads(lines[-1])


class Hog:
    """The hog process (comparison/hog.py) of one contention scenario: started and busy before
    the measurement, stopped after it; `cpu_s` is the CPU it took meanwhile."""

    def __init__(self, args, kind: str, model: Path):
        self.command = [sys.executable, str(HOG_SCRIPT), "--kind", kind, "--threads", str(args.hog_threads)]
        if kind == "llama":
            self.command += ["--model", str(model)]
        if args.hog_cpus:
            self.command += ["--cpus", args.hog_cpus]
        if kind == "llama" and args.safe_kernels:
            self.command += ["--safe-kernels"]
        self.timeout = args.start_timeout
        self.proc: subprocess.Popen | None = None
        self.cpu0 = 0.0
        self.reader: threading.Thread | None = None
        self.lines: list[str] = []
        self.busy = threading.Event()

    def _drain(self, stream) -> None:
        """Read its output for as long as it runs (a full pipe would block it)."""
        for line in stream:
            if line.strip() == "ready":
                self.busy.set()
            elif line.strip():
                self.lines.append(line.strip())

    def __enter__(self) -> Hog:
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.reader = threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True)
        self.reader.start()
        try:
            deadline = time.monotonic() + self.timeout
            while not self.busy.wait(0.5):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerFailed(f"the hog did not get busy: {' / '.join(self.lines[-3:]) or 'no output'}")
            self.cpu0 = tree_cpu_s(self.proc.pid)
        except BaseException:  # not busy, or interrupted while waiting: no hog outlives this
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid) - self.cpu0 if self.proc else 0.0

    def stop(self) -> dict:
        """Stop it; the hog's own figures ({"tokens", "seconds"} for the llama hog) or {}."""
        if self.proc is None:
            return {}
        proc, self.proc = self.proc, None
        kill_group(proc)
        if self.reader is not None:
            self.reader.join(timeout=10)
        with contextlib.suppress(ValueError, IndexError):
            return json.loads(self.lines[-1])
        return {}


def measure(args, server: Server, sc: dict, model: Path, sampler: RssSampler) -> dict:
    """One scenario against a running server (with its hog, if it has one): the loadbench result
    and the process figures around it."""
    hog = Hog(args, sc["hog"], model) if sc.get("hog") else None
    sampler.reset_window()
    with hog or contextlib.nullcontext():
        t0 = time.perf_counter()
        assert server.proc is not None
        cpu0 = (machine_busy_s(), tree_cpu_s(server.proc.pid), children_cpu_s())
        hog_cpu0 = hog.cpu_s() if hog else 0.0
        res = run_loadbench(args, server, sc)
        hog_cpu = (hog.cpu_s() - hog_cpu0) if hog else 0.0
        threads = server.threads_in_use() if hog else None
        cpu1 = (machine_busy_s(), tree_cpu_s(server.proc.pid), children_cpu_s())
        wall = time.perf_counter() - t0
        hog_out = hog.stop() if hog else {}
    # CPU used by anything other than this server, the load generator and the hog: noise
    foreign = (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]) - (cpu1[2] - cpu0[2]) - hog_cpu
    time.sleep(sampler.interval * 2)
    row = {
        "elapsed_s": round(wall, 2),
        "server_cpu_s": round(cpu1[1] - cpu0[1], 2),
        "client_cpu_s": round(cpu1[2] - cpu0[2], 2),
        "foreign_cpu_pct": round(max(0.0, foreign) / (wall * cpu_count()) * 100, 1),
        "peak_rss_mb": round(sampler.window_peak_kb / 1024, 1),
        "result": res,
    }
    if hog:
        row["hog_cpu_pct"] = round(hog_cpu / (wall * cpu_count()) * 100, 1)
        row["threads_when_busy"] = threads
        if hog_out.get("seconds"):
            row["hog_tokens_per_s"] = round(hog_out["tokens"] / hog_out["seconds"], 1)
    return row


def run_server(args, name: str, model: Path, repeat: int, scs: list[dict]) -> list[dict]:
    """Start one server, run the given scenarios against it, stop it."""
    server = SERVER_CLASSES[name](args, model, args.logdir, user_threads=bool(scs[0].get("user_threads")))
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
        assert server.proc is not None
        log(f"  {name} ready on port {server.port} in {server.start_s} s (pid {server.proc.pid})")
        sampler = RssSampler(server.proc.pid).start()
        for sc in scs:
            row = {"repeat": repeat, "server": name, "scenario": sc["name"], **sc}
            try:
                row.update(measure(args, server, sc, model, sampler))
            except ServerFailed as exc:  # the hog would not start
                row["failed"] = str(exc)
                rows.append(row)
                log(f"  !! {name} {sc['name']}: {row['failed']}")
                continue
            row.update({"start_s": server.start_s, "command": server.command})
            res = row["result"]
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
                hog = f", hog CPU {row['hog_cpu_pct']}%" if "hog_cpu_pct" in row else ""
                log(
                    f"  {name} {sc['name']}: {res['tokens_per_s']} tok/s, p50 {res['latency_p50_s']} s, "
                    f"ttft p50 {res['ttft_p50_s']}, errors {res['errors']}, rss {row['peak_rss_mb']} MB, "
                    f"other CPU {row['foreign_cpu_pct']}%{hog}"
                )
        # the peak since the process started: its start and this batch of scenarios (one, by default)
        hwm_mb = round(tree_rss_kb(server.proc.pid, "VmHWM") / 1024, 1)
        for row in rows:
            row["server_peak_rss_mb"] = round(sampler.peak_kb / 1024, 1)
            row["hwm_mb"] = hwm_mb
    finally:
        if sampler is not None:
            sampler.stop()
        server.stop()
    return rows
