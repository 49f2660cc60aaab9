"""benchmarks/compare.py's pure parts: the CPU line every table opens with, the anchor (the better
of llama-server's two KV modes, per scenario and metric), the default and --contention scenarios,
the contention table, and the quant type read from a GGUF header. No server is started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import compare
from comparison.gguf_info import quant_summary
from comparison.report import choose_anchor, contention, hardware_lines, markdown, summarise
from comparison.scenarios import rounds, scenarios
from machine import cpu_line

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx512_vnni fma amx_bf16 avx2 f16c amx_tile avx512f amx_int8 avx512bw
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx512_vnni fma amx_bf16 avx2 f16c amx_tile avx512f amx_int8 avx512bw
"""
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma f16c avx2 bmi2\n"


def test_cpu_line_names_the_model_cores_and_kernel_flags_in_a_fixed_order() -> None:
    assert (
        cpu_line(XEON, 16)
        == "Intel(R) Xeon(R) Platinum 8480+ (16 cores; avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16 f16c fma)"
    )
    assert cpu_line(EPYC, 2) == "AMD EPYC (2 cores; avx2 f16c fma)"


def test_cpu_line_says_when_none_of_the_flags_is_there() -> None:
    line = cpu_line("model name\t: Old CPU\nflags\t\t: fpu sse2\n", 1)
    assert line.startswith("Old CPU (1 cores; none of avx2 avx512f")


def test_every_table_opens_with_the_cpu_and_the_gpu_when_offloading() -> None:
    assert hardware_lines({"cpu": "AMD EPYC (2 cores; avx2)"}) == ["CPU: AMD EPYC (2 cores; avx2)", ""]
    lines = hardware_lines({"cpu": "Xeon", "gpu": True, "gpu_model": "NVIDIA H100 80GB HBM3 (81559 MiB, 580)"})
    assert lines[:2] == ["CPU: Xeon", "GPU: NVIDIA H100 80GB HBM3 (81559 MiB, 580)"]


def entry(server: str, tok: float | None, lat: float | None) -> dict:
    return {"server": server, "tokens_per_s": tok, "latency_p50_s": lat}


def test_the_anchor_is_the_better_mode_for_each_metric_direction() -> None:
    block = [entry("alveare", 99.0, 0.1), entry("llama-server", 40.0, 0.5), entry("llama-server-split", 50.0, 0.6)]
    assert choose_anchor(block, "tokens_per_s", higher=True) == "llama-server-split"
    assert choose_anchor(block, "latency_p50_s", higher=False) == "llama-server"


def test_the_anchor_on_a_tie_missing_mode_or_no_mode() -> None:
    tie = [entry("llama-server-split", 50.0, None), entry("llama-server", 50.0, None)]
    assert choose_anchor(tie, "tokens_per_s", higher=True) == "llama-server"
    assert choose_anchor(tie, "latency_p50_s", higher=False) is None
    only_split = [entry("alveare", 10.0, 1.0), entry("llama-server-split", 5.0, 2.0)]
    assert choose_anchor(only_split, "tokens_per_s", higher=True) == "llama-server-split"
    assert choose_anchor([entry("alveare", 10.0, 1.0)], "tokens_per_s", higher=True) is None


def run_row(server: str, scenario: str, tok: float, lat: float, rss: float = 400.0, **extra) -> dict:
    result = {
        "tokens_per_s": tok,
        "latency_p50_s": lat,
        "latency_p95_s": lat * 2,
        "ttft_p50_s": None,
        "ttft_p95_s": None,
        "ok": 4,
        "errors": 0,
    }
    return {"server": server, "scenario": scenario, "repeat": 1, "peak_rss_mb": rss, "result": result, **extra}


SERVERS = ["alveare", "llama-server", "llama-server-split"]


def test_ratios_are_to_each_metrics_anchor_and_the_anchors_table_names_it() -> None:
    rows = [
        run_row("alveare", "c8-nostream", 60.0, 4.0, 450.0, hwm_mb=470.0),
        run_row("llama-server", "c8-nostream", 40.0, 5.0, 400.0, hwm_mb=410.0),
        run_row("llama-server-split", "c8-nostream", 50.0, 6.0, 420.0, hwm_mb=400.0),
    ]
    scs = [{"name": "c8-nostream"}]
    summary = summarise(rows, SERVERS, scs)
    alveare = summary[0]
    assert alveare["anchor"]["tokens_per_s"] == "llama-server-split"
    assert alveare["ratio_to_anchor"]["tokens_per_s"] == 1.2
    assert alveare["anchor"]["latency_p50_s"] == "llama-server"
    assert alveare["ratio_to_anchor"]["latency_p50_s"] == 0.8
    assert alveare["anchor"]["ttft_p50_s"] is None and alveare["ratio_to_anchor"]["ttft_p50_s"] is None
    meta = {
        "date": "d",
        "cpu": "AMD EPYC (2 cores; avx2 f16c fma)",
        "mem_total_mb": 1024.0,
        "platform": "Linux",
        "model": "/m/model.gguf",
        "model_mb": 100.0,
        "model_quant": "Q4_1",
        "threads": 2,
        "requests": 4,
        "max_tokens": 48,
        "variants": 4,
        "repeats": 1,
        "wall_s": 60.0,
    }
    md = markdown(meta, scs, summary, rows)
    assert "| alveare | c8-nostream | 60.0 (1.20x) | 4.0 (0.80x) |" in md
    assert "| llama-server-split | c8-nostream | 50.0 | 6.0 (1.20x) |" in md  # its own anchor cell: no ratio
    # the process's own peak since its start (VmHWM) is a metric of its own, anchored on its own
    assert alveare["anchor"]["hwm_mb"] == "llama-server-split" and alveare["ratio_to_anchor"]["hwm_mb"] == 1.175
    assert "| c8-nostream | split | unified (-kvu) | unified (-kvu) | - | - | unified (-kvu) | split |" in md
    assert md.count("CPU: AMD EPYC (2 cores; avx2 f16c fma)") == 2  # the main and the Anchors table


def test_default_scenarios_are_one_and_eight_clients_streamed_and_not() -> None:
    args = compare.parse_args([])
    assert args.servers == ["alveare", "llama-server", "llama-server-split"]
    assert [sc["name"] for sc in scenarios(args)] == ["c1-nostream", "c1-stream", "c8-nostream", "c8-stream"]


def load_command(monkeypatch, args, sc: dict) -> list[str]:
    """The command run_loadbench runs for `sc` against an Alveare server (nothing is run), after
    checking that it returns the load generator's last JSON line."""
    from types import SimpleNamespace

    from comparison import scenarios as scenarios_module

    sent: list[list[str]] = []
    done = SimpleNamespace(returncode=0, stdout='{"ok": 1}', stderr="")
    monkeypatch.setattr(scenarios_module.subprocess, "run", lambda cmd, **kw: sent.append(cmd) or done)
    alveare = SimpleNamespace(owns_specialists=True, base_url="http://x", key="k", name="alveare")
    assert scenarios_module.run_loadbench(args, alveare, sc) == {"ok": 1}
    return sent[0]


def test_shared_prompt_adds_one_specialists_traffic_with_the_prompt_in_the_messages(monkeypatch) -> None:
    args = compare.parse_args(["--shared-prompt"])
    shared = [sc for sc in scenarios(args) if "shared" in sc["name"]]
    assert [sc["name"] for sc in shared] == ["c8-shared-nostream", "c8-shared-stream"]
    assert all(sc["variants"] == 1 and sc["concurrency"] == 8 for sc in shared)
    cmd = load_command(monkeypatch, args, shared[1])
    # every server gets the system prompt in the messages (no --specialist-mode), the same one each time
    assert cmd[cmd.index("--specialists") + 1] == "chat" and "--specialist-mode" not in cmd
    assert cmd[cmd.index("--variants") + 1] == "1" and cmd[cmd.index("--model") + 1] == "chat"
    assert "--stream" in cmd


def test_contention_adds_quiet_and_busy_one_client_runs_at_user_threads() -> None:
    args = compare.parse_args(["--contention", "--hog", "spin", "--concurrency", "8"])
    extra = [sc for sc in scenarios(args) if sc.get("pair")]
    assert [(sc["name"], sc["hog"]) for sc in extra] == [
        ("c1-nostream-quiet", None),
        ("c1-nostream-busy", "spin"),
        ("c1-stream-quiet", None),
        ("c1-stream-busy", "spin"),
    ]
    assert all(sc["user_threads"] and sc["concurrency"] == 1 for sc in extra)
    # one server process per thread setting when reusing servers
    assert [len(b) for b in rounds(scenarios(args), reuse_server=True)] == [2, 4]


def test_the_contention_table_divides_busy_by_quiet() -> None:
    rows = [
        run_row("alveare", "c1-stream-quiet", 90.0, 0.5, user_threads=True),
        run_row("alveare", "c1-stream-busy", 45.0, 1.0, user_threads=True, hog_cpu_pct=50.0),
        run_row("llama-server", "c1-stream-quiet", 95.0, 0.5, user_threads=True),
        run_row("llama-server", "c1-stream-busy", 3.0, 15.0, user_threads=True, hog_cpu_pct=50.0),
    ]
    scs = [{"name": "c1-stream-quiet", "pair": "c1-stream"}, {"name": "c1-stream-busy", "pair": "c1-stream"}]
    table = contention(summarise(rows, ["alveare", "llama-server"], scs), scs)
    assert [(c["server"], c["busy_over_quiet"], c["busy_ratio_to_anchor"]) for c in table] == [
        ("alveare", 0.5, 15.0),
        ("llama-server", 0.032, 1.0),
    ]


def test_optimised_servers_need_the_optimised_model(tmp_path) -> None:
    with pytest.raises(SystemExit):
        compare.parse_args(["--servers", "alveare,alveare-optimized"])
    gguf = tmp_path / "model-q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    args = compare.parse_args(["--optimized-model", str(gguf)])
    assert args.servers[-2:] == ["alveare-optimized", "llama-server-optimized"]


def test_the_quant_type_comes_from_the_gguf_header() -> None:
    q = quant_summary(compare.find_model())
    assert q["file_type"] == "Q4_1" and q["tensor_types"]["Q4_1"] > 0


def test_a_file_that_is_not_gguf_is_refused(tmp_path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        quant_summary(bad)


def test_equal_work_client_adds_ignore_eos_to_every_body() -> None:
    import asyncio
    import json

    import httpx
    from comparison.equal_work import EqualWorkClient

    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={})

    async def send() -> None:
        async with EqualWorkClient(base_url="http://bench", transport=httpx.MockTransport(handler)) as client:
            await client.post("/v1/chat/completions", json={"model": "chat"})
            async with client.stream("POST", "/v1/chat/completions", json={"model": "chat", "stream": True}) as r:
                await r.aread()

    asyncio.run(send())
    assert seen == [{"model": "chat", "ignore_eos": True}, {"model": "chat", "stream": True, "ignore_eos": True}]


def test_chat_turns_adds_a_conversation_per_client_at_each_concurrency(monkeypatch) -> None:
    args = compare.parse_args(["--chat-turns", "5", "--stream"])
    chats = [sc for sc in scenarios(args) if "turns" in sc]
    assert [(sc["name"], sc["concurrency"], sc["turns"]) for sc in chats] == [
        ("c1-chat-stream", 1, 5),
        ("c8-chat-stream", 8, 5),
    ]
    cmd = load_command(monkeypatch, args, chats[1])
    assert cmd[1].endswith("chat_turns.py") and cmd[cmd.index("--users") + 1] == "8"
    assert cmd[cmd.index("--turns") + 1] == "5" and "--equal-work" in cmd and "--stream" in cmd


def test_chat_turns_sends_each_conversations_whole_history_every_turn(monkeypatch, tmp_path) -> None:
    import asyncio
    import json
    from types import SimpleNamespace

    import httpx
    from comparison import chat_turns

    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        answer = f"answer {len(body['messages'])}"
        return httpx.Response(
            200, json={"choices": [{"message": {"content": answer}}], "usage": {"completion_tokens": 3}}
        )

    class Mocked(httpx.AsyncClient):
        def __init__(self, **kw) -> None:
            super().__init__(transport=httpx.MockTransport(handler), **kw)

    monkeypatch.setattr(chat_turns.httpx, "AsyncClient", Mocked)
    # What chat_turns takes from loadbench: its chat system prompt and its percentile.
    loadbench = tmp_path / "loadbench.py"
    loadbench.write_text(
        'SYSTEM_PROMPTS = {"chat": "Be brief."}\n'
        "def percentile(values, q):\n"
        "    values = sorted(values)\n"
        "    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else None\n"
    )
    args = SimpleNamespace(
        loadbench=str(loadbench), base_url="http://bench", key="", model="chat", users=2, turns=3,
        max_tokens=8, stream=False, equal_work=True, tag="t1", timeout=5, label="x",
    )  # fmt: skip
    result = asyncio.run(chat_turns.main_async(args))
    assert result["ok"] == 6 and result["completion_tokens"] == 18 and result["errors"] == 0
    turns = [b for b in bodies[1:] if "caller 0 " in b["messages"][1]["content"]]  # after the warm-up
    assert [len(b["messages"]) for b in turns] == [2, 4, 6]
    assert turns[2]["messages"][:5] == turns[1]["messages"] + [{"role": "assistant", "content": "answer 4"}]
    assert all(b["ignore_eos"] and b["temperature"] == 0.0 for b in bodies)


# ------------------------------------------------------------------ CPU kernels (the AMX crash)
def test_safe_kernels_reach_llama_server_the_hog_and_a_forced_alveare(tmp_path) -> None:
    from comparison.registry import SERVER_CLASSES
    from comparison.scenarios import Hog

    model = tmp_path / "m.gguf"
    # What Alveare's command takes from loadbench: the system prompts (the shared one sits outside the
    # checkout, where a fresh clone elsewhere has none).
    loadbench = tmp_path / "loadbench.py"
    prompts = {name: "Be brief." for name in ("chat", "summarise", "extract", "qa")}
    loadbench.write_text(f"SYSTEM_PROMPTS = {prompts!r}\n")
    for setting, no_repack, alveare_flags in (("auto", False, []), ("safe", True, ["--cpu-kernels", "safe"])):
        args = compare.parse_args(["--cpu-kernels", setting, "--contention", "--loadbench", str(loadbench)])
        for name in ("llama-server", "llama-server-split"):
            server = SERVER_CLASSES[name](args, model, tmp_path)
            server.port = 1
            assert ("--no-repack" in server.build_command()) is no_repack
        assert ("--safe-kernels" in Hog(args, "llama", model).command) is no_repack
        alveare = SERVER_CLASSES["alveare"](args, model, tmp_path)
        alveare.tmp = tmp_path
        command = alveare.build_command()
        at = command.index("--cpu-kernels") if "--cpu-kernels" in command else None
        assert (command[at : at + 2] if at is not None else []) == alveare_flags


def test_the_report_says_which_kernels_llama_server_ran_with() -> None:
    from comparison.report import kernel_lines

    crashed = {"setting": "auto", "safe": True, "reason": "llama-server ... died at start (SIGSEGV)"}
    (line,) = kernel_lines({"cpu_kernels": crashed})
    assert "--no-repack" in line and "SIGSEGV" in line and "chose for itself" in line
    assert "defaults" in kernel_lines({"cpu_kernels": {"setting": "auto", "safe": False, "reason": "x"}})[0]
    assert kernel_lines({}) == []
