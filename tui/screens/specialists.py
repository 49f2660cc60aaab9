"""Specialists: prompts and parameters, overrides kept in the database, the LoRA adapter each decodes
under (set and cleared through the running server), and a try-it panel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from appliance.admin.ops import SpecialistProfile, TryItEvent
from appliance.core.errors import AlveareError, ServerUnavailable
from appliance.core.protocol import AdapterStatus
from tui.screens.base import View
from tui.screens.modals import ConfirmModal, Field, FormModal


def _params(temperature: float, top_p: float, max_tokens: int) -> str:
    return f"temperature {temperature:g} · top_p {top_p:g} · max_tokens {max_tokens}"


class SpecialistsView(View):
    TITLE = "Specialists"
    KEY = "4"
    HELP = "Default prompts and parameters; try a specialist on the live model"
    BINDINGS = [
        Binding("e", "edit", "Edit prompt/params"),
        Binding("d", "reset", "Reset to file"),
        Binding("a", "set_adapter", "Set adapter"),
        Binding("x", "clear_adapter", "Clear adapter"),
        Binding("t", "try_it", "Try it"),
        Binding("escape", "stop_try", "Back to list"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.profiles: list[SpecialistProfile] = []
        self.adapters: dict[str, AdapterStatus] | None = None  # None: not known (no server answers)
        self.answer = ""
        self.stream_id = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="spec-split"):
            table: DataTable = DataTable(id="spec-table", cursor_type="row", zebra_stripes=True)
            table.add_column("Specialist", key="name")
            table.add_column("Temp", key="temp")
            table.add_column("Max", key="max")
            yield table
            with Vertical(id="spec-side"):
                with VerticalScroll(id="spec-detail"):
                    yield Static("", id="spec-info")
                with Vertical(id="try-panel") as panel:
                    panel.border_title = "Try it"
                    yield Input(placeholder="A prompt for the specialist; Enter sends it", id="try-input")
                    with VerticalScroll(id="try-scroll"):
                        yield Static("", id="try-answer")
                    yield Static("", id="try-stats", classes="muted")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.specialists(done=self.show_profiles)
        self.alveare.adapters(done=self.show_adapters)

    def show_adapters(self, adapters: dict[str, AdapterStatus]) -> None:
        self.adapters = adapters if self.alveare.backend.online else None
        self.show_detail()

    def show_profiles(self, profiles: list[SpecialistProfile]) -> None:
        self.profiles = profiles
        table = self.query_one("#spec-table", DataTable)
        row = table.cursor_row
        table.clear()
        for p in profiles:
            name = Text(p.name)
            if p.overridden:
                name.append(" *", style="bold yellow")
            table.add_row(
                name,
                Text(f"{p.temperature:g}", justify="right"),
                Text(str(p.max_tokens), justify="right"),
                key=p.name,
            )
        if profiles:
            table.move_cursor(row=min(max(row, 0), len(profiles) - 1))
        self.show_detail()

    def selected(self) -> SpecialistProfile | None:
        if not self.profiles:
            return None
        row = self.query_one("#spec-table", DataTable).cursor_row
        return self.profiles[min(max(row, 0), len(self.profiles) - 1)]

    @on(DataTable.RowHighlighted, "#spec-table")
    def show_detail(self) -> None:
        p = self.selected()
        info = self.query_one("#spec-info", Static)
        if p is None:
            info.update("")
            return
        text = Text()
        text.append(p.name, style="bold")
        text.append(f"  model {p.model_id}\n", style="dim")
        text.append(p.description + "\n", style="italic")
        text.append(_params(p.temperature, p.top_p, p.max_tokens))
        extras = []
        if p.stop:
            extras.append("stop " + ", ".join(repr(s) for s in p.stop))
        if p.examples:
            extras.append(f"{p.examples} worked examples")
        if p.prompt_lookup:
            extras.append("prompt lookup")
        if extras:
            text.append("\n" + " · ".join(extras), style="dim")
        if self.adapters is not None:
            adapter = self.adapters.get(p.name)
            if adapter is None:
                text.append("\nNo adapter: the base model (a sets one)", style="dim")
            else:
                size = f"{adapter.size_bytes / 1e6:.1f} MB"
                text.append(f"\nAdapter {Path(adapter.file).name} (scale {adapter.scale:g}, {size}); x clears it")
        if p.overridden:
            text.append("\n* Overridden in the database; d goes back to specialists.toml.", style="yellow")
        text.append("\n\nSystem prompt\n", style="bold underline")
        text.append(p.system_prompt)
        if p.overridden:
            if p.system_prompt != p.default_system_prompt:
                text.append("\n\nFile default\n", style="bold underline dim")
                text.append(p.default_system_prompt, style="dim")
            defaults = _params(p.default_temperature, p.default_top_p, p.default_max_tokens)
            if defaults != _params(p.temperature, p.top_p, p.max_tokens):
                text.append(f"\nFile parameters: {defaults}", style="dim")
        info.update(text)
        self.query_one("#try-panel").border_title = f"Try {p.name}"

    # --- actions ------------------------------------------------------------------------------
    def action_edit(self) -> None:
        p = self.selected()
        if p is None:
            return
        name = p.name

        def save(values: dict[str, Any], form: FormModal) -> None:
            if not values["system_prompt"].strip():
                form.failed("The system prompt must not be empty.", "system_prompt")
                return
            changes: dict[str, Any] = {}
            if values["system_prompt"] != p.system_prompt:
                changes["system_prompt"] = values["system_prompt"]
            for field in ("temperature", "top_p", "max_tokens"):
                if values[field] != getattr(p, field):
                    changes[field] = values[field]
            if not changes:
                form.close()
                self.notify("Nothing changed.")
                return
            self.alveare.set_specialist(
                name,
                **changes,
                done=form.closing(lambda s: self._changed(f"Saved {s.name}: the next request uses it.")),
                failed=form.failed,
            )

        self.app.push_screen(
            FormModal(
                f"Edit {name}",
                [
                    Field("system_prompt", "System prompt", p.system_prompt, kind="textarea"),
                    Field("temperature", "Temperature", p.temperature, kind="float", help="0 to 2"),
                    Field("top_p", "Top p", p.top_p, kind="float", help="0 to 1"),
                    Field("max_tokens", "Max tokens", p.max_tokens, kind="int"),
                ],
                note="Saved in the database over specialists.toml (d resets it). Ctrl+S saves.",
                save=save,
            )
        )

    def _changed(self, message: str) -> None:
        self.notify(message)
        self.reload()

    def action_reset(self) -> None:
        p = self.selected()
        if p is None:
            return
        if not p.overridden:
            self.notify(f"{p.name} already uses the defaults from specialists.toml.")
            return
        name = p.name

        def reset(yes: bool | None) -> None:
            if yes:
                self.alveare.reset_specialist(
                    name, done=lambda s: self._changed(f"{s.name} is back to specialists.toml.")
                )

        self.app.push_screen(
            ConfirmModal(
                "Reset specialist",
                f"Drop the override of {name} and go back to the prompt and parameters in specialists.toml?",
                yes="Reset",
            ),
            reset,
        )

    def action_set_adapter(self) -> None:
        p = self.selected()
        if p is None:
            return
        name = p.name

        def save(values: dict[str, Any], form: FormModal) -> None:
            path = values["path"].strip()

            def loaded(a: AdapterStatus) -> None:
                self._changed(f"{a.specialist} decodes under {Path(path).name} from its next request.")

            self.alveare.set_specialist_adapter(
                name, path, values["scale"], done=form.closing(loaded), failed=form.failed
            )

        self.app.push_screen(
            FormModal(
                f"Adapter for {name}",
                [
                    Field("path", "Adapter file", "", placeholder="/path/to/adapter.gguf", param="file"),
                    Field("scale", "Scale", 1.0, kind="float", help="above 0, at most 10"),
                ],
                note="A GGUF LoRA made for the served model, sent to the server, which checks it on the model "
                "and keeps it in its data dir. Ctrl+S saves.",
                save=save,
            )
        )

    def action_clear_adapter(self) -> None:
        p = self.selected()
        if p is None:
            return
        name = p.name

        def cleared(back: AdapterStatus | None) -> None:
            where = f"specialists.toml's adapter {Path(back.file).name}" if back else "the base model"
            self._changed(f"{name} decodes under {where} again.")

        def clear(yes: bool | None) -> None:
            if yes:
                self.alveare.clear_specialist_adapter(name, done=cleared)

        self.app.push_screen(
            ConfirmModal(
                "Clear adapter",
                f"Drop the adapter set for {name} at run time (back to specialists.toml's, or to none)?",
                yes="Clear",
            ),
            clear,
        )

    def action_try_it(self) -> None:
        self.query_one("#try-input", Input).focus()

    def action_stop_try(self) -> None:
        self.query_one("#spec-table", DataTable).focus()

    @on(Input.Submitted, "#try-input")
    def _send(self, event: Input.Submitted) -> None:
        p = self.selected()
        prompt = event.value.strip()
        if p is None or not prompt:
            return
        self.answer = ""
        self.stream_id += 1
        self.query_one("#try-answer", Static).update(Text(f"> {prompt}\n", style="dim"))
        self.query_one("#try-stats", Static).update(f"sending to {p.name}…")
        self.stream(p.name, prompt, self.stream_id)

    @work(thread=True, exclusive=True, group="try-it", exit_on_error=False)
    def stream(self, specialist: str, prompt: str, stream_id: int) -> None:
        """Stream one try-it answer (in a thread). A newer prompt cancels this one: it stops reading
        (closing the stream) and none of its events reach the panel."""
        app = self.alveare
        worker = get_current_worker()
        start = time.monotonic()
        try:
            events = app.ensure_online().try_it(specialist, prompt)
            for event in events:
                if worker.is_cancelled:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()
                    return
                app.call_from_thread(self._event, prompt, event, time.monotonic() - start, stream_id)
        except ServerUnavailable as exc:
            app.call_from_thread(self._failed, f"The try-it panel needs the running server. {exc.message}", stream_id)
        except AlveareError as exc:
            app.call_from_thread(self._failed, exc.message, stream_id)
        except Exception as exc:
            app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}", stream_id)

    def _event(self, prompt: str, event: TryItEvent, elapsed: float, stream_id: int | None = None) -> None:
        if stream_id is not None and stream_id != self.stream_id:
            return  # from an answer a newer prompt replaced
        if event.text:
            self.answer += event.text
        body = Text(f"> {prompt}\n", style="dim")
        body.append(self.answer)
        self.query_one("#try-answer", Static).update(body)
        self.query_one("#try-scroll", VerticalScroll).scroll_end(animate=False)
        stats = self.query_one("#try-stats", Static)
        if event.done:
            stats.update(
                f"{event.prompt_tokens} prompt + {event.completion_tokens} completion tokens · "
                f"first token {event.time_to_first_token_ms:,} ms · total {event.latency_ms:,} ms · "
                f"{event.finish_reason or 'done'}"
            )
        else:
            stats.update(f"streaming… {elapsed:.1f} s")

    def _failed(self, message: str, stream_id: int) -> None:
        if stream_id != self.stream_id:
            return
        self.query_one("#try-stats", Static).update(Text(message, style="red"))
