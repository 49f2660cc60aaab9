"""The child process of the CPU kernel check (see kernels.py): decode a short prompt with llama.cpp's
fast CPU kernels, then with the safe ones, and print "ok" when they agree. A crash here is the
answer the parent is looking for, so nothing is caught.

    python -m appliance.engine.native.kernel_check MODEL.gguf

ALVEARE_KERNEL_CHECK_FAULT=crash|wrong makes the check fail on purpose, so the fallback path can be
tested on any machine (it is read only by this child).
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from appliance.engine.native.llama import Batch, Context, Model, default_threads, quiet_native_logs

# The exit status for "llama.cpp cannot load this file at all", which says nothing about kernels.
UNLOADABLE = 3

# Long enough that the prompt is decoded as one batched matmul (the AMX path), short enough to be quick.
# Every prompt row asks for logits, so the output matrix is multiplied batched too: with one row it
# takes a one-row kernel, and a model whose layers have no fast kernels but whose output tensor has
# (a Q5_0 file's Q8_0 output, say) passed the check and then crashed on a server's first step of
# several sequences.
PROMPT = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Rome is the "
    "capital of Italy. One, two, three, four, five, six, seven,"
)


def top_tokens(model_path: str, *, extra_bufts: bool, fault: str) -> list[list[int]]:
    """The 5 most likely next tokens at each position of the prompt (decoded in one batch), and
    after one more (greedy) token decoded on its own."""
    model = Model(model_path, gpu=False, extra_bufts=extra_bufts)
    ctx = Context(model, n_ctx=256, n_seq=1, n_batch=256, threads=default_threads(), flash="auto")
    batch = Batch(256)
    if extra_bufts and fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    tokens = model.tokenize(PROMPT, add_special=model.add_bos, parse_special=False)
    rows: list[list[int]] = []
    feed = list(enumerate(tokens))  # the prompt in one batch, then one greedy token
    for _ in range(2):
        batch.clear()
        for pos, tok in feed:
            batch.add(tok, pos, 0, logits=True)
        if ctx.decode(batch) != 0:
            raise SystemExit("llama_decode failed")
        out = ctx.output_logits(batch.n, model.n_vocab)  # every row asked for logits
        if not np.isfinite(out).all():
            raise SystemExit("non-finite logits")
        # Highest first; among equal logits the lower token id first.
        rows.extend(np.argsort(-out, axis=1, kind="stable")[:, :5].tolist())
        feed = [(len(tokens), rows[-1][0])]
    batch.close()
    ctx.close()
    model.close()
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appliance.engine.native.kernel_check MODEL.gguf", file=sys.stderr)
        return 2
    quiet_native_logs(False)
    fault = os.environ.get("ALVEARE_KERNEL_CHECK_FAULT", "")
    try:
        fast = top_tokens(argv[0], extra_bufts=True, fault=fault)
    except RuntimeError as exc:  # not a kernel problem: the engine's own load will say what is wrong
        print(f"unloadable: {exc}")
        return UNLOADABLE
    safe = top_tokens(argv[0], extra_bufts=False, fault=fault)
    # Rounding differs between kernels, so a near-tie may swap the order; the fast kernels' first
    # choice must still be among the safe kernels' top five at every position.
    parted = [i for i, (f, s) in enumerate(zip(fast, safe, strict=True)) if f[0] not in s]
    if parted or fault == "wrong":
        at = parted[0] if parted else len(fast) - 1
        print(f"mismatch at position {at}: fast kernels chose {fast[at][0]}; safe top-5 {safe[at]}")
        return 1
    print(f"ok: fast and safe kernels agree at all {len(fast)} positions (last tokens {fast[-2][0]}, {fast[-1][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
