"""Which chat template a model is served with, and where its turns end.

The GGUF's own template (`tokenizer.chat_template`) is used whenever the file carries one, unless
`--chat-template NAME|FILE` overrides it. A file without one gets a known family's template only
where that is unambiguous: exactly one family's turn markers are special tokens of its vocabulary,
and its metadata names a fine-tune (a base model was not trained on any chat format, so no template
makes it end its turns). Otherwise the model is refused at start with one line that says how to
choose. Never a silent guess: a wrong template makes every answer run to max_tokens with the
template's markers in its text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"

# The built-in templates (templates/NAME.jinja) and the special tokens that mark each family's
# vocabulary: a model whose vocabulary has all of one family's markers was tuned on that format.
FAMILIES: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "mistral": ("[INST]", "[/INST]"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
    # DeepSeek writes its markers with fullwidth bars (U+FF5C).
    "deepseek-r1": ("<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"),
}

# What stands in for the assistant's text when finding the end-of-turn marker that follows it.
SENTINEL = "\u2063ALVEARE\u2063"


class TemplateError(Exception):
    """No template can be chosen (or the one asked for cannot be read): one line, for serve to print."""


@dataclass(frozen=True)
class ChatTemplate:
    name: str  # "gguf", a built-in family's name, or the file's path
    text: str
    # Why this one, for the log and the status: "the model file's own", "asked for", "chosen for ...".
    source: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source})"


def builtin(name: str) -> str:
    return (TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def choose(
    *,
    embedded: str | None,
    asked: str,
    is_special: Callable[[str], bool],
    architecture: str,
    finetune: str | None,
    model: str,
) -> ChatTemplate:
    """The template to serve with: `asked` ("auto", a family's name or a file) over the file's own
    (`embedded`), else a family found by its special tokens (`is_special`) for a fine-tuned model."""
    if asked and asked != "auto":
        return _asked(asked)
    if embedded:
        return ChatTemplate("gguf", embedded, "the model file's own")
    found = [name for name, markers in FAMILIES.items() if all(is_special(m) for m in markers)]
    how = f"pass --chat-template NAME|FILE (NAME: {', '.join(FAMILIES)}; FILE: a Jinja chat template)"
    if len(found) == 1 and finetune:
        return ChatTemplate(found[0], builtin(found[0]), f"chosen for {architecture}: its vocabulary has the markers")
    if len(found) == 1:
        raise TemplateError(
            f"{model} has no chat template and its metadata names no fine-tune: it looks like a base model, "
            f"which ends no chat turn in any format. Serve an instruction-tuned GGUF, or {how} "
            f"(its vocabulary has {found[0]}'s markers)."
        )
    if found:
        raise TemplateError(
            f"{model} has no chat template and its vocabulary fits several ({', '.join(found)}): {how}."
        )
    raise TemplateError(f"{model} has no chat template and none is known for its architecture ({architecture}): {how}.")


def _asked(asked: str) -> ChatTemplate:
    if asked in FAMILIES:
        return ChatTemplate(asked, builtin(asked), "asked for")
    path = Path(asked).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TemplateError(
            f"--chat-template {asked}: not a known template ({', '.join(FAMILIES)}) and not a readable file ({reason})."
        ) from None
    if not text.strip():
        raise TemplateError(f"--chat-template {asked}: the file is empty.")
    return ChatTemplate(str(path), text, "asked for")


def end_of_turn(rendered: str) -> str:
    """The marker the template writes right after an assistant's text (`<|im_end|>`, `<end_of_turn>`,
    `</s>`...), from a rendering whose assistant text is SENTINEL; "" when it writes none."""
    at = rendered.rfind(SENTINEL)
    if at < 0:
        return ""
    tail = rendered[at + len(SENTINEL) :].split()
    return tail[0] if tail else ""


def turn_opener(rendered: str, answer: str, end_marker: str) -> str:
    """The marker that opens a user turn (`<|im_start|>`, `<start_of_turn>`, `[INST]`...), from a
    rendering of [user, assistant `answer`, user SENTINEL]: what stands between the answer's end of
    turn and SENTINEL, cut before the role's name where what precedes it is a whole marker
    ("<|im_start|>", but all of "<|user|>"). A model that writes it has begun the next turn itself."""
    end = rendered.rfind(SENTINEL)
    start = rendered.rfind(answer, 0, end) if end >= 0 else -1
    if start < 0:
        return ""
    header = rendered[start + len(answer) : end].strip()
    if end_marker and header.startswith(end_marker):
        header = header[len(end_marker) :].strip()
    at = header.lower().find("user")
    return header[:at] if at > 0 and header[at - 1] in ">]" else header
