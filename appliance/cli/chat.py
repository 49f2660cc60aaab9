"""`alveare chat`: an interactive conversation with a specialist, each answer streamed."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.base import Command
from appliance.cli.output import error_line
from appliance.cli.user import add_server_flag, client

QUIT = ("/exit", "/quit", "/q")


class ChatCommand(Command):
    name = "chat"
    help = "chat with a specialist (answers stream in; Ctrl+D or /exit ends, Ctrl+C stops an answer)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_server_flag(parser)
        parser.add_argument("--specialist", "-s", default="chat", help="the specialist to talk to (default chat)")
        parser.add_argument("--system", help="your own system message for the conversation")
        parser.add_argument("--max-tokens", type=int, default=512, help="most tokens per answer (default 512)")
        parser.add_argument("--temperature", type=float, help="0 to 2 (default: the specialist's)")
        parser.set_defaults(run=chat)


def chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    messages: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    with client(args) as c:
        c.models()  # a bad key or an unreachable server is one error now, before the first question
        if interactive:
            print(f"Chatting with {args.specialist} at {c.base_url}. Ctrl+D or /exit ends; Ctrl+C stops an answer.")
        while True:
            try:
                line = input("you> " if interactive else "")
            except EOFError:
                if interactive:
                    print()
                return 0
            except KeyboardInterrupt:
                print()
                return 130
            text = line.strip()
            if not text:
                continue
            if text in QUIT:
                return 0
            messages.append({"role": "user", "content": text})
            if interactive:
                print(f"{args.specialist}> ", end="", flush=True)
            answer: list[str] = []
            try:
                for piece in c.chat_stream(
                    args.specialist, messages, max_tokens=args.max_tokens, temperature=args.temperature
                ):
                    answer.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                print(" [stopped]", end="")
            except Exception as exc:
                from alveare import AlveareError

                if not isinstance(exc, AlveareError) or not interactive:
                    raise
                # In a conversation one failed answer is a message, not the end of the session.
                print(f"\nalveare: error: {error_line(exc)}", file=sys.stderr)
                messages.pop()
                continue
            print()
            messages.append({"role": "assistant", "content": "".join(answer)})
