"""`alveare specialists ...`: the account's specialists and its own system prompts; for admins, the
LoRA adapter a specialist decodes under (`adapter set` / `adapter clear`, through the admin API)."""

from __future__ import annotations

import argparse
import os

from appliance.cli.admin import add_target_flags, admin_ops
from appliance.cli.base import Command, action, actions
from appliance.cli.output import cut, print_json, table
from appliance.cli.user import add_server_flag, client, read_text


class SpecialistsCommand(Command):
    name = "specialists"
    help = "list the specialists, set or reset your account's system prompt for one; an admin sets adapters"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        group = actions(parser)
        p = action(group, "list", "the specialists, with the system prompt in force for your account", list_, json=True)
        add_server_flag(p)
        p = action(group, "update", "set your account's system prompt for a specialist", update, json=True)
        add_server_flag(p)
        p.add_argument("name")
        p.add_argument("--system-prompt", required=True, help="the prompt (1 to 8,000 characters); '-' reads stdin")
        p = action(group, "reset", "go back to the specialist's default system prompt", reset, json=True)
        add_server_flag(p)
        p.add_argument("name")
        adapter = actions(group.add_parser("adapter", help="an admin sets the LoRA adapter a specialist decodes under"))
        p = action(adapter, "set", "send a GGUF LoRA adapter for a specialist (checked on the model)", adapter_set)
        add_target_flags(p)
        p.add_argument("name")
        p.add_argument("file", help="the adapter's GGUF file, made for the served base model")
        p.add_argument("--scale", type=float, default=1.0, help="what the adapter is applied at (default 1)")
        p.add_argument("--json", action="store_true", help="print the raw JSON")
        p = action(adapter, "clear", "back to specialists.toml's adapter for it, or to none", adapter_clear)
        add_target_flags(p)
        p.add_argument("name")
        p.add_argument("--json", action="store_true", help="print the raw JSON")


def list_(args: argparse.Namespace) -> int:
    with client(args) as c:
        found = c.specialists.list()
    if args.json:
        print_json(found)
        return 0
    rows = [
        [s.name, "yes" if s.enabled else "no", "custom" if s.custom else "default", cut(s.system_prompt, 60)]
        for s in found.data
    ]
    table(["NAME", "ENABLED", "PROMPT", "SYSTEM PROMPT"], rows)
    if not found.custom_prompts_allowed:
        print("(Your plan has no custom system prompts: professional and scale plans do.)")
    return 0


def update(args: argparse.Namespace) -> int:
    prompt = read_text(args.system_prompt, "system prompt")
    with client(args) as c:
        view = c.specialists.update(args.name, system_prompt=prompt)
    if args.json:
        print_json(view)
    else:
        print(f"Your system prompt for {view.name} is set; it applies from the next request.")
    return 0


def reset(args: argparse.Namespace) -> int:
    with client(args) as c:
        view = c.specialists.reset(args.name)
    if args.json:
        print_json(view)
    else:
        print(f"{view.name} uses its default system prompt again.")
    return 0


def adapter_set(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        loaded = ops.set_specialist_adapter(args.name, args.file, args.scale)
    if args.json:
        print_json(loaded)
    else:
        print(
            f"{loaded.specialist} decodes under the adapter {os.path.basename(args.file)} (scale {loaded.scale:g}, "
            f"{loaded.size_bytes / 1e6:.1f} MB) from its next request; the server keeps it in its data dir."
        )
    return 0


def adapter_clear(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        back = ops.clear_specialist_adapter(args.name)
    if args.json:
        print_json(back)
    elif back is not None:
        print(f"{back.specialist} decodes under specialists.toml's adapter {back.file} again.")
    else:
        print(f"{args.name} decodes on the base model (no adapter).")
    return 0
