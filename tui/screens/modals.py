"""Modal screens: forms, confirmations, the new-key reveal and the help screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from appliance.store import CreatedKey

Kind = Literal["text", "int", "float", "optional_float", "bool", "select", "textarea", "optional_text"]


@dataclass
class Field:
    """One input of a FormModal."""

    name: str
    label: str
    value: Any = None
    kind: Kind = "text"
    options: list[str] = field(default_factory=list)
    placeholder: str = ""
    help: str = ""


class FormModal(ModalScreen[dict[str, Any] | None]):
    """A titled form; dismisses with {name: parsed value}, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    def __init__(self, title: str, fields: list[Field], *, submit: str = "Save", note: str = "") -> None:
        super().__init__()
        self.form_title = title
        self.fields = fields
        self.submit_label = submit
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form") as dialog:
            dialog.border_title = self.form_title
            if self.note:
                yield Static(self.note, classes="note")
            with VerticalScroll(classes="fields"):
                for f in self.fields:
                    yield from self._compose_field(f)
            yield Static("", id="form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button(self.submit_label, variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def _compose_field(self, f: Field) -> ComposeResult:
        wid = f"field-{f.name}"
        if f.kind == "bool":
            with Horizontal(classes="row"):
                yield Label(f.label, classes="label")
                yield Switch(value=bool(f.value), id=wid)
        elif f.kind == "select":
            with Horizontal(classes="row"):
                yield Label(f.label, classes="label")
                yield Select(
                    [(o, o) for o in f.options],
                    value=f.value if f.value in f.options else Select.NULL,
                    allow_blank=f.value not in f.options,
                    id=wid,
                )
        elif f.kind == "textarea":
            yield Label(f.label, classes="label wide")
            area = TextArea(str(f.value or ""), id=wid, soft_wrap=True, show_line_numbers=False)
            yield area
        else:
            with Horizontal(classes="row"):
                yield Label(f.label, classes="label")
                value = "" if f.value is None else str(f.value)
                kind = {"int": "integer", "float": "number", "optional_float": "number"}.get(f.kind, "text")
                yield Input(value, placeholder=f.placeholder, id=wid, type=kind)  # type: ignore[arg-type]
                if self._inline_help(f):
                    yield Static(f.help, classes="hint")
        if f.help and not self._inline_help(f):
            yield Static(f.help, classes="help")

    @staticmethod
    def _inline_help(f: Field) -> bool:
        """Short hints sit to the right of their input; longer ones get a line of their own."""
        return (
            bool(f.help) and len(f.help) <= 40 and f.kind in ("text", "optional_text", "int", "float", "optional_float")
        )

    def on_mount(self) -> None:
        # A prompt editor as tall as the terminal allows, leaving room for the rest of the form.
        others = sum(1 for f in self.fields if f.kind != "textarea")
        for area in self.query(TextArea):
            area.styles.height = max(4, min(14, self.app.size.height - 12 - 2 * others))
        self.query_one("#form-error").display = False
        first = self.query("Input, TextArea, Select, Switch").first()
        if all(f.kind == "select" and f.value in f.options for f in self.fields):
            # Only choices, already made (the new-key dialog's account): Enter on a Select would open its
            # list, so the button has the focus and Enter saves, as in every other dialog.
            first = self.query_one("#submit", Button)
        first.focus()

    def _parse(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for f in self.fields:
            widget = self.query_one(f"#field-{f.name}")
            if isinstance(widget, Switch):
                values[f.name] = widget.value
            elif isinstance(widget, Select):
                if widget.value is Select.NULL:
                    raise ValueError(f"Choose a value for {f.label.lower()}.")
                values[f.name] = widget.value
            elif isinstance(widget, TextArea):
                values[f.name] = widget.text
            else:
                assert isinstance(widget, Input)
                text = widget.value.strip()
                if f.kind == "int":
                    try:
                        values[f.name] = int(text.replace(",", "").replace("_", ""))
                    except ValueError:
                        raise ValueError(f"{f.label} must be a whole number.") from None
                elif f.kind in ("float", "optional_float"):
                    if not text and f.kind == "optional_float":
                        values[f.name] = None
                        continue
                    try:
                        values[f.name] = float(text.replace(",", ""))
                    except ValueError:
                        raise ValueError(f"{f.label} must be a number.") from None
                else:
                    if not text and f.kind != "optional_text":
                        raise ValueError(f"{f.label} must not be empty.")
                    values[f.name] = text
        return values

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        try:
            values = self._parse()
        except ValueError as exc:
            error = self.query_one("#form-error", Static)
            error.update(str(exc))
            error.display = True
            return
        self.dismiss(values)

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """Yes or no; the default button is the safe one."""

    BINDINGS = [
        Binding("escape,n", "no", "No"),
        Binding("y", "yes", "Yes"),
    ]

    def __init__(self, title: str, question: str, *, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.confirm_title = title
        self.question = question
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm") as dialog:
            dialog.border_title = self.confirm_title
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
                yield Button(f"{self.no_label} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class NewKeyModal(ModalScreen[None]):
    """Shows a newly created key once, with a copy action and a warning."""

    BINDINGS = [
        Binding("c", "copy", "Copy key"),
        Binding("escape", "close", "Done"),
    ]

    def __init__(self, created: CreatedKey, *, note: str = "") -> None:
        super().__init__()
        self.created = created
        self.note = note

    def compose(self) -> ComposeResult:
        kind = "test" if self.created.test else "live"
        with Vertical(classes="dialog newkey") as dialog:
            dialog.border_title = f"New {kind} key for {self.created.account}"
            yield Static(
                "This is the only time the key is shown. Alveare stores only a hash of it: "
                "copy it now and keep it somewhere safe.",
                classes="warning",
            )
            yield Static(self.created.key, id="the-key", classes="key")
            if self.note:
                yield Static(self.note, classes="note")
            with Horizontal(classes="buttons"):
                yield Button("Copy (c)", variant="primary", id="copy")
                yield Button("Done", id="done")

    def on_mount(self) -> None:
        self.query_one("#copy", Button).focus()

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.created.key)
        self.notify("Copied to the clipboard (your terminal must allow OSC 52; otherwise select the key).")

    @on(Button.Pressed, "#done")
    def action_close(self) -> None:
        self.dismiss(None)


class HelpModal(ModalScreen[None]):
    """Every binding of every screen, from the same table the command palette uses."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        from rich.text import Text

        width = max(len(keys) for _, rows in self.sections for keys, _ in rows) + 2
        text = Text()
        for title, rows in self.sections:
            text.append(title + "\n", style="bold underline")
            for keys, description in rows:
                text.append(f"  {keys:<{width}}", style="bold cyan")
                text.append(description + "\n")
            text.append("\n")
        with Vertical(classes="dialog help") as dialog:
            dialog.border_title = "Help: keys and actions"
            dialog.border_subtitle = "Esc closes · Ctrl+P searches every action"
            with VerticalScroll():
                text.rstrip()
                yield Static(text, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
