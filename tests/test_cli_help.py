"""Every command's --help, rendered: every option shows its default (or says it is required), no markup artefacts
(Rich markup once ate "[glaive-2024]" out of "Protocol profile [glaive-2024]."), no type-name metavars, and each
option's help text shown whole. In-process (click's runner): the whole tree renders in about a second."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from scorecheck.cli import app

ARTEFACTS = ("<bool>", "<list[", "[/", "[bold", "[red", "\x1b[", "()", "[]")
EATEN = re.compile(r"[\w)] [.,;:](?!\.)")
"""What eaten markup leaves: "Protocol profile ." from "Protocol profile [glaive-2024]."."""


def _walk(cmd, path: tuple[str, ...]):  # typer's commands, built on its own copy of click
    yield path, cmd
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(app), ()))


def _squash(text: str) -> str:
    return "".join(text.split())  # wrapping may break lines anywhere, even after a hyphen


def test_the_tree_has_every_command_it_advertises():
    assert {("run",), ("grade",), ("regrade",), ("compare",), ("data", "verify"), ("data", "fetch"),
            ("data", "locate"), ("serve", "vllm"), ("serve", "embedded"), ("study", "run"), ("remote", "up"),
            ("remote", "down"), ("cloud",)} <= set(COMMANDS)  # fmt: skip
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "scorecheck")
def test_help_shows_every_default_and_no_artefact(path):
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    text = r.output
    for bad in ARTEFACTS:
        assert bad not in text, (bad, text)
    assert not EATEN.search(text), (EATEN.search(text), text)
    cmd = COMMANDS[path]
    prefix = "_".join(["SCORECHECK", *path]).upper().replace("-", "_")
    ctx = cmd.context_class(cmd, info_name=path[-1] if path else "scorecheck", show_default=True,
                            auto_envvar_prefix=prefix)  # fmt: skip
    checked = 0
    for p in cmd.params:
        if p.hidden or p.name == "help":
            continue
        assert p.help, f"{p.name} has no help"
        assert _squash(p.help) in _squash(text), (p.name, p.help)
        if p.param_type_name == "option" and any(o.startswith("--") for o in p.opts):  # SCORECHECK_<COMMAND>_<FLAG>
            longs = [o for o in p.opts if o.startswith("--")]
            want = f"{prefix}_{longs[0][2:]}".upper().replace("-", "_")
            assert not p.show_envvar or f"env var: {want}" in p.get_help_record(ctx)[1] or p.name == "ssh_config", (
                path, p.name, p.get_help_record(ctx)[1])  # fmt: skip
        if p.param_type_name == "option" and not p.is_flag:
            _, record = p.get_help_record(ctx)
            assert "default:" in record or "required" in record, (path, p.name, record)
            checked += 1
    assert checked or not [p for p in cmd.params if p.param_type_name == "option" and not p.is_flag and not p.hidden]


def test_run_help_names_the_precedence_and_the_protocol_defaults():
    text = " ".join(CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "100"}).output.split())
    assert "SCORECHECK_RUN_OUT; default: runs/latest]" in text
    assert "default: (glaive-2024's: 6000)" in text and "default: glaive-2024]" in text
    assert "flag beats the environment, which beats run's --config file, which beats the protocol's default" in text
