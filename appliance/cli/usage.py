"""`alveare usage`: the account's current period against its plan's limit, and by specialist."""

from __future__ import annotations

import argparse

from appliance.cli.base import Command
from appliance.cli.output import bar, print_json, table
from appliance.cli.user import add_server_flag, client


class UsageCommand(Command):
    name = "usage"
    help = "your account's usage this period: requests against the limit, tokens, by specialist"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_server_flag(parser)
        parser.add_argument("--json", action="store_true", help="print the raw JSON")
        parser.set_defaults(run=usage)


def usage(args: argparse.Namespace) -> int:
    with client(args) as c:
        report = c.usage()
    if args.json:
        print_json(report)
        return 0
    print(f"Period    {report.period_start[:10]} to {report.period_end[:10]} ({report.plan} plan)")
    print(
        f"Requests  {bar(report.requests_used, report.requests_limit)}  {report.requests_used:,} of "
        f"{report.requests_limit:,}"
    )
    print(f"Tokens    {report.tokens_used:,}")
    if report.overage_requests or report.spending:
        print(f"Overage   {report.overage_requests:,} requests, spending {report.spending:.2f}")
    if report.spending_cap is not None:
        print(f"Cap       {report.spending_cap:.2f} per period")
    if report.test_requests:
        print(f"Test keys {report.test_requests:,} requests (not counted)")
    if report.by_specialist:
        print()
        total = sum(report.by_specialist.values()) or 1
        rows = [
            [name, count, f"{count / total * 100:.0f}%"]
            for name, count in sorted(report.by_specialist.items(), key=lambda kv: -kv[1])
        ]
        table(["SPECIALIST", "REQUESTS", "SHARE"], rows, right=["REQUESTS", "SHARE"])
    return 0
