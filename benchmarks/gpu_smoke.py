#!/usr/bin/env python3
"""Check Alveare's CUDA path end to end: serve on the GPU, read the device, chat once.

Starts `<alveare> --data-dir <tmp> serve --gpu auto --model M` on a free loopback port,
waits until the model is loaded, reads `GET /v1/hive/status` with the admin key it prints,
fails unless `device` says gpu, sends one chat completion through the OpenAI-style API,
then stops the server with SIGTERM and prints its step profile ("hive profile: ...").
Only the standard library and httpx. Example:

  python benchmarks/gpu_smoke.py --alveare 'python -m appliance' --model /path/model.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alveare", default="alveare", help="command that runs the CLI (default: alveare)")
    p.add_argument("--model", required=True)
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for the model to load")
    args = p.parse_args()

    data = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    port = free_port()
    cmd = [*shlex.split(args.alveare), "--data-dir", str(data / "data"), "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model", args.model, "--gpu", "auto", "--slots", "4", "--ctx", "4096"]
    log = data / "serve.log"
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    ok = False
    try:
        with httpx.Client(timeout=30) as c:
            while True:
                if proc.poll() is not None:
                    print(f"FAIL: server exited with {proc.returncode}")
                    return 1
                try:
                    r = c.get(base + "/health")
                    if r.status_code == 200 and r.json().get("model_loaded", True):
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > args.timeout:
                    print("FAIL: not ready in time")
                    return 1
                time.sleep(0.25)
            print(f"ready in {time.perf_counter() - t0:.1f} s", flush=True)
            lines = log.read_text(errors="replace").splitlines()
            # the first start writes the admin key to the data dir when its output is not a terminal
            kept = data / "data" / "first-admin.key"
            key = kept.read_text().strip() if kept.exists() else ""
            key = key or next(lines[i + 1].strip() for i, ln in enumerate(lines[:-1]) if "Admin API key" in ln)
            auth = {"Authorization": f"Bearer {key}"}
            status = c.get(base + "/v1/hive/status", headers=auth).json()
            print(
                "hive status:",
                json.dumps(
                    {
                        **{k: status["model"].get(k) for k in ("device", "gpu_layers", "name")},
                        "kv_cells": status["kv"].get("cells"),
                    }
                ),
            )
            body = {
                "model": "chat",
                "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
                "max_tokens": 32,
                "temperature": 0,
            }
            t1 = time.perf_counter()
            r = c.post(base + "/v1/chat/completions", headers=auth, json=body)
            dt = time.perf_counter() - t1
            print(f"chat completion: HTTP {r.status_code} in {dt:.3f} s")
            out = r.json()
            print("answer:", json.dumps(out.get("choices", [{}])[0].get("message", {}).get("content")))
            print("usage:", json.dumps(out.get("usage")))
            ok = str(status.get("device", "")).startswith("gpu") and r.status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ln in log.read_text(errors="replace").splitlines():
            if "loaded in" in ln or "hive profile" in ln or "Traceback" in ln or "Error" in ln:
                print("log:", ln.strip())
    print("PASS: GPU device and a chat completion" if ok else "FAIL: device is not gpu or the chat failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
