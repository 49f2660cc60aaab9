"""docs/cli.md carries the reference made from the parser, so every command, action and flag is
documented and none that is gone stays there."""

from __future__ import annotations

from pathlib import Path

from appliance.cli.reference import BEGIN, END, reference_lines

CLI_PAGE = Path(__file__).parents[2] / "docs" / "cli.md"


def test_the_cli_page_has_the_generated_reference() -> None:
    text = CLI_PAGE.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "docs/cli.md lost its generated reference's markers"
    page = text[text.index(BEGIN) : text.index(END) + len(END)].splitlines()
    assert page == reference_lines(), "docs/cli.md is out of date; `python -m appliance.cli.reference` prints it"


def test_the_reference_names_every_action() -> None:
    from appliance.cli import build_parser

    parser = build_parser()
    reference = "\n".join(reference_lines())
    for name in ("admin accounts create", "admin keys revoke", "admin backup", "model optimize", "auth login", "serve"):
        assert f"`alveare {name}`" in reference, name
    # every flag serve has is in the reference
    serve = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and "serve" in a.choices)
    for action in serve.choices["serve"]._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in reference, flag
