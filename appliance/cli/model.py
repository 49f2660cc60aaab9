"""`alveare model optimize` and `alveare model show`: a kernel-friendly copy of the model, kept only
if it passes the quality gate (appliance/models/optimize.py), and what is recorded about it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from appliance.cli.base import Command, action, actions, add_setting_flags, load_settings
from appliance.cli.output import fail, print_json, table
from appliance.core.errors import ConfigError

if TYPE_CHECKING:
    from appliance.core.settings import Settings
    from appliance.models.report import Report


class ModelCommand(Command):
    name = "model"
    help = "a faster copy of the model, kept only if it passes a quality gate"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        group = actions(parser)
        p = action(
            group,
            "optimize",
            "requantise the model to types with batched CPU kernels, measure quality and speed against the "
            "original, and keep the fastest copy that passes the gate (serve then loads it)",
            optimize,
            json=True,
        )
        add_setting_flags(
            p,
            only=("data_dir", "model_path", "threads", "cpu_kernels"),
            # The speed gate measures at one fixed count (no adapting to contention, unlike serve).
            helps={"threads": "CPU threads for the quality and speed measurements. 0: all available cores"},
        )
        p.add_argument(
            "--type",
            dest="quant_type",
            choices=("auto", "q4_0", "q8_0"),
            default="auto",
            help="the type to try; auto tries q4_0 and q8_0 (default auto)",
        )
        p = action(
            group, "show", "the optimisation reports (--model: of that file) and the copy serve loads", show, json=True
        )
        add_setting_flags(p, only=("data_dir", "model_path"))


def _model_path(settings: Settings) -> str:
    from appliance.core.preflight import check_model
    from appliance.engine.engine import embedded_model_path

    try:
        path = settings.model_path or embedded_model_path()
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    check_model(path)
    return path


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def optimize(args: argparse.Namespace) -> int:
    from appliance.models.gate import gate_for
    from appliance.models.optimize import CANDIDATES
    from appliance.models.optimize import optimize as run

    settings = load_settings(args)
    path = _model_path(settings)
    if not settings.data_path.is_dir():
        raise ConfigError(f"no data dir at {settings.data_path}: run `alveare init` first, or pass --data-dir")
    from appliance.engine.native.llama import default_threads

    try:
        report = run(
            path,
            settings.models_path,
            kinds=CANDIDATES if args.quant_type == "auto" else (args.quant_type,),
            threads=settings.threads or default_threads(),
            cpu_kernels=settings.cpu_kernels,  # type: ignore[arg-type]
            kernel_cache=settings.kernel_cache_path,
            gate=gate_for(settings.solo_model != "off"),
            progress=_progress,
        )
    except (RuntimeError, OSError) as exc:  # llama.cpp refused the file, or the disk is full
        return fail(f"could not optimise {path}: {exc}")
    if args.json:
        print_json(report)
        return 0
    print_report(report)
    return 0


def show(args: argparse.Namespace) -> int:
    from appliance.models.report import reports

    settings = load_settings(args)
    found = reports(settings.models_path)
    if settings.model_path:  # only the reports on this file
        found = [r for r in found if r.source.path == os.path.realpath(settings.model_path)]
    if args.json:
        print_json(
            [
                {
                    "state": served_state(settings, r),
                    "solo_model": served_solo(settings, r),
                    "chat_template": template_label(r.source.path, settings.chat_template),
                    "report": r,
                }
                for r in found
            ]
        )
        return 0
    from appliance.boot.facts import embedded_model

    served = settings.model_path or embedded_model()[0]
    if served:
        print(f"Model:   {served}\nChat template: {template_label(served, settings.chat_template)}\n")
    if not found:
        print(f"No optimisation reports in {settings.models_path}; `alveare model optimize` makes one.")
        return 0
    for i, report in enumerate(found):
        if i:
            print()
        print_report(report)
        print(f"State:   {served_state(settings, report)}")
        if solo := served_solo(settings, report):
            print(f"Solo:    a request running alone decodes on {solo} (the solo lane; --solo-model off: never)")
    return 0


def template_label(path: str, asked: str) -> str:
    """The chat template serve would use for this file, or why it would refuse to start."""
    from appliance.engine.chat_render import check_chat_template
    from appliance.engine.chat_template import TemplateError

    try:
        return check_chat_template(path, asked) or "unknown (llama.cpp cannot read the file)"
    except TemplateError as exc:
        return f"none: serve refuses to start: {exc}"


def served_solo(settings: Settings, report: Report) -> str | None:
    """The file serve would put beside the copy for requests running alone (the start plan's rule), or None."""
    from appliance.boot.plan import solo_model

    copy = report if report.copy_path and served_state(settings, report) == "in use" else None
    return solo_model(settings, report.source.path, copy)[0]


def served_state(settings: Settings, report: Report) -> str:
    """The copy's state as serve with these settings would see it (the start plan's rules)."""
    from appliance.boot.facts import gpu_offload
    from appliance.boot.plan import copy_unused_because
    from appliance.models.select import copy_state

    state = copy_state(report)
    unused = copy_unused_because(settings, gpu_offload(settings)) if report.kept and state == "in use" else None
    return f"not used: {unused}" if unused else state


def print_report(r: Report) -> None:
    print(f"Model:   {r.source.path} ({r.source.description}, {r.source.size / 1e6:.1f} MB)")
    threads = f"{r.threads} thread" + ("s" if r.threads != 1 else "")
    print(f"Machine: {r.cpu}, {threads}, llama-cpp-python {r.llama_cpp_python}, {r.created_at}")
    print(
        f"Gate:    perplexity on {r.text_tokens} tokens at most {r.gate.max_perplexity_increase:+.0%}, greedy "
        f"agreement on {r.prompts} prompts x {r.answer_tokens} tokens at least {r.gate.min_agreement:.0%}, "
        f"speed at least {r.gate.min_speedup:.2f}x, none of the three below {r.gate.min_each:.2f}x"
        + (f" (decode x1: {r.gate.one_row_floor:.2f}x, with the solo lane)" if r.gate.one_row_floor is not None else "")
    )
    print()
    headers = ["model", "MB", "kernels", "perplexity", "agreement", "same answers", "prefill", "decode x8", "decode x1"]
    headers += ["speed", "kept"]
    rows = []
    for c in [r.original, *r.candidates]:
        ppl = f"{c.perplexity:.2f}" + (f" ({c.perplexity_increase:+.1%})" if c.perplexity_increase is not None else "")
        rows.append(
            [
                c.type,
                f"{c.size_bytes / 1e6:.1f}",
                c.kernels,
                ppl,
                f"{c.agreement:.0%}" if c.agreement is not None else "-",
                f"{c.exact_answers}/{r.prompts}" if c.exact_answers is not None else "-",
                f"{c.speed.prefill:.0f}",
                f"{c.speed.decode_batch:.0f}",
                f"{c.speed.decode_one:.0f}",
                f"{c.speedup:.2f}x" if c.speedup is not None else "1.00x",
                "yes" if r.kept == c.type else "-",
            ]
        )
    table(headers, rows, right=("MB", "prefill", "decode x8", "decode x1", "speed"))
    print("(speeds in tokens/s; agreement: the original's greedy answer tokens the copy also picks)")
    print()
    print(f"Verdict: {r.verdict}")
    if r.copy_path:
        print(f"Copy:    {r.copy_path}")
