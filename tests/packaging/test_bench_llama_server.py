"""benchmarks/compare.py's CPU kernel decision for llama-server, with a stand-in llama-server (a child
process that crashes as the fast kernels do on a virtualised Xeon, or serves). The pure parts of
compare.py are tests/unit/test_bench_compare.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


STAND_IN_SERVER = """
import http.server, json, os, signal, sys
if sys.argv[1] == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)
port = int(sys.argv[sys.argv.index("--port") + 1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.end_headers(); self.wfile.write(json.dumps({"content": "ok"}).encode())

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def stand_in_llama_server(tmp_path, behaviour: str) -> str:
    script = tmp_path / "server.py"
    script.write_text(STAND_IN_SERVER)
    binary = tmp_path / f"llama-server-{behaviour}"
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} {script} {behaviour} "$@"\n')
    binary.chmod(0o755)
    return str(binary)


def test_a_llama_server_killed_by_its_fast_kernels_runs_with_no_repack(tmp_path) -> None:
    from comparison import cpu_kernels

    verdict = cpu_kernels.decide("auto", stand_in_llama_server(tmp_path, "crash"), tmp_path / "m.gguf", 2, True)
    assert verdict.safe and "SIGSEGV" in verdict.reason
    verdict = cpu_kernels.decide("auto", stand_in_llama_server(tmp_path, "serve"), tmp_path / "m.gguf", 2, True)
    assert not verdict.safe and "served a request" in verdict.reason
    assert not cpu_kernels.decide("auto", "/nonexistent/llama-server", tmp_path / "m.gguf", 2, True).safe
    assert cpu_kernels.decide("safe", "/nonexistent", tmp_path / "m.gguf", 2, False).safe
