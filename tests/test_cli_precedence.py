"""One precedence for run's options, credentials included: flag > environment (SCORECHECK_RUN_<OPTION>) > config
file > protocol default. The matrix: four invocations of the real CLI (``run --print-config``, nothing sent), each
adding one layer that sets every option of the table to its own value; the top layer must win every option. Then the
bug that started it: credentials given as flags beside a config file's endpoint were dropped (the wrong key went to
the endpoint), checked against a live stub."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

# option: (flag, TOML line with {}, values for config / environment / flag, the default, where config.json has it)
TABLE = {
    "out": ("--out", 'out = "{}"', ("c-out", "e-out", "f-out"), "runs/latest", lambda d: d["out"]),
    "concurrency": ("--concurrency", "concurrency = {}", (3, 4, 5), 128, lambda d: d["concurrency"]),
    "timeout": ("--timeout", "timeout = {}", (11.0, 12.0, 13.0), 600.0, lambda d: d["timeout"]),
    "max_tokens": ("--max-tokens", "max_tokens = {}", (11, 12, 13), 6000, lambda d: d["sampling"]["max_tokens"]),
    "temperature": ("--temperature", "temperature = {}", (0.1, 0.2, 0.3), 0.0, lambda d: d["sampling"]["temperature"]),
    "evals": (
        "--evals",
        'evals = "{}"',
        ("mmlu", "gsm8k", "math"),
        ["mmlu", "gpqa_main", "gsm8k"],
        lambda d: d["evals"],
    ),  # fmt: skip
    "limit": ("--limit", "limit = {}", (2, 3, 4), None, lambda d: d["limit"]),
    # epochs and reasoning default to each eval's protocol default (recorded as None, resolved per eval)
    "epochs": ("--epochs", "epochs = {}", (2, 3, 4), None, lambda d: d["samples"]),
    "system_prompt": (
        "--system-prompt",
        'system_prompt = "{}"',
        ("reflection", "default", "text:mine"),
        "none",
        lambda d: d["system_prompt"]["name"],
    ),  # fmt: skip
    "reasoning": (
        "--reasoning",
        'reasoning = "{}"',
        ("think", "reflection", "reasoning-field"),
        None,
        lambda d: d["reasoning"],
    ),  # fmt: skip
    "grader": ("--grader", 'grader = "{}"', ("judge", "both", "symbolic"), "symbolic", lambda d: d["grader"]),
    "judge_api_key_env": (
        "--judge-api-key-env",
        'judge_api_key_env = "{}"',
        ("C_JUDGE", "E_JUDGE", "F_JUDGE"),
        "OPENAI_API_KEY",
        lambda d: d["judge_api_key_env"],
    ),  # fmt: skip
}
# The endpoint and its credentials: in the TOML file an [[endpoint]] table.
ENDPOINT = {
    "base_url": (
        "--base-url",
        ("http://c.invalid/v1", "http://e.invalid/v1", "http://f.invalid/v1"),
        lambda d: d["endpoints"][0]["base_url"],
    ),  # fmt: skip
    "api_key_env": ("--api-key-env", ("C_KEY", "E_KEY", "F_KEY"), lambda d: d["endpoints"][0]["api_key_env"]),
    "header_env": (
        "--header-env",
        ("X-Token=C_TOK", "X-Token=E_TOK", "X-Token=F_TOK"),
        lambda d: "X-Token=" + d["endpoints"][0]["header_env"]["X-Token"],
    ),  # fmt: skip
}
LAYERS = ("default", "config", "environment", "flag")


def _invoke(tmp_path, top: str):
    layer = LAYERS.index(top)
    args, env = ["run", "--print-config"], {}
    if layer >= 1:
        lines = [fmt.format(vals[0]) for _, fmt, vals, _, _ in TABLE.values()]
        name, var = ENDPOINT["header_env"][1][0].split("=")
        lines += ["[[endpoint]]", f'base_url = "{ENDPOINT["base_url"][1][0]}"',
                  f'api_key_env = "{ENDPOINT["api_key_env"][1][0]}"', f'header_env = {{ {name} = "{var}" }}']  # fmt: skip
        cfg = tmp_path / f"{top}.toml"
        cfg.write_text("\n".join(lines) + "\n")
        args += ["--config", str(cfg)]
    if layer >= 2:
        for key, (_, _, vals, _, _) in {**TABLE}.items():
            env[f"SCORECHECK_RUN_{key.upper()}"] = str(vals[1])
        for key, (_, vals, _) in ENDPOINT.items():
            env[f"SCORECHECK_RUN_{key.upper()}"] = vals[1]
    if layer >= 3:
        for flag, _, vals, _, _ in TABLE.values():
            args += [flag, str(vals[2])]
        for flag, vals, _ in ENDPOINT.values():
            args += [flag, vals[2]]
    r = run_cli(*args, env=env, timeout=60)
    assert r.code == 0, r.err
    return json.loads(r.out)


@pytest.mark.parametrize("top", LAYERS)
def test_the_top_layer_wins_every_option(tmp_path, top):
    d = _invoke(tmp_path, top)
    layer = LAYERS.index(top)
    system_prompt_names = {"text:mine": "literal"}
    for key, (_, _, vals, default, read) in TABLE.items():
        want = default if layer == 0 else vals[layer - 1]
        if key == "evals" and layer:
            want = [want]
        if key == "system_prompt":
            want = system_prompt_names.get(want, want)
        assert read(d) == want, (top, key, read(d), want)
    if layer == 0:
        assert d["endpoints"] == []  # the embedded model
        return
    for key, (_, vals, read) in ENDPOINT.items():
        assert read(d) == vals[layer - 1], (top, key, read(d))


def test_credential_flags_beside_a_config_file_endpoint_are_used(stub, tmp_path):
    """--config with an [[endpoint]] and no --base-url: --api-key-env and --header-env still apply (they were
    dropped, and OPENAI_API_KEY's value went to the endpoint)."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'evals = "mmlu"\nlimit = 2\n[[endpoint]]\nbase_url = "{stub.base_url}"\n')
    env = {"OPENAI_API_KEY": "sk-the-wrong-one", "MY_KEY": "sk-the-right-one", "MY_TOKEN": "tok-1"}
    r = run_cli("run", "--config", str(cfg), "--model", "stub-model", "--api-key-env", "MY_KEY", "--header-env",
                "X-Token=MY_TOKEN", "--out", str(tmp_path / "run"), "-q", env=env, timeout=120)  # fmt: skip
    assert r.code == 0, r.err
    assert stub.stats()["last_authorization"] == "Bearer sk-the-right-one"
    ep = json.loads((tmp_path / "run" / "config.json").read_text())["endpoints"][0]
    assert ep["api_key_env"] == "MY_KEY" and ep["header_env"] == {"X-Token": "MY_TOKEN"}


def test_credential_flags_without_an_endpoint_are_refused(tmp_path):
    r = run_cli("run", "--api-key-env", "MY_KEY", "--print-config", timeout=60)
    assert r.code == 2 and "--api-key-env: no endpoint" in r.err and "--base-url" in r.err


def test_deprecated_samples_is_epochs_with_a_note():
    r = run_cli("run", "--samples-per-task", "3", "--print-config", timeout=60)
    assert r.code == 0 and json.loads(r.out)["samples"] == 3
    assert "--samples/--samples-per-task is deprecated" in r.err and "--epochs" in r.err


def test_system_prompt_forms_and_a_regrade_of_them(stub, tmp_path):
    """text:TEXT and @FILE are recorded as such, and a regrade rebuilds the run's configuration from them."""
    prompt = tmp_path / "p.txt"
    prompt.write_text("From a file.")
    r = run_cli("run", "--system-prompt", f"@{prompt}", "--print-config", timeout=60)
    assert r.code == 0 and json.loads(r.out)["system_prompt"]["text"] == "From a file."
    out = tmp_path / "run"
    r = run_cli("run", "--base-url", stub.base_url, "--model", "stub-model", "--evals", "gsm8k", "--limit", "2",
                "--system-prompt", "text:Be brief.", "--out", str(out), "-q", timeout=120)  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads((out / "config.json").read_text())["system_prompt"]["text"] == "Be brief."
    r = run_cli("regrade", str(out), timeout=120)
    assert r.code == 0, r.err
    (regraded,) = out.glob("regrade-*/results.json")
    sp = json.loads(regraded.read_text())["config"]["system_prompt"]
    assert (sp["name"], sp["text"]) == ("literal", "Be brief.")
