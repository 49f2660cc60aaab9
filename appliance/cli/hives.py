"""`alveare hives status`: the server's health and, with an admin key, the hive's live status."""

from __future__ import annotations

import argparse

from appliance.cli.base import Command, action, actions
from appliance.cli.output import print_json, table
from appliance.cli.user import add_server_flag, client


class HivesCommand(Command):
    name = "hives"
    help = "the hive: health, model, device, slots, queue, throughput"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        group = actions(parser)
        p = action(group, "status", "health, and the hive status when the key is an admin key", status, json=True)
        add_server_flag(p)


def status(args: argparse.Namespace) -> int:
    from alveare import PermissionDeniedError

    with client(args) as c:
        health = c.health()
        hive = None
        note = ""
        if c.api_key:
            try:
                hive = c.hive_status(all_nodes=True)
            except PermissionDeniedError:
                note = "(The hive's details need an admin key; health is all a user key sees.)"
        else:
            note = "(Log in with an admin key for the hive's details.)"
    if args.json:
        print_json({"health": health, "hive": hive})
        return 0
    up = f"{health.uptime_seconds // 3600}h {health.uptime_seconds % 3600 // 60}m"
    print(f"Health      {health.status} (version {health.version}, up {up}, model {health.model or '-'})")
    if hive is None:
        print(note)
        return 0 if health.status == "ok" else 1
    model = hive.model
    print(
        f"Model       {model.name} ({model.file})"
        + (f", the copy of {model.optimized_from}" if model.optimized_from else "")
    )
    print(f"Device      {model.device}" + (f", {model.gpu_layers} layers offloaded" if model.gpu_layers else ""))
    print(f"KV cache    {hive.kv.cells:,} cells ({hive.kv.layout}), up to {hive.kv.context_length:,} per request")
    print(f"CPU         {hive.cpu.threads} threads, {hive.cpu.kernels or '-'} kernels")
    print(f"Slots       {hive.slots_busy} of {hive.slots_total} busy, queue {hive.queue_depth} of {hive.queue_limit}")
    print(f"Throughput  {hive.tokens_per_second:.1f} tokens/s, {hive.requests_per_minute} requests/min")
    print(f"Served      {hive.requests_served:,} requests; prefix cache hit rate {hive.prefix_cache_hit_rate:.0%}")
    print(f"Specialists {', '.join(hive.specialists)}")
    if hive.errors_by_status:
        print("Errors      " + ", ".join(f"{k}: {v}" for k, v in sorted(hive.errors_by_status.items())))
    if hive.load_error:
        print(f"Load error  {hive.load_error}")
    for line in hive.tuning:
        print(f"Tuning      {line.name} {'on' if line.on else 'off'}: {line.state}")
    nodes = hive.nodes or []
    if len(nodes) > 1:  # a cluster: every node, this one marked
        print()
        rows = [
            [
                ("* " if n.this_node else "  ") + n.id,
                n.url,
                n.state,
                f"{n.heartbeat_age_seconds:.0f}s",
                f"{n.slots_busy}/{n.slots_total}",
                n.queue_depth,
                f"{n.tokens_per_second:.1f}",
                n.version,
            ]
            for n in nodes
        ]
        table(["NODE", "URL", "STATE", "LAST BEAT", "SLOTS", "QUEUE", "TOKENS/S", "VERSION"], rows, right=["QUEUE"])
        down = [n.id for n in nodes if n.state == "down"]
        if down:
            print(f"Down: {', '.join(down)} (no heartbeat for over 10 s).")
    return 0 if health.status == "ok" else 1
