"""Chat templates of other model families on the real embedded model: copies of its GGUF with each
family's template (tests/templates/) render a conversation with a system turn, tools, tool calls and
tool results exactly as Hugging Face's apply_chat_template does, learn the template's end of turn,
and answer; a copy with no template is served by a known family's or refused in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jinja2
import jinja2.ext
import pytest
from engine_loop import on_loop, start_engine, stop_engine
from gguf_copy import copy_gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment

from appliance.core import protocol as p
from appliance.engine.chat_render import check_chat_template
from appliance.engine.chat_template import TemplateError
from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, GenerationRequest, SamplingParams
from appliance.serving import tools
from appliance.serving.tool_formats import HERMES

pytestmark = pytest.mark.slow

TEMPLATES = Path(__file__).parent.parent / "templates"
# family -> (template file, renders tools itself, the turn markers it must stop on as text: none
# where the embedded vocabulary has them as tokens, as ChatML's and Mistral's eos_token are here)
FAMILIES = {
    "llama3.1": ("llama3.1.jinja", True, ["<|eot_id|>", "<|start_header_id|>"]),
    "mistral-v0.3": ("mistral-v0.3.jinja", True, ["[INST]"]),
    "qwen2.5": ("qwen2.5.jinja", True, []),
    "gemma3": ("gemma3.jinja", False, ["<end_of_turn>", "<start_of_turn>"]),
    "deepseek-r1-distill": (
        "deepseek-r1-distill.jinja",
        False,
        ["<\uff5cend\u2581of\u2581sentence\uff5c>", "<\uff5cUser\uff5c>"],
    ),
    "phi3": ("phi3.jinja", False, ["<|end|>", "<|user|>"]),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "abcDEF123", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
# What a client sends: a system turn, a question, a call, its result.
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "18 C, sunny"},
]


def hf_render(template: str, messages: list[dict], *, bos: str, eos: str, tools_: list[dict] | None) -> str:
    """The reference: the template rendered as Hugging Face's apply_chat_template does (a sandboxed
    environment with trim_blocks, lstrip_blocks, loop controls, tojson without ASCII escapes and
    raise_exception), with tool-call arguments as mappings."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    return env.from_string(template).render(
        messages=messages,
        tools=tools_,
        bos_token=bos,
        eos_token=eos,
        add_generation_prompt=True,
        raise_exception=raise_exception,
    )


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, HiveEngine]]:
    name = request.param
    text = (TEMPLATES / FAMILIES[name][0]).read_text()
    path = copy_gguf(embedded_model_path(), tmp_path_factory.mktemp(name) / f"smollm2-{name}.gguf", template=text)
    eng = start_engine(EngineConfig(model_path=str(path), slots=1, n_ctx=2048, gpu=False, cpu_kernels="safe"))
    try:
        yield name, eng
    finally:
        stop_engine(eng)


def conversation(native: bool) -> list:
    """MESSAGES as the chat endpoint hands them to the template (tools.history_turn)."""
    out = []
    for i, m in enumerate(MESSAGES[1:], start=1):
        message = p.ChatMessage(**{k: v for k, v in m.items() if v is not None or k == "content"})
        out.append(tools.history_turn(message, m["content"] or "", i, native=native))
    return [("system", MESSAGES[0]["content"]), *out]


def test_the_prompt_is_the_reference_rendering(family: tuple[str, HiveEngine]) -> None:
    name, eng = family
    text = (TEMPLATES / FAMILIES[name][0]).read_text()
    native = tools.native_template(eng)
    assert native == FAMILIES[name][1], name
    model = eng._model
    assert model is not None
    bos = model.piece(model.bos, special=True).decode()
    eos = model.piece(model.eos, special=True).decode()
    ours = eng.render_chat(conversation(native), tools=[WEATHER] if native else None)
    if native:
        expected_messages = json.loads(json.dumps(MESSAGES))
        expected_messages[2]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
        expected_messages[2]["content"] = ""
    else:  # no tool format: calls and results go in the documented fallback form
        expected_messages = [
            MESSAGES[0],
            MESSAGES[1],
            {"role": "assistant", "content": HERMES.render([("get_weather", '{"city": "Paris"}')])},
            {"role": "user", "content": "<tool_response>\n18 C, sunny\n</tool_response>"},
        ]
    reference = hf_render(text, expected_messages, bos=bos, eos=eos, tools_=[WEATHER] if native else None)
    # The engine's tokenizer adds BOS itself where the model wants one (never twice).
    if model.add_bos and reference.startswith(bos):
        reference = reference[len(bos) :]
    assert ours == reference
    assert "Paris" in ours and "18 C, sunny" in ours and "You are terse." in ours


def test_the_end_of_turn_is_learnt_and_answers_stop(family: tuple[str, HiveEngine]) -> None:
    name, eng = family
    markers = FAMILIES[name][2]
    assert eng.chat_stops == markers, name
    label = eng.status().model.chat_template
    assert name in label or label == "gguf (the model file's own)"
    prompt = eng.tokenize(eng.render_chat([("user", "Say hello in three words.")]))
    request = GenerationRequest(
        prompt_tokens=prompt, max_tokens=48, sampling=SamplingParams(temperature=0), stop=eng.chat_stops
    )

    async def answer() -> tuple[str, str]:
        g = eng.submit(request)
        text = "".join([piece async for piece in g])
        assert g.finished is not None
        return text, g.finished.finish_reason

    text, reason = on_loop(eng, answer())
    # Whatever the 135M model makes of a foreign format, no template marker reaches the text.
    for m in [*markers, "<|im_end|>", "<end_of_turn>", "<|eot_id|>"]:
        assert m not in text, (name, text)
    assert reason in ("stop", "length")


def test_a_model_without_a_template_is_served_by_its_family_or_refused(tmp_path: Path) -> None:
    bare = copy_gguf(embedded_model_path(), tmp_path / "no-template.gguf", remove=("tokenizer.chat_template",))
    # SmolLM2's vocabulary has ChatML's markers and its metadata names a fine-tune: ChatML, said so.
    assert check_chat_template(str(bare), "auto") == "chatml (chosen for llama: its vocabulary has the markers)"
    base = copy_gguf(str(bare), tmp_path / "base.gguf", remove=("general.finetune",))
    with pytest.raises(TemplateError) as err:
        check_chat_template(str(base), "auto")
    assert "base model" in str(err.value) and "--chat-template" in str(err.value)
    assert check_chat_template(str(base), "chatml") == "chatml (asked for)"
