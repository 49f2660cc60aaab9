"""From the runs to the report: medians per server and scenario, the anchor (the better of
llama-server's two KV modes in each scenario, for each metric), the contention table (tokens/s
beside the hog against quiet) and the markdown."""

from __future__ import annotations

import statistics
from pathlib import Path

METRICS = [  # (key in summary, source, label, higher is better)
    ("tokens_per_s", "tokens_per_s", "tok/s", True),
    ("latency_p50_s", "latency_p50_s", "lat p50 s", False),
    ("latency_p95_s", "latency_p95_s", "lat p95 s", False),
    ("ttft_p50_s", "ttft_p50_s", "TTFT p50 s", False),
    ("ttft_p95_s", "ttft_p95_s", "TTFT p95 s", False),
    ("peak_rss_mb", None, "peak RSS MB", False),
    # the process's own peak (VmHWM) since it started: loading the model and creating its KV cache too
    ("hwm_mb", None, "VmHWM MB", False),
]
# llama-server's KV modes, either of which may be the anchor (on a tie the first)
ANCHOR_MODES = ("llama-server", "llama-server-split", "llama-server-split-nofa")
FEW_REPEATS = " (fewer than 3: a smoke run, not for quoting against the targets)"
MODE_LABEL = {
    "llama-server": "unified (-kvu)",
    "llama-server-split": "split",
    "llama-server-split-nofa": "split, -fa off",
}


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def choose_anchor(block: list[dict], key: str, higher: bool) -> str | None:
    """The llama-server mode with the better median of `key` in one scenario's entries (higher
    tokens/s, lower latency, TTFT and RSS), or None when neither has a value."""
    values = [(e[key], e["server"]) for m in ANCHOR_MODES for e in block if e["server"] == m and e[key] is not None]
    if not values:
        return None
    best = max(v for v, _ in values) if higher else min(v for v, _ in values)
    return next(name for v, name in values if v == best)


def _entry(rows: list[dict], name: str, scenario: str) -> dict:
    ok = [r for r in rows if r["server"] == name and r["scenario"] == scenario and "failed" not in r]
    fails = [r for r in rows if r["server"] == name and (r["scenario"] in (scenario, None)) and "failed" in r]
    entry = {
        "server": name,
        "scenario": scenario,
        "repeats_ok": len(ok),
        "repeats_failed": len(fails),
        "errors": sum(r["result"].get("errors", 0) for r in ok),
        "requests_ok": sum(r["result"].get("ok", 0) for r in ok),
        "failure": fails[0]["failed"].splitlines()[0] if fails else None,
        "completion_tokens": median([r["result"].get("completion_tokens") for r in ok]),
        "foreign_cpu_pct": median([r.get("foreign_cpu_pct") for r in ok]),
        "hog_cpu_pct": median([r.get("hog_cpu_pct") for r in ok]),
        "hog_tokens_per_s": median([r.get("hog_tokens_per_s") for r in ok]),
        "threads_when_busy": median([r.get("threads_when_busy") for r in ok]),
    }
    for key, src, _, _ in METRICS:
        entry[key] = median([r["result"].get(src) for r in ok] if src else [r.get(key) for r in ok])
    return entry


def summarise(rows: list[dict], servers: list[str], scs: list[dict]) -> list[dict]:
    """One entry per server and scenario: medians over the repeats that succeeded, and for each
    metric the anchor mode and the ratio to it."""
    out = []
    for sc in scs:
        block = [_entry(rows, name, sc["name"]) for name in servers]
        anchors = {key: choose_anchor(block, key, higher) for key, _, _, higher in METRICS}
        by_name = {e["server"]: e for e in block}
        for entry in block:
            entry["anchor"] = anchors
            entry["ratio_to_anchor"] = {}
            for key, _, _, _ in METRICS:
                base = by_name[anchors[key]][key] if anchors[key] else None
                ok = entry[key] is not None and base not in (None, 0)
                entry["ratio_to_anchor"][key] = round(entry[key] / base, 3) if ok else None
        out.extend(block)
    return out


def contention(summary: list[dict], scs: list[dict]) -> list[dict]:
    """Per server and 1-client scenario of --contention: tokens/s quiet and beside the hog, the
    ratio busy / quiet, and busy tokens/s against the anchor's busy tokens/s."""
    by = {(e["server"], e["scenario"]): e for e in summary}
    servers = list(dict.fromkeys(e["server"] for e in summary))
    out = []
    for pair in dict.fromkeys(sc["pair"] for sc in scs if sc.get("pair")):
        for name in servers:
            quiet, busy = by.get((name, f"{pair}-quiet")), by.get((name, f"{pair}-busy"))
            if not quiet or not busy:
                continue
            q, b = quiet["tokens_per_s"], busy["tokens_per_s"]
            out.append(
                {
                    "server": name,
                    "scenario": pair,
                    "quiet_tokens_per_s": q,
                    "busy_tokens_per_s": b,
                    "busy_over_quiet": round(b / q, 3) if q and b is not None else None,
                    "busy_ratio_to_anchor": busy["ratio_to_anchor"]["tokens_per_s"],
                    "busy_anchor": busy["anchor"]["tokens_per_s"],
                    "busy_latency_p50_s": busy["latency_p50_s"],
                    "hog_cpu_pct": busy["hog_cpu_pct"],
                    "hog_tokens_per_s": busy["hog_tokens_per_s"],
                    "threads_when_busy": busy["threads_when_busy"],
                    "failure": busy["failure"] or quiet["failure"],
                }
            )
    return out


def fmt(v, ratio=None) -> str:
    if v is None:
        return "-"
    s = f"{v:.0f}" if v >= 100 else f"{v:.3g}" if v < 1 else f"{v:.1f}"
    if ratio is not None:
        s += f" ({ratio:.2f}x)"
    return s


def hardware_lines(meta: dict) -> list[str]:
    """The lines that open every table: the CPU (model name, cores, kernel flags) and the GPU."""
    lines = [f"CPU: {meta['cpu']}"]
    if meta.get("gpu"):
        lines.append(f"GPU: {meta.get('gpu_model') or 'none found by nvidia-smi'}")
    return [*lines, ""]


def kernel_lines(meta: dict) -> list[str]:
    """Which CPU kernels the llama.cpp processes ran with, where the run decided it."""
    k = meta.get("cpu_kernels")
    if not k:
        return []
    if k["safe"]:
        return [
            f"- CPU kernels: llama-server ran with `--no-repack` and the hog without extra buffer types "
            f"({k['reason']}); Alveare "
            + ("was told `--cpu-kernels safe`" if k["setting"] == "safe" else "chose for itself (its log says which)")
        ]
    return [f"- CPU kernels: llama.cpp's defaults (repacked/fast) for llama-server ({k['reason']})"]


def _main_table(meta: dict, summary: list[dict]) -> list[str]:
    lines = [
        *hardware_lines(meta),
        "| server | scenario | tok/s | lat p50 s | lat p95 s | TTFT p50 s | TTFT p95 s "
        "| peak RSS MB | VmHWM MB | tokens | ok/err | other CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        if e["repeats_ok"] == 0:
            lines.append(f"| {e['server']} | {e['scenario']} | FAILED: {e['failure'] or 'no data'} | | | | | | | | | |")
            continue
        # the anchor's own cell carries no ratio
        cells = [
            fmt(e[k], None if e["anchor"][k] == e["server"] else e["ratio_to_anchor"][k]) for k, _, _, _ in METRICS
        ]
        lines.append(
            f"| {e['server']} | {e['scenario']} | "
            + " | ".join(cells)
            + f" | {e['completion_tokens'] or '-'} | {e['requests_ok']}/{e['errors']} | {fmt(e['foreign_cpu_pct'])} |"
        )
    return lines


def _anchor_table(meta: dict, summary: list[dict]) -> list[str]:
    lines = [
        *hardware_lines(meta),
        "| scenario | " + " | ".join(label for _, _, label, _ in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for scenario in dict.fromkeys(e["scenario"] for e in summary):
        anchors = next(e["anchor"] for e in summary if e["scenario"] == scenario)
        cells = [MODE_LABEL.get(anchors[k], "-") if anchors[k] else "-" for k, _, _, _ in METRICS]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines


def _contention_table(meta: dict, table: list[dict]) -> list[str]:
    hog = meta["hog"]
    pinned = f"pinned to cores {hog['cpus']}" if hog["cpus"] else "not pinned"
    what = (
        "a second llama.cpp process (llama-cpp-python, the same model) decoding without pause"
        if hog["kind"] == "llama"
        else "busy loops (one process each)"
    )
    lines = [
        f"The hog: {what}, {hog['threads']} threads, {pinned}; started before and stopped after each "
        "busy scenario. Every server runs at the thread setting a user would leave it at: "
        f"{meta['user_threads']}. busy / quiet compares the same server's medians; (Nx) in the busy "
        "column is the ratio to the anchor's busy tokens/s; threads when busy is the thread count Alveare's "
        "hive status reported at the end of the busy run (the others do not say).",
        "",
        *hardware_lines(meta),
        "| server | scenario | quiet tok/s | busy tok/s | busy / quiet | busy lat p50 s | threads when busy "
        "| hog CPU % | hog tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in table:
        own_anchor = c["busy_anchor"] == c["server"]
        threads = "-" if c["threads_when_busy"] is None else round(c["threads_when_busy"])
        lines.append(
            f"| {c['server']} | {c['scenario']} | {fmt(c['quiet_tokens_per_s'])} | "
            f"{fmt(c['busy_tokens_per_s'], None if own_anchor else c['busy_ratio_to_anchor'])} | "
            f"{'-' if c['busy_over_quiet'] is None else format(c['busy_over_quiet'], '.2f') + 'x'} | "
            f"{fmt(c['busy_latency_p50_s'])} | {threads} | {fmt(c['hog_cpu_pct'])} | "
            f"{fmt(c['hog_tokens_per_s'])} |"
        )
    return lines


def markdown(meta: dict, scs: list[dict], summary: list[dict], rows: list[dict]) -> str:
    m = meta
    contended = {sc["name"] for sc in scs if sc.get("pair")}
    main = [e for e in summary if e["scenario"] not in contended]
    lines = [
        "# Alveare vs llama.cpp servers",
        "",
        f"- Date: {m['date']}",
        f"- Machine: {m['cpu']}, {m['mem_total_mb']:.0f} MB RAM, {m['platform']}",
        *(
            [f"- GPU: {m['gpu_model']}; every layer offloaded (alveare --gpu auto, llama-server -ngl 999)"]
            if m.get("gpu")
            else []
        ),
        f"- Model: `{Path(m['model']).name}` ({m['model_mb']:.0f} MB, {m['model_quant']}), threads {m['threads']}",
        *kernel_lines(m),
        f"- Load: loadbench.py, {m['requests']} requests/scenario (+1 warm-up), max_tokens "
        f"{m['max_tokens']}, temperature 0, system prompt sent in the messages (model `chat`), "
        f"{m['variants']} system-prompt variants when concurrency > 1 (1 otherwise)"
        + (
            "; in the `-shared-` runs every request carries the same system prompt (loadbench's chat "
            "prompt, one specialist's traffic) and only the user text differs"
            if any("-shared-" in e["scenario"] for e in summary)
            else ""
        )
        + (
            f"; the `-chat-` runs are comparison/chat_turns.py instead: each client one conversation of "
            f"{m.get('chat_turns')} turns with loadbench's chat prompt, sending its whole history every turn"
            if any("-chat-" in e["scenario"] for e in summary)
            else ""
        ),
        (
            "- Equal work: every request sends `ignore_eos` (llama-server, vLLM and Alveare accept it), so "
            "every answer runs to max_tokens and every server generates the same tokens (the tokens column: "
            "completion tokens of one run, median); greedy answers otherwise differ in length from server to "
            "server (benchmarks/comparison/equal_work.py)"
            if m.get("equal_work")
            else "- Natural length: answers end where each server's model ends them, so servers may generate "
            "different numbers of tokens (the tokens column)"
        ),
        f"- Repeats: {m['repeats']}{FEW_REPEATS if m['repeats'] < 3 else ''} (servers alternated round-robin; "
        f"{'one server process per repeat' if m.get('reuse_server') else 'fresh server process per scenario'}"
        "); values are medians over repeats",
        "- Anchor: (Nx) = ratio to the best of llama-server's KV modes in the same scenario of this "
        "run, for each metric on its own (higher tok/s; lower latency, TTFT and RSS): `llama-server` "
        "(8 slots in one unified KV cache, -kvu) or `llama-server-split` (its default, one KV stream per "
        "slot), and `llama-server-split-nofa` (split with `-fa off`) where it ran. The anchor's own cell "
        "has no ratio; the Anchors table names the mode for each cell.",
        f"- Wall time of this run: {m['wall_s'] / 60:.1f} min",
        "",
        "Note: every server gets the same prompt tokens. Alveare runs with a specialists file "
        "written by compare.py: `chat` takes the caller's system message as it is (as the built-in "
        "`chat` does), and in the c1-summarise/extract/qa runs Alveare is sent no system message and "
        "its specialist (model = its name, prompt-lookup drafting on) adds loadbench's own system "
        "prompt for it, the one the other servers are sent. Peak RSS is VmRSS of the server's "
        "process tree, sampled every 0.2 s during the scenario; VmHWM is the kernel's own peak of "
        "that tree's live processes since they started (loading the model and creating the KV cache "
        'included), read at the end of the scenario. "other CPU %" is the share of '
        "the machine's CPU used by processes other than the server, loadbench and the hog during the "
        "scenario: when it is high, the numbers are noisy. llama-cpp-python's server "
        "decodes one request at a time (n_ctx 2048, --interrupt_requests False so concurrent "
        "requests queue instead of cutting each other off).",
        "",
        *_main_table(m, main),
    ]
    if any(e["anchor"]["tokens_per_s"] for e in summary):
        lines += ["", "## Anchors", "", "The llama-server mode each ratio above is taken against.", ""]
        lines += _anchor_table(m, summary)
    if m.get("optimized"):
        o = m["optimized"]
        lines += [
            "",
            "## Optimised model",
            "",
            f"`alveare-optimized` and `llama-server-optimized` (llama-server in its default split KV mode) "
            f"run on {o['optimized']}; every other server on {o['original']}. Their ratios are to the "
            "anchor on the original model.",
        ]
    table = contention(summary, scs)
    if table:
        lines += ["", "## CPU contention", "", *_contention_table(m, table)]
    fails = [r for r in rows if "failed" in r]
    if fails:
        lines += ["", "## Failures", ""]
        for r in fails:
            first = r["failed"].splitlines()[0]
            lines.append(f"- repeat {r['repeat']}, {r['server']}, {r['scenario'] or 'startup'}: {first}")
    lines += ["", "## Commands", ""]
    seen = set()
    for r in rows:
        key = (r["server"], bool(r.get("user_threads")))
        if r.get("command") and key not in seen:
            seen.add(key)
            lines.append(f"- {r['server']}{' (contention)' if key[1] else ''}: `{' '.join(r['command'])}`")
    if m.get("hog", {}).get("command"):
        lines.append(f"- hog: `{' '.join(m['hog']['command'])}`")
    if m.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(m["skipped"])]
    return "\n".join(lines) + "\n"
