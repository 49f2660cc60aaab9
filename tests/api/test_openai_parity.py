"""OpenAI parity through the official Python SDK on the real embedded model: JSON mode and
structured outputs under a grammar, logprobs, logit_bias, n, seed, cached tokens, dated model
names, the legacy completions endpoint, and specialists whose answers have a shape.

A 135M model's answers may be wrong; their shape never is: JSON parses, schemas validate, labels
are in the set."""

from __future__ import annotations

import json

import httpx
import openai
import pydantic
import pytest
from live import LiveServer

ASK = [{"role": "user", "content": "Describe a cat."}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "pets": {"type": "array", "items": {"type": "string", "enum": ["cat", "dog", "fish"]}, "maxItems": 3},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}


def valid_person(value: dict) -> bool:
    return (
        set(value) == {"name", "age", "pets"}
        and isinstance(value["name"], str)
        and isinstance(value["age"], int)
        and all(p in ("cat", "dog", "fish") for p in value["pets"])
    )


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_mode_always_parses(client: openai.OpenAI, stream: bool) -> None:
    messages = [{"role": "user", "content": "Give me a JSON object describing a cat."}]
    kwargs = {"model": "gpt-4o-mini", "messages": messages, "response_format": {"type": "json_object"}}
    if stream:
        text = ""
        for chunk in client.chat.completions.create(**kwargs, max_tokens=300, stream=True, temperature=0):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or None
    else:
        r = client.chat.completions.create(**kwargs, max_tokens=300, temperature=0)
        text, finish = r.choices[0].message.content, r.choices[0].finish_reason
    assert text.lstrip().startswith("{")
    if finish == "stop":  # cut by max_tokens, it is a prefix of JSON, as with OpenAI
        assert isinstance(json.loads(text), dict)


def test_json_schema_strict_validates_for_several_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-2024-08-06",
        messages=[{"role": "user", "content": "Invent a person who has pets."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
        n=3,
        temperature=0.9,
        seed=11,
        max_tokens=120,
    )
    assert len(r.choices) == 3 and [c.index for c in r.choices] == [0, 1, 2]
    for choice in r.choices:
        if choice.finish_reason == "stop":
            assert valid_person(json.loads(choice.message.content)), choice.message.content
    assert any(c.finish_reason == "stop" for c in r.choices)


class Pet(pydantic.BaseModel):
    # Bounded strings (maxLength in the schema, so in the grammar): an unbounded one sampled at the
    # default temperature ran past max_tokens now and then (LengthFinishReasonError).
    name: str = pydantic.Field(max_length=24)
    species: str = pydantic.Field(max_length=24)
    legs: int


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    r = client.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Invent a pet."}],
        response_format=Pet,
        max_tokens=120,
        temperature=0,
    )
    pet = r.choices[0].message.parsed
    assert isinstance(pet, Pet) and isinstance(pet.legs, int)


def test_schema_errors_are_400s_naming_the_problem(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="chat", messages=ASK, response_format={"type": "json_schema", "json_schema": {"schema": PERSON}}
        )
    assert info.value.body["param"] == "response_format.json_schema.name"
    bad = {"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="chat",
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad}},
        )
    assert info.value.body["param"] == "response_format.json_schema.schema" and "'not'" in info.value.body["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_in_openai_shape(client: openai.OpenAI, stream: bool) -> None:
    kwargs = {"model": "chat", "messages": ASK, "max_tokens": 6, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    if stream:
        content = []
        for chunk in client.chat.completions.create(**kwargs, stream=True):
            if chunk.choices and chunk.choices[0].logprobs:
                content += chunk.choices[0].logprobs.content
    else:
        content = client.chat.completions.create(**kwargs).choices[0].logprobs.content
    assert 1 <= len(content) <= 6
    for item in content:
        assert item.logprob <= 0 and bytes(item.bytes).decode("utf-8", "replace") == item.token
        assert len(item.top_logprobs) == 3 and item.top_logprobs[0].token == item.token  # greedy: the top one


def test_logprobs_are_absent_unless_asked(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="chat", messages=ASK, max_tokens=4)
    assert r.choices[0].logprobs is None


def test_logit_bias_bans_a_token(client: openai.OpenAI) -> None:
    kwargs = {"model": "chat", "messages": ASK, "max_tokens": 8, "temperature": 0, "logprobs": True}
    first = client.chat.completions.create(**kwargs).choices[0].logprobs.content[0]
    token_id = _token_id(client, first.token)
    again = client.chat.completions.create(**kwargs, logit_bias={str(token_id): -100})
    assert first.token not in [t.token for t in again.choices[0].logprobs.content[:1]]


def test_ignore_eos_runs_to_max_tokens(client: openai.OpenAI) -> None:
    # A one-word answer ends on the end-of-turn token after a few tokens; with ignore_eos (as vLLM
    # and llama-server have it) the same request runs to max_tokens, plain and on the legacy endpoint.
    ask = [{"role": "user", "content": "Answer with one word: what colour is the sky?"}]
    short = client.chat.completions.create(model="chat", messages=ask, max_tokens=40, temperature=0)
    assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 40
    full = client.chat.completions.create(
        model="chat", messages=ask, max_tokens=40, temperature=0, extra_body={"ignore_eos": True}
    )
    assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 40
    legacy = client.completions.create(
        model="chat", prompt="The end.", max_tokens=24, temperature=0, extra_body={"ignore_eos": True}
    )
    assert legacy.choices[0].finish_reason == "length" and legacy.usage.completion_tokens == 24


def test_ignore_eos_with_a_shape_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="chat",
            messages=ASK,
            max_tokens=8,
            response_format={"type": "json_object"},
            extra_body={"ignore_eos": True},
        )
    assert err.value.body["param"] == "ignore_eos"


def _token_id(client: openai.OpenAI, token: str) -> int:
    """The token's id, found by banning candidates: the legacy endpoint echoes nothing of ids, so ask
    the model for the token alone with a bias that forces it."""
    from appliance.engine.engine import embedded_model_path
    from appliance.engine.native.llama import Model  # the server's own tokenizer, loaded once for the test

    model = Model(embedded_model_path(), gpu=False)
    try:
        ids = model.tokenize(token, add_special=False, parse_special=False)
        return ids[0]
    finally:
        model.close()


def test_n_choices_streamed_carry_their_index(client: openai.OpenAI) -> None:
    texts = {0: "", 1: "", 2: ""}
    finished = set()
    for chunk in client.chat.completions.create(
        model="chat", messages=ASK, n=3, max_tokens=10, temperature=1.0, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1, 2} and all(texts.values())


def test_seed_repeats_the_text(client: openai.OpenAI) -> None:
    kwargs = {"model": "chat", "messages": ASK, "max_tokens": 16, "temperature": 1.0, "seed": 1234}
    client.chat.completions.create(**kwargs)  # warm the prefix cache: the same cache state each time after
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


def test_stop_penalties_max_completion_tokens_user_and_unknown_fields(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Count from one to ten in words, separated by commas."}],
        max_completion_tokens=30,
        stop=["five"],
        presence_penalty=0.5,
        frequency_penalty=0.5,
        temperature=0,
        user="user-123",
        extra_body={"some_future_field": {"x": 1}},
    )
    assert "five" not in r.choices[0].message.content and r.usage.completion_tokens <= 30


def test_cached_tokens_are_reported(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You answer briefly. " * 10}, {"role": "user", "content": "Hi!"}]
    client.chat.completions.create(model="chat", messages=messages, max_tokens=4)
    r = client.chat.completions.create(model="chat", messages=messages, max_tokens=4)
    assert r.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens // 2


@pytest.mark.parametrize("name", ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-3.5-turbo-0125"])
def test_dated_model_names(client: openai.OpenAI, name: str) -> None:
    r = client.chat.completions.create(model=name, messages=ASK, max_tokens=4)
    assert r.model == name and r.choices[0].message.content is not None


def test_legacy_completions_prompt_list_logprobs_and_echo(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["The sky is", "Grass is"], n=2, max_tokens=4, logprobs=2, temperature=0
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for c in r.choices:
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) >= 1
        assert "".join(lp.tokens) == c.text and lp.text_offset[0] == 0
        assert all(len(top) <= 2 for top in lp.top_logprobs)
    echoed = client.completions.create(model="chat", prompt=["The sky is", "Grass is"], max_tokens=3, echo=True)
    assert echoed.choices[0].text.startswith("The sky is") and echoed.choices[1].text.startswith("Grass is")
    streamed = {}
    for chunk in client.completions.create(
        model="chat", prompt=["The sky is", "Grass is"], max_tokens=3, echo=True, stream=True, logprobs=None
    ):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed[0].startswith("The sky is") and streamed[1].startswith("Grass is")


def test_legacy_refusals(client: openai.OpenAI) -> None:
    for extra, param in (({"suffix": "end"}, "suffix"), ({"best_of": 3}, "best_of")):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="chat", prompt="x", **extra)
        assert info.value.body["param"] == param


def test_classify_answers_with_exactly_one_label(client: openai.OpenAI) -> None:
    """The migration guide's example, on the classify specialist: the label is enforced by grammar."""
    r = client.chat.completions.create(
        model="classify",
        messages=[
            {"role": "system", "content": "Classify support tickets into categories."},
            {"role": "user", "content": "My payment failed and I was charged twice."},
        ],
        temperature=0.1,
        max_tokens=50,
    )
    assert r.choices[0].message.content == "billing"


def test_request_labels_narrow_the_answer(client: openai.OpenAI, server: LiveServer, api_key: str) -> None:
    labels = ["urgent", "routine"]
    for _ in range(2):
        r = client.chat.completions.create(
            model="classify",
            messages=[{"role": "user", "content": "The server room is on fire!"}],
            temperature=1.0,
            extra_body={"labels": labels},
        )
        assert r.choices[0].message.content in labels
    native = httpx.post(
        server.base_url + "/infer",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"specialist": "classify", "prompt": "I love it", "labels": ["happy", "sad"]},
        timeout=60,
    ).json()
    assert native["result"] in ("happy", "sad")


def test_extract_returns_one_json_object(client: openai.OpenAI, server: LiveServer, api_key: str) -> None:
    text = "On 3 May 2026 Dana Lee of Orbit Labs paid 1,200 dollars for two licences."
    r = client.chat.completions.create(model="extract", messages=[{"role": "user", "content": text}], max_tokens=200)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    schema = {
        "type": "object",
        "properties": {"payer": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["payer", "amount"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="extract",
        messages=[{"role": "user", "content": text}],
        response_format={"type": "json_schema", "json_schema": {"name": "payment", "schema": schema}},
        max_tokens=100,
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"payer", "amount"} and isinstance(value["amount"], int | float)
    native = httpx.post(
        server.base_url + "/infer",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"specialist": "extract", "prompt": text},
        timeout=60,
    ).json()
    if native["finish_reason"] == "stop":
        assert isinstance(json.loads(native["result"]), dict)
