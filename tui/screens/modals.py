"""Modal screens: forms, confirmations, the new-key reveal and the help screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from appliance.store import CreatedKey

Kind = Literal["text", "int", "float", "optional_float", "bool", "select", "textarea", "optional_text"]
T = TypeVar("T")


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
    # The name the back end's errors give this input (AlveareError.param), when not `name`.
    param: str | None = None


class FieldError(ValueError):
    """A field's value that does not parse (a word where a number goes); the form marks the field."""

    def __init__(self, f: Field, message: str) -> None:
        super().__init__(message)
        self.field = f


class FormModal(ModalScreen[dict[str, Any] | None]):
    """A titled form. Without `save` it dismisses with {name: parsed value}, or None when cancelled.

    With `save(values, form)` it stays open while the back end checks the values: `save` starts the
    call with `done=form.closing(...)` and `failed=form.failed`, so a refusal (a limit out of range, a
    name taken) is shown under the fields, the field it names is marked, and everything typed stays,
    until the values are accepted or the user cancels.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    def __init__(
        self,
        title: str,
        fields: list[Field],
        *,
        submit: str = "Save",
        note: str = "",
        save: Callable[[dict[str, Any], FormModal], object] | None = None,
    ) -> None:
        super().__init__()
        self.form_title = title
        self.fields = fields
        self.submit_label = submit
        self.note = note
        self.save = save
        # A save on its way to the back end (a second Enter waits for its answer), and whether the
        # form is closed (cancelled while a save was on its way: its answer is still reported).
        self.saving = False
        self.closed = False
        self._close_on_resume = False
        # What had the focus when a save began (disabling the button may take it), for a refusal.
        self._focus_before: Widget | None = None

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
                    raise FieldError(f, f"Choose a value for {f.label.lower()}.")
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
                        raise FieldError(f, f"{f.label} must be a whole number.") from None
                elif f.kind in ("float", "optional_float"):
                    if not text and f.kind == "optional_float":
                        values[f.name] = None
                        continue
                    try:
                        values[f.name] = float(text.replace(",", ""))
                    except ValueError:
                        raise FieldError(f, f"{f.label} must be a number.") from None
                else:
                    if not text and f.kind != "optional_text":
                        raise FieldError(f, f"{f.label} must not be empty.")
                    values[f.name] = text
        return values

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        if self.saving or self.closed:
            return
        self._clear_marks()
        try:
            values = self._parse()
        except FieldError as exc:
            self._show_error(str(exc))
            self._mark(exc.field)
            return
        if self.save is None:
            self.closed = True
            self.dismiss(values)
            return
        self.saving = True
        self._focus_before = self.focused
        self.query_one("#submit", Button).disabled = True
        self.save(values, self)

    def closing(self, then: Callable[[T], object]) -> Callable[[T], None]:
        """A back-end call's `done`: close the form (the values were accepted), then `then(result)`."""

        def done(result: T) -> None:
            self.close()
            then(result)

        return done

    def close(self) -> None:
        """Close the form: saved, or nothing to save."""
        self.saving = False
        if self.closed:
            return
        self.closed = True
        if self.is_current:
            self.dismiss(None)
        else:  # a help screen or the palette is over it: close it once it is back on top
            self._close_on_resume = True

    def on_screen_resume(self) -> None:
        if self._close_on_resume:
            self._close_on_resume = False
            self.dismiss(None)

    def failed(self, message: str, param: str | None = None) -> None:
        """A back-end call's `failed`: the values were refused. The form stays open with the message
        under the fields and the field it names marked and focused; nothing typed is lost."""
        self.saving = False
        if self.closed:  # cancelled meanwhile: the message still reaches the user
            self.app.notify(message, title="Not done", severity="error")
            return
        self.query_one("#submit", Button).disabled = False
        self._show_error(message)
        f = next((f for f in self.fields if param is not None and param in (f.name, f.param)), None)
        if f is not None:
            self._mark(f)
        elif self._focus_before is not None and self._focus_before.is_attached:
            self._focus_before.focus()

    def _mark(self, f: Field) -> None:
        """Mark the field in question and put the cursor there."""
        widget = self.query_one(f"#field-{f.name}")
        widget.add_class("invalid")
        widget.focus()

    def _show_error(self, message: str) -> None:
        error = self.query_one("#form-error", Static)
        error.update(message)
        error.display = True

    def _clear_marks(self) -> None:
        for widget in self.query(".invalid"):
            widget.remove_class("invalid")

    @on(Input.Changed)
    @on(TextArea.Changed)
    @on(Select.Changed)
    def _edited(self, event: Input.Changed | TextArea.Changed | Select.Changed) -> None:
        # The user is fixing the marked field: it is no longer the one in question.
        event.control.remove_class("invalid")

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.saving = False
        if not self.closed:
            self.closed = True
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
