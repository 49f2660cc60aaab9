"""`alveare infer`: one prompt to a specialist; the answer printed whole, streamed, or as the raw JSON."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.base import Command
from appliance.cli.output import print_json, progress
from appliance.cli.user import add_server_flag, client, read_text


class InferCommand(Command):
    name = "infer"
    help = "send a prompt to a specialist and print the answer"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_server_flag(parser)
        parser.add_argument("--specialist", "-s", required=True, help="summarise, classify, extract, qa, chat, ...")
        parser.add_argument("--prompt", "-p", required=True, help="the prompt; '-' reads standard input")
        parser.add_argument("--max-tokens", type=int, help="most tokens to generate (default: the specialist's)")
        parser.add_argument("--temperature", type=float, help="0 to 2 (default: the specialist's)")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--stream", action="store_true", help="print the answer as it is generated")
        how.add_argument("--json", action="store_true", help="print the raw response (result, tokens_used, ...)")
        parser.set_defaults(run=infer)


def infer(args: argparse.Namespace) -> int:
    prompt = read_text(args.prompt, "prompt")
    with client(args) as c:
        if args.stream:
            # /v1/infer answers whole; the same specialist through chat completions streams.
            pieces = c.chat_stream(args.specialist, prompt, max_tokens=args.max_tokens, temperature=args.temperature)
            for text in pieces:
                sys.stdout.write(text)
                sys.stdout.flush()
            print()
            return 0
        with progress(f"Asking {args.specialist}"):
            response = c.infer(args.specialist, prompt, max_tokens=args.max_tokens, temperature=args.temperature)
    if args.json:
        print_json(response)
        return 0
    print(response.result)
    if sys.stderr.isatty():
        print(
            f"[{response.tokens_used} tokens, {response.latency_ms} ms, {response.finish_reason}, {response.id}]",
            file=sys.stderr,
        )
    return 0
