"""The chat template of a loaded model: which one (chat_template.py's rules, over the model's metadata
and vocabulary), rendered as Hugging Face renders it, and the stop strings its turn markers need."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.engine.chat_template import (
    SENTINEL,
    ChatTemplate,
    TemplateError,
    builtin,
    choose,
    end_of_turn,
    turn_opener,
)

if TYPE_CHECKING:
    from appliance.engine.native.llama import Model


def chat_template(model: Model, asked: str, path: str) -> ChatTemplate:
    """The template this model is served with (chat_template.py says how it is chosen)."""

    def is_special(text: str) -> bool:
        tokens = model.tokenize(text, add_special=False, parse_special=True)
        return len(tokens) == 1 and model.piece(tokens[0], special=True).decode("utf-8", "replace") == text

    return choose(
        embedded=model.meta("tokenizer.chat_template"),
        asked=asked,
        is_special=is_special,
        architecture=model.meta("general.architecture") or "unknown",
        finetune=model.meta("general.finetune"),
        model=Path(path).name,
    )


def measuring_template(model: Model, path: str) -> ChatTemplate:
    """The template a measurement renders its chat prompts with: the served one where the model has
    one, else ChatML, so that two files of a base model are still compared on the same prompts."""
    try:
        return chat_template(model, "auto", path)
    except TemplateError:
        return ChatTemplate("chatml", builtin("chatml"), "for measuring only")


def check_chat_template(path: str, asked: str) -> str:
    """The template `path` would be served with (its label), from its metadata and vocabulary alone,
    so that serve refuses a model it cannot chat with before it listens; TemplateError says why."""
    from appliance.engine.native.llama import Model, quiet_native_logs

    quiet_native_logs(False)
    try:
        model = Model(path, gpu=False, vocab_only=True)
    except RuntimeError:  # the full load will say what is wrong with the file
        return ""
    try:
        template = chat_template(model, asked, path)
        chat_formatters(model, template)
        return template.label
    finally:
        model.close()


def chat_formatters(model: Model, template: ChatTemplate) -> dict[bool, Any]:
    """The template as Hugging Face renders it (bos_token, eos_token, raise_exception, tools, tojson,
    strftime_now), with and without the generation prompt."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    bos = model.piece(model.bos, special=True).decode("utf-8", "replace") if model.bos >= 0 else ""
    eos = model.piece(model.eos, special=True).decode("utf-8", "replace") if model.eos >= 0 else ""
    try:
        return {
            flag: Jinja2ChatFormatter(template=template.text, eos_token=eos, bos_token=bos, add_generation_prompt=flag)
            for flag in (True, False)
        }
    except Exception as exc:  # jinja2's TemplateSyntaxError and kin
        raise TemplateError(f"the chat template {template.name} does not parse: {exc}") from None


def turn_stops(model: Model, formatter: Any) -> list[str]:
    """Stop strings for the template's turn markers where they are text the model may write rather
    than special tokens: the end of turn (unless it is an end-of-generation token, which ends every
    answer anyway) and the opening of the next user turn (a base model served with ChatML writes
    "<|im_start|>" as text, with no "<|im_end|>" before it)."""

    def render(messages: list[dict]) -> str:
        try:
            return formatter(messages=messages).prompt
        except Exception:  # a template that refuses this conversation: no marker to learn from it
            return ""

    answer = "Fine."
    end = end_of_turn(render([{"role": "user", "content": "x"}, {"role": "assistant", "content": SENTINEL}]))
    opener = turn_opener(
        render(
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": SENTINEL},
            ]
        ),
        answer,
        end,
    )
    stops = []
    for marker in filter(None, (end, opener)):
        tokens = model.tokenize(marker, add_special=False, parse_special=True)
        # One end-of-generation token ends the answer anyway; a control token is never written as text.
        if len(tokens) == 1 and (model.is_eog(tokens[0]) or not model.piece(tokens[0])):
            continue
        stops.append(marker)
    return stops


def without_bos(prompt: str, template: Any, model: Model | None) -> str:
    """tokenize() adds BOS itself where the model wants one; don't double it."""
    bos = template.bos_token
    if bos and model is not None and model.add_bos and prompt.startswith(bos):
        return prompt[len(bos) :]
    return prompt
