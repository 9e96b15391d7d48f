"""A run's configuration: loaded from TOML, overridden by CLI flags, resolved against the protocol profile.

The run directory records the resolved configuration (``config.json``) without secrets: API keys are never
written anywhere, only the name of the environment variable they came from.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scorecheck.errors import UsageError

if TYPE_CHECKING:
    from scorecheck.benchmarks import Benchmark
    from scorecheck.grading.plan import GradingPlan
from scorecheck.protocols import Profile, get_profile
from scorecheck.reasoning import ReasoningFormat, parse_format
from scorecheck.results.hygiene import redact_headers
from scorecheck.results.models import SCHEMA_VERSION


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    headers: dict[str, str] = Field(default_factory=dict)
    """Header values given as such (not secrets: secrets go in ``header_env``)."""
    header_env: dict[str, str] = Field(default_factory=dict)
    """Header name -> the environment variable holding its value (``--header-env 'Name=VAR'``); values are read
    when the run starts and never written anywhere."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[Endpoint] = Field(default_factory=list)
    """Empty: scorecheck starts the embedded model."""
    model: str | None = None
    system_prompt: str | None = None
    """A profile prompt name (reflection, default), ``none``, ``@FILE`` or ``text:TEXT``; anything else is an error."""
    reasoning: str | None = None
    """None: each eval's protocol default (glaive-2024: the fork's <output> split)."""
    protocol: str = "glaive-2024"
    evals: list[str] | None = None
    """None: the protocol's default evals (glaive-2024: mmlu, gpqa, gsm8k)."""
    limit: int | None = Field(default=None, ge=1)
    samples: int | None = Field(default=None, ge=1)
    """Repeats of every item (``--epochs``, TOML ``epochs``; ``samples`` is the older name); HumanEval: pass@k.
    None: each eval's protocol default (simple-evals: HumanEval 5, MATH 10 repeats without --limit; else 1)."""
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] | None = None
    concurrency: int | None = Field(default=None, ge=1)
    """Requests in flight per replica; None: found from the server (engine/concurrency.py)."""
    timeout: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    retry_wait: float = Field(default=1.0, ge=0)
    """First backoff in seconds; doubles each retry (with jitter), capped at 60 s."""
    abort_after: int = Field(default=32, ge=1)
    """Stop early when errors or HTTP 400s are the majority of the first ``abort_after`` answers."""
    breaker_seconds: float = Field(default=120.0, gt=0)
    """Pause, probe, then stop when no request has got an answer for this long while requests keep failing."""
    preflight: bool = True
    out: str = "runs/latest"
    embedded_parallel: int = Field(default=4, ge=1)
    embedded_ctx: int = Field(default=4096, ge=256)
    """Context per parallel slot of the embedded model."""
    grader: Literal["symbolic", "judge", "both"] = "symbolic"
    """How judge-capable evals (MATH, GSM8K) are graded; see grading/plan.py."""
    score_by: Literal["symbolic", "judge"] | None = None
    """With grader = both: which grader gives the score [the profile's: symbolic]."""
    judge_url: str | None = None
    """The judge's OpenAI-compatible endpoint [https://api.openai.com/v1]; ``embedded``: the embedded model."""
    judge_model: str | None = None
    """The judge model [the profile's: gpt-4-turbo-preview]."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the judge's API key (its value is never written anywhere)."""
    judge_max_tokens: int | None = Field(default=None, ge=1)
    """Caps the judge's max_tokens [the profile's: 1024], e.g. for a small local judge that rambles."""

    @field_validator("judge_url")
    @classmethod
    def _judge_url(cls, v: str | None) -> str | None:
        if v is None or v == "embedded":
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"judge_url must start with http:// or https:// (or be 'embedded'), got {v!r}")
        return v.rstrip("/")

    @field_validator("evals", mode="before")
    @classmethod
    def _evals(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [e.strip() for e in v.split(",") if e.strip()]
        return v


FLAGS = {"samples": "--epochs", "preflight": "--no-preflight", "endpoints": "--base-url"}
"""Run keys whose command-line flag is not ``--`` + the key with dashes (errors name the flag a value came from)."""


def flag_for(loc: tuple[Any, ...]) -> str:
    """The command-line flag of a (pydantic) location: ``("endpoints", 0, "api_key_env")`` -> ``--api-key-env``."""
    key = str(loc[0]) if loc else ""
    if key == "endpoints" and len(loc) >= 3:
        return "--" + str(loc[2]).replace("_", "-")
    return FLAGS.get(key, "--" + key.replace("_", "-"))


def _toml_path(loc: tuple[Any, ...]) -> str:
    loc = ("epochs", *loc[1:]) if loc[:1] == ("samples",) else loc
    return "".join(f"[{x}]" if isinstance(x, int) else (f".{x}" if i else str(x)) for i, x in enumerate(loc))


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model = Endpoint if loc and loc[0] == "endpoints" else RunConfig
    keys = [k for k in model.model_fields if k != "samples"]
    return keys + (["epochs", "endpoint"] if model is RunConfig else [])


def _one_line(e: ValidationError, origin: str, from_flags: frozenset[str] | set[str] = frozenset()) -> str:
    """One line per configuration error, naming the flag (a value given as a flag or environment variable) or the
    TOML key (a value from the file ``origin``), the value, what is wrong and, for an unknown key, the likely fix."""
    parts = []
    for err in e.errors():
        loc = tuple(err["loc"])
        flag = bool(loc) and str(loc[0]) in from_flags
        where = flag_for(loc) if flag else f"{origin}: {_toml_path(loc) or 'config'}"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            fix = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(_known_keys(loc))
            parts.append(f"{where}: unknown key; {fix}")
        else:
            value = repr(err.get("input"))
            value = value if len(value) <= 60 else value[:57] + "..."
            parts.append(f"{where} = {value}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def read_toml(path: str | Path, kind: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad TOML is a one-line UsageError naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{kind} {p} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{p}: invalid TOML: {e}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    raw = read_toml(path)
    # [[endpoint]] tables are accepted as an alias of `endpoints`.
    if "endpoint" in raw:
        raw.setdefault("endpoints", []).extend(raw.pop("endpoint"))
    return raw


def build(file_values: dict[str, Any], overrides: dict[str, Any], origin: str = "configuration",
          from_flags: set[str] | None = None) -> RunConfig:  # fmt: skip
    """``file_values`` (a TOML file's) overridden by ``overrides`` (None: not given). An error names the flag of a
    key in ``from_flags`` [every override], else the key in ``origin``."""
    merged = dict(file_values)
    if "epochs" in merged:  # the TOML name of ``samples`` (Inspect's word for repeats)
        merged["samples"] = merged.pop("epochs")
    given = {k: v for k, v in overrides.items() if v is not None}
    merged.update(given)
    try:
        return RunConfig(**merged)
    except ValidationError as e:
        raise UsageError(_one_line(e, origin, set(given) if from_flags is None else from_flags)) from None


GRADING_KEYS = ("grader", "score_by", "judge_url", "judge_model", "judge_api_key_env", "judge_max_tokens")


def config_from_run(described: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """The RunConfig of a finished run, from the ``config.json`` it recorded, with grading options overridden."""
    d = {k: v for k, v in described.items() if k in RunConfig.model_fields}
    sp = described.get("system_prompt")
    if isinstance(sp, dict):  # recorded as {name, sha256, text}
        name = sp.get("name")
        d["system_prompt"] = None if name == "none" else (f"text:{sp.get('text')}" if ":" in str(name) or
                                                           name == "literal" else name)  # fmt: skip
    for k in GRADING_KEYS:  # the regrade's grading comes from its own options, not the run's
        d.pop(k, None)
    return build(d, overrides, origin="regrade")


class Resolved:
    """A RunConfig with the profile applied: what requests will actually carry."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.profile: Profile = get_profile(cfg.protocol)
        self.reasoning: ReasoningFormat | None = parse_format(cfg.reasoning) if cfg.reasoning else None
        """None: each eval's protocol default (``reasoning_for``)."""
        self.system_prompt_name, self.system_prompt = resolve_system_prompt(cfg.system_prompt, self.profile)
        from scorecheck.benchmarks import get_benchmarks

        self.benchmarks = get_benchmarks(cfg.evals or list(self.profile.default_evals), self.profile)

    def sampling(self) -> dict[str, Any]:
        """The body fields every request carries besides model and messages."""
        c, p = self.cfg, self.profile
        body: dict[str, Any] = {
            "temperature": p.temperature if c.temperature is None else c.temperature,
            "max_tokens": p.max_tokens if c.max_tokens is None else c.max_tokens,
        }
        if c.top_p is not None:
            body["top_p"] = c.top_p
        if c.seed is not None:
            body["seed"] = c.seed
        if c.stop:
            body["stop"] = list(c.stop)
        extra = p.extra_body if c.extra_body is None else c.extra_body
        body.update(extra)
        return body

    def messages(self, user_prompt: str, bench: Benchmark | None = None) -> list[dict[str, str]]:
        system = self.system_prompt
        if bench is not None:
            system = bench.system_prompt(self.system_prompt_name, system)
        msgs = []
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": user_prompt})
        return msgs

    def reasoning_for(self, bench: Benchmark) -> ReasoningFormat:
        return bench.reasoning(self.reasoning, self.system_prompt_name)

    def samples_for(self, bench: Benchmark) -> int:
        return self.cfg.samples or bench.default_samples(self.cfg.limit)

    def api_key(self, ep: Endpoint, cli_key: str | None) -> str | None:
        return cli_key or os.environ.get(ep.api_key_env) or None

    def headers(self, ep: Endpoint) -> dict[str, str]:
        """The endpoint's headers with the values of ``header_env`` read from the environment (never recorded)."""
        missing = [f"{name}={var}" for name, var in ep.header_env.items() if not os.environ.get(var)]
        if missing:
            raise UsageError(f"--header-env {missing[0]}: {missing[0].split('=', 1)[1]} is not set in the environment;"
                             " export it, or drop the header")  # fmt: skip
        return {**ep.headers, **{name: os.environ[var] for name, var in ep.header_env.items()}}

    def grading(self) -> GradingPlan:
        """The grader choice for judge-capable evals, with the profile's defaults filled in."""
        from scorecheck.grading.judge import judge_sampling
        from scorecheck.grading.plan import DEFAULT_JUDGE_URL, GradingPlan

        c, p = self.cfg, self.profile
        if c.grader == "symbolic" and c.score_by == "judge":
            raise UsageError("--score-by judge needs --grader judge or both")
        if c.grader == "judge" and c.score_by == "symbolic":
            raise UsageError("--score-by symbolic needs --grader symbolic or both")
        score_by = c.score_by or (c.grader if c.grader != "both" else p.grader)
        if c.grader == "symbolic":
            return GradingPlan("symbolic", "symbolic")
        model = c.judge_model or p.judge_model
        if c.judge_url == "embedded" and not c.judge_model:
            from scorecheck.embedded import MODEL_ALIAS

            model = MODEL_ALIAS
        if not model:
            raise UsageError(f"protocol {p.name} names no judge model; give --judge-model")
        return GradingPlan(c.grader, score_by, c.judge_url or DEFAULT_JUDGE_URL, model, c.judge_api_key_env,
                           judge_sampling(p.judge_temperature, c.judge_max_tokens or p.judge_max_tokens))  # fmt: skip

    def judge_api_key(self) -> str | None:
        return os.environ.get(self.cfg.judge_api_key_env) or None

    def describe(self) -> dict[str, Any]:
        """The resolved configuration as recorded in the run directory (no secrets)."""
        d = self.cfg.model_dump()
        d["system_prompt"] = {
            "name": self.system_prompt_name,
            "sha256": hashlib.sha256(self.system_prompt.encode()).hexdigest() if self.system_prompt else None,
            "text": self.system_prompt,
        }
        d["sampling"] = self.sampling()
        d["evals"] = [b.name for b in self.benchmarks]
        d["reasoning_per_eval"] = {b.name: str(self.reasoning_for(b)) for b in self.benchmarks}
        d["samples_per_eval"] = {b.name: self.samples_for(b) for b in self.benchmarks}
        if any(b.judge_capable for b in self.benchmarks):
            d["grading"] = self.grading().describe()
        for ep in d["endpoints"]:
            ep["headers"] = redact_headers(ep["headers"])  # every value but an allowlisted header's
        return {"schema_version": SCHEMA_VERSION, **d}


def resolve_system_prompt(value: str | None, profile: Profile) -> tuple[str, str | None]:
    """(name, text) of ``--system-prompt``: a prompt name of the protocol, ``none`` (no system message), ``@FILE``
    or ``text:TEXT``. Anything else is an error listing the names: a typo must not become the prompt (and turn off
    IFEval's Reflection split) unnoticed."""
    if value is None or value == "none":
        return "none", None
    if value in profile.system_prompts:
        return value, profile.system_prompts[value]
    if value.startswith("text:"):
        return "literal", value[len("text:") :]
    if value.startswith("@"):
        path = value[1:]
        try:
            return f"file:{path}", Path(path).read_text()
        except OSError as e:
            raise UsageError(f"--system-prompt {value}: cannot read {path} ({e.strerror})") from None
    names = [*profile.system_prompts, "none"]
    close = difflib.get_close_matches(value, names, n=1)
    shown = value if len(value) <= 40 else value[:37] + "..."
    raise UsageError(
        f"--system-prompt {shown!r}: not a prompt of protocol {profile.name} ({', '.join(names)})"
        + (f"; did you mean {close[0]!r}?" if close else "")
        + "; give a file as @FILE or your own text as text:TEXT"
    )


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
