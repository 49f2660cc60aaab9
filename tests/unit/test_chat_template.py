"""Choosing the chat template: the file's own, one asked for, a known family's for a fine-tuned model
whose vocabulary leaves no doubt, or a one-line refusal; and the built-in templates render."""

from __future__ import annotations

from pathlib import Path

import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from appliance.engine.chat_template import (
    FAMILIES,
    SENTINEL,
    TemplateError,
    builtin,
    choose,
    end_of_turn,
    turn_opener,
)


def vocab(*tokens: str):
    return lambda text: text in tokens


def pick(**kwargs):
    args = dict(embedded=None, asked="auto", is_special=vocab(), architecture="llama", finetune="it", model="m.gguf")
    return choose(**{**args, **kwargs})


def test_the_files_own_template_unless_one_is_asked_for(tmp_path: Path) -> None:
    assert pick(embedded="{{ x }}").name == "gguf" and pick(embedded="{{ x }}").text == "{{ x }}"
    asked = pick(embedded="{{ x }}", asked="gemma")
    assert (asked.name, asked.source) == ("gemma", "asked for") and "<start_of_turn>" in asked.text
    own = tmp_path / "mine.jinja"
    own.write_text("{{ messages }}")
    assert pick(asked=str(own)).text == "{{ messages }}" and pick(asked=str(own)).name == str(own)


@pytest.mark.parametrize("asked", ["/no/such/template.jinja", "chatml2"])
def test_an_unreadable_template_is_one_line_naming_the_flag(asked: str) -> None:
    with pytest.raises(TemplateError) as err:
        pick(asked=asked)
    assert str(err.value).startswith(f"--chat-template {asked}: ") and "\n" not in str(err.value)


def test_a_fine_tuned_model_without_a_template_gets_the_one_family_its_vocabulary_has() -> None:
    gemma = pick(is_special=vocab("<start_of_turn>", "<end_of_turn>"), architecture="gemma3")
    assert gemma.name == "gemma" and gemma.source.startswith("chosen for gemma3")
    llama = pick(is_special=vocab("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    assert llama.name == "llama3"


@pytest.mark.parametrize(
    ("tokens", "finetune", "says"),
    [
        (("<start_of_turn>", "<end_of_turn>"), None, "base model"),
        ((), "it", "none is known for its architecture (llama)"),
        (("<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>"), "it", "fits several (chatml, gemma)"),
    ],
)
def test_otherwise_the_model_is_refused_with_one_line_saying_how_to_choose(
    tokens: tuple[str, ...], finetune: str | None, says: str
) -> None:
    with pytest.raises(TemplateError) as err:
        pick(is_special=vocab(*tokens), finetune=finetune)
    message = str(err.value)
    assert says in message and "--chat-template NAME|FILE" in message and "\n" not in message


def hf_render(template: str, messages: list[dict], **extra) -> str:
    """A template rendered as Hugging Face's apply_chat_template does."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    return env.from_string(template).render(
        messages=messages, bos_token="<s>", eos_token="</s>", raise_exception=raise_exception, **extra
    )


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Weather?"},
]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_built_in_renders_a_conversation_and_has_an_end_of_turn(name: str) -> None:
    text = builtin(name)
    prompt = hf_render(text, CONVERSATION, add_generation_prompt=True)
    assert "Be brief." in prompt and "Weather?" in prompt and prompt.index("Hi") < prompt.index("Weather?")
    done = hf_render(text, [*CONVERSATION[:2], {"role": "assistant", "content": SENTINEL}], add_generation_prompt=False)
    marker = end_of_turn(done)
    expected = {
        "chatml": "<|im_end|>",
        "gemma": "<end_of_turn>",
        "llama3": "<|eot_id|>",
        "mistral": "</s>",
        "phi3": "<|end|>",
        "deepseek-r1": "<\uff5cend\u2581of\u2581sentence\uff5c>",
    }
    assert marker == expected[name], done
    three = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": SENTINEL},
    ]
    opener = turn_opener(hf_render(text, three, add_generation_prompt=False), "Fine.", marker)
    openers = {
        "chatml": "<|im_start|>",
        "gemma": "<start_of_turn>",
        "llama3": "<|start_header_id|>",
        "mistral": "[INST]",
        "phi3": "<|user|>",
        "deepseek-r1": "<\uff5cUser\uff5c>",
    }
    assert opener == openers[name]


def test_gemma_folds_the_system_turn_into_the_first_user_turn() -> None:
    prompt = hf_render(builtin("gemma"), CONVERSATION, add_generation_prompt=True)
    assert prompt == (
        "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWeather?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_end_of_turn_is_empty_without_a_marker() -> None:
    assert end_of_turn(f"user: x\nassistant: {SENTINEL}") == ""
    assert end_of_turn("no sentinel") == ""
