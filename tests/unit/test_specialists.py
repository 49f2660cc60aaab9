from __future__ import annotations

import pytest

from appliance.core.errors import ConfigError, ModelNotFound
from appliance.core.specialists import load_specialists


def test_builtin_specialists() -> None:
    specs = load_specialists()
    assert [s.name for s in specs] == ["classify", "summarise", "extract", "qa", "chat", "code"]
    for s in specs:
        assert s.system_prompt.strip() and 0 <= s.temperature <= 2 and 0 < s.top_p <= 1 and s.max_tokens > 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("summarise", "summarise"),
        ("alveare-summarise", "summarise"),
        ("gpt-3.5-turbo", "chat"),
        ("gpt-4o", "chat"),
        # pinned snapshots resolve by their base name
        ("gpt-4o-2024-08-06", "chat"),
        ("gpt-4o-mini-2024-07-18", "chat"),
        ("gpt-3.5-turbo-0125", "chat"),
        ("gpt-4-1106-preview", "chat"),
        ("gpt-4.1-2025-04-14", "chat"),
        ("o3-mini-2025-01-31", "chat"),
        ("gpt-5-2025-08-07", "chat"),
    ],
)
def test_resolve(name: str, expected: str) -> None:
    assert load_specialists().resolve(name).name == expected


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound) as info:
        load_specialists().resolve("llama-70b")
    assert info.value.status == 404 and info.value.code == "model_not_found"


def write(tmp_path, text: str):
    path = tmp_path / "specialists.toml"
    path.write_text(text)
    return path


def test_toml_syntax_error_names_file_and_line(tmp_path) -> None:
    path = write(tmp_path, '[specialists.chat]\nsystem_prompt = "hi"\ntemperature = = 1\n')
    with pytest.raises(ConfigError) as info:
        load_specialists(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_bad_value_names_line_and_problem(tmp_path) -> None:
    path = write(tmp_path, '[specialists.chat]\nsystem_prompt = "hi"\n\ntemperature = 7\n')
    with pytest.raises(ConfigError) as info:
        load_specialists(path)
    message = str(info.value)
    assert "line 4" in message and "temperature" in message and "<= 2" in message


def test_unknown_key_and_bad_alias(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"line 3.*colour"):
        load_specialists(write(tmp_path, '[specialists.chat]\nsystem_prompt = "hi"\ncolour = "red"\n'))
    with pytest.raises(ConfigError, match=r"line 4.*poet"):
        load_specialists(write(tmp_path, '[specialists.chat]\nsystem_prompt = "hi"\n[aliases]\n"gpt-4" = "poet"\n'))


def test_missing_prompt(tmp_path) -> None:
    with pytest.raises(ConfigError, match="system_prompt"):
        load_specialists(write(tmp_path, "[specialists.chat]\ntemperature = 1\n"))


def test_dates_only_strip_from_known_names() -> None:
    specs = load_specialists()
    for unknown in ("llama-2024-08-06", "gpt-4o-2024-13", "gpt-4o-latest-0125x"):
        with pytest.raises(ModelNotFound):
            specs.resolve(unknown)


def test_an_alias_can_point_at_any_specialist(tmp_path) -> None:
    path = write(
        tmp_path,
        '[specialists.classify]\nsystem_prompt = "Label it."\nlabels = ["a", "b"]\n'
        '[specialists.chat]\nsystem_prompt = "hi"\n[aliases]\n"gpt-4o" = "classify"\n"my-tagger" = "classify"\n',
    )
    specs = load_specialists(path)
    assert specs.resolve("gpt-4o-2024-08-06").name == "classify"
    assert specs.resolve("my-tagger").labels == ["a", "b"]


def test_builtin_shapes() -> None:
    specs = load_specialists()
    assert "billing" in specs.resolve("classify").labels
    assert specs.resolve("extract").output == "json"


def test_answer_shapes_are_validated(tmp_path) -> None:
    with pytest.raises(ConfigError, match="at most one of"):
        load_specialists(write(tmp_path, '[specialists.x]\nsystem_prompt = "hi"\nlabels = ["a"]\noutput = "json"\n'))
    with pytest.raises(ConfigError, match="labels must be distinct"):
        load_specialists(write(tmp_path, '[specialists.x]\nsystem_prompt = "hi"\nlabels = ["a", "a"]\n'))
    with pytest.raises(ConfigError, match="output"):
        load_specialists(write(tmp_path, '[specialists.x]\nsystem_prompt = "hi"\noutput = "xml"\n'))
    spec = load_specialists(
        write(tmp_path, '[specialists.x]\nsystem_prompt = "hi"\njson_schema = { type = "object" }\n')
    ).resolve("x")
    assert spec.json_schema == {"type": "object"}


def test_an_adapter_is_a_file_beside_the_specialists_file(tmp_path) -> None:
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "tickets.gguf").write_bytes(b"GGUF")
    f = tmp_path / "s.toml"
    f.write_text(
        '[specialists.tickets]\nsystem_prompt = "Label it."\nadapter = "adapters/tickets.gguf"\nadapter_scale = 0.5\n'
    )
    spec = load_specialists(f).by_name["tickets"]
    assert (spec.adapter, spec.adapter_scale) == (str(tmp_path / "adapters" / "tickets.gguf"), 0.5)
    f.write_text('[specialists.tickets]\nsystem_prompt = "Label it."\nadapter = "nowhere.gguf"\n')
    with pytest.raises(ConfigError, match=r"line 3: \[specialists.tickets\] adapter file not found: .*nowhere.gguf"):
        load_specialists(f)
    f.write_text(
        '[specialists.tickets]\nsystem_prompt = "Label it."\nadapter = "adapters/tickets.gguf"\nadapter_scale = 0\n'
    )
    with pytest.raises(ConfigError, match="line 4"):
        load_specialists(f)
