"""Multi-turn chat load: `--users` callers at once, each holding one conversation of `--turns`
turns, every turn sending the whole history back (system prompt, earlier questions and the
answers as received) with the next question. Prints one JSON line with loadbench's keys.

    python chat_turns.py --loadbench LOADBENCH --base-url URL [--users 4] [--turns 6] ...

loadbench sends single-turn requests whose user texts never repeat, so no server can reuse more
than the system prompt. A chat client sends each turn's history again, and a server that keeps a
conversation's cells (in the slot or in host memory) prefills only the new question. The system
prompt is loadbench's chat specialist's; `--tag` goes into the first question, so a run's
conversations are new to the server. With `--equal-work` every request sends `ignore_eos`, so
every answer runs to max_tokens (equal_work.py says why).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import time

import httpx

QUESTIONS = [
    "How do I book a meeting room for next week?",
    "What if the room I want is already taken?",
    "Can I invite people from outside the company?",
    "How long can one booking last?",
    "Who do I ask when the projector does not work?",
    "Can you sum all of that up in two lines?",
    "Is there anything I should do after the meeting?",
    "Thanks. One last thing: can I book a room every week at the same time?",
]


def load(path: str):
    spec = importlib.util.spec_from_file_location("loadbench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def turn(client: httpx.AsyncClient, args, messages: list[dict], out: dict | None) -> str:
    """One request; appends its latency, TTFT and tokens to `out` (None: a warm-up) and returns the answer."""
    body = {
        "model": args.model,
        "messages": messages,
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
        "stream": args.stream,
    }
    if args.stream:
        body["stream_options"] = {"include_usage": True}
    if args.equal_work:
        body["ignore_eos"] = True
    t0 = time.perf_counter()
    ttft, tokens, text = None, 0, []
    if args.stream:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            async for line in r.aiter_lines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if not data or data == "[DONE]":
                    continue
                chunk = json.loads(data)
                if chunk.get("usage"):
                    tokens = chunk["usage"].get("completion_tokens", 0)
                for choice in chunk.get("choices") or []:
                    if piece := (choice.get("delta") or {}).get("content"):
                        ttft = ttft if ttft is not None else time.perf_counter() - t0
                        text.append(piece)
    else:
        r = await client.post("/v1/chat/completions", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        reply = r.json()
        tokens = reply["usage"]["completion_tokens"]
        text.append(reply["choices"][0]["message"]["content"] or "")
    if out is not None:
        out["latency"].append(time.perf_counter() - t0)
        if ttft is not None:
            out["ttft"].append(ttft)
        out["tokens"] += tokens
    return "".join(text)


async def conversation(client: httpx.AsyncClient, args, system: str, user: int, out: dict) -> None:
    messages = [{"role": "system", "content": system}]
    for t in range(args.turns):
        question = QUESTIONS[t % len(QUESTIONS)]
        if t == 0:
            question = f"I am caller {user} of run {args.tag}. {question}"
        messages.append({"role": "user", "content": question})
        try:
            answer = await turn(client, args, messages, out)
        except Exception as exc:  # a load tool counts every failure; that chat ends there
            out["errors"].append(str(exc)[:200])
            return
        messages.append({"role": "assistant", "content": answer})


async def main_async(args) -> dict:
    bench = load(args.loadbench)
    system = bench.SYSTEM_PROMPTS["chat"]
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    # A connection per request: llama-server closes a kept-alive connection after a few requests,
    # and a turn sent on it just then fails ("Server disconnected") and would end that chat early.
    limits = httpx.Limits(max_connections=args.users + 4, max_keepalive_connections=0)
    out = {"latency": [], "ttft": [], "tokens": 0, "errors": []}
    async with httpx.AsyncClient(
        base_url=args.base_url, headers=headers, timeout=args.timeout, limits=limits, verify=False
    ) as client:
        # one warm-up request with the system prompt, not counted (as loadbench's)
        await turn(client, args, [{"role": "system", "content": system}, {"role": "user", "content": "Hello."}], None)
        t0 = time.perf_counter()
        await asyncio.gather(*(conversation(client, args, system, u, out) for u in range(args.users)))
        wall = time.perf_counter() - t0
    r = lambda x: None if x is None else round(x, 4)  # noqa: E731
    p = bench.percentile
    return {
        "label": args.label,
        "variants": 1,
        "specialists": "chat",
        "concurrency": args.users,
        "turns": args.turns,
        "requests": args.users * args.turns,
        "ok": len(out["latency"]),
        "errors": len(out["errors"]),
        "first_error": out["errors"][0] if out["errors"] else None,
        "wall_s": r(wall),
        "completion_tokens": out["tokens"],
        "tokens_per_s": r(out["tokens"] / wall if wall else 0),
        "requests_per_s": r(len(out["latency"]) / wall if wall else 0),
        "latency_p50_s": r(p(out["latency"], 0.5)),
        "latency_p95_s": r(p(out["latency"], 0.95)),
        "ttft_p50_s": r(p(out["ttft"], 0.5)),
        "ttft_p95_s": r(p(out["ttft"], 0.95)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loadbench", required=True, help="loadbench.py, for its chat system prompt and percentiles")
    p.add_argument("--base-url", default="http://127.0.0.1:8080")
    p.add_argument("--key", default="")
    p.add_argument("--model", default="chat")
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--equal-work", action="store_true", help="send ignore_eos: every answer runs to max_tokens")
    p.add_argument("--tag", default=str(int(time.time())), help="put in the first question (default: the time)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--label", default="")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
