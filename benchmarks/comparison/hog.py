#!/usr/bin/env python3
"""The CPU hog of the contention scenarios, run as its own process by compare.py.

  llama  a second llama.cpp process (llama-cpp-python, the same model) decoding without pause
         with --threads threads: the case of the perf issue, where ggml's threads of two processes
         spin against each other on the same cores
  spin   --threads Python busy loops (one process each), the plain CPU hog

Not pinned unless --cpus names cores (then the process, and so ggml's threads or every loop, is
held to them). It prints "ready" once it is busy and, when stopped (SIGTERM), one JSON line with
the tokens it decoded and the seconds it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

PROMPT = b"Write a long story about a lighthouse keeper and the ships she saw over forty years."


def _stop(_signum, _frame) -> None:
    raise SystemExit(0)


def spin(threads: int) -> None:
    child = any(os.fork() == 0 for _ in range(threads - 1))  # any() stops at the first fork in a child
    if not child:
        print("ready", flush=True)
    while True:
        pass


def decode(model: str, threads: int, safe_kernels: bool) -> dict:
    """Decode greedily for ever (256 tokens at a time from the same prompt); when stopped, the
    tokens decoded and the seconds since the first one."""
    import llama_cpp.llama_cpp as llama_cpp  # the module llama_cpp.llama reads its defaults from
    from llama_cpp import Llama

    if safe_kernels:  # Llama() takes no such option: it starts from these defaults
        defaults = llama_cpp.llama_model_default_params

        def without_extra_buffer_types():
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = without_extra_buffer_types

    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
    prompt = llm.tokenize(PROMPT)
    decoded, t0 = 0, time.perf_counter()
    try:
        while True:
            # from an empty cache each round: generate() would otherwise reuse the cached prompt
            # and, after an end-of-generation token, sample the stale logits again without a decode
            llm.reset()
            for n, _token in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True)):
                decoded += 1
                if decoded == 1:
                    t0 = time.perf_counter()
                    print("ready", flush=True)
                if n >= 255:  # end-of-generation tokens too: every round is 256 decodes
                    break
    except SystemExit:
        return {"tokens": decoded, "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("llama", "spin"), default="llama")
    ap.add_argument("--model", default="", help="GGUF for --kind llama")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cpus", default="", help="comma-separated cores to pin to (default: not pinned)")
    ap.add_argument(
        "--safe-kernels", action="store_true", help="no extra buffer types (repacking, AMX): llama-server's --no-repack"
    )
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    signal.signal(signal.SIGTERM, _stop)
    if args.kind == "spin":
        spin(args.threads)
    if not args.model:
        sys.exit("--kind llama needs --model")
    print(json.dumps(decode(args.model, args.threads, args.safe_kernels)), flush=True)


if __name__ == "__main__":
    main()
