"""The records a run directory holds, as typed, versioned pydantic models.

- ``results.json``: :class:`Results` (scores, intervals, diagnostics, what the run was);
- ``samples.jsonl``: one :class:`Sample` per line, in item order (eval, item, sample), no timing;
- ``timings.jsonl``: one :class:`Timing` per line (latency and the like), kept apart so that two runs against a
  deterministic server give byte-identical ``samples.jsonl``;
- ``config.json``: :class:`RunConfigRecord` (the resolved configuration, no secrets).

Every record carries ``schema_version`` (semver). Readers accept any minor/patch of a known major and refuse another
major with a one-line message. The models are permissive on optional fields (``extra="allow"``: a field another
part of scorecheck adds later is kept as it is) and strict on the version. Adding a field is one line here: a name,
a type and a default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "1.2.0"
"""1.1: each eval's protocol, forced cross-protocol scoring, the sandbox's isolation mode, config's per-eval
reasoning and samples, the interval's method. 1.2: each eval's ``incomplete``, ``http_400_items`` and ``warnings``."""
"""Bump the minor for an added field, the major for a change an older reader would misread."""

SCHEMA_MAJOR = int(SCHEMA_VERSION.split(".")[0])


class VersionError(ValueError):
    """A record of a schema major version this scorecheck does not know."""


def check_version(v: str) -> str:
    parts = str(v).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise VersionError(f"schema_version {v!r} is not a semver string (MAJOR.MINOR.PATCH)")
    if int(parts[0]) != SCHEMA_MAJOR:
        raise VersionError(f"schema_version {v} is not readable by this scorecheck (it reads {SCHEMA_MAJOR}.x); "
                           "use the scorecheck that wrote it, or regrade the run to rewrite its records")  # fmt: skip
    return v


class _Open(BaseModel):
    """A part of a record: unknown keys are kept."""

    model_config = ConfigDict(extra="allow")


class Record(_Open):
    """A top-level record: versioned."""

    schema_version: str = SCHEMA_VERSION

    def model_post_init(self, context: Any, /) -> None:
        # Records are written with exclude_unset (a field nobody set stays absent, as before): the version always is.
        self.model_fields_set.add("schema_version")

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_version(v)


# -- results.json ----------------------------------------------------------------------------------------------------
class ScorecheckInfo(_Open):
    version: str
    git_commit: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)


class ProtocolRef(_Open):
    name: str
    reference: str | None = None


class SystemPrompt(_Open):
    name: str
    sha256: str | None = None
    text: str | None = None


class Described(_Open):
    """The configuration as results.json records it (config.json's content, or grade's short form)."""

    system_prompt: SystemPrompt
    reasoning: str | None = None
    """``--reasoning`` as given; None: each eval's protocol default (``reasoning_per_eval``)."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = None
    evals: list[str] = Field(default_factory=list)


class Counts(_Open):
    unparsed: int = 0
    truncated: int = 0
    missing_tag: int = 0
    failed: int = 0
    http_400: int = 0


class Metric(_Open):
    """One number with its own n: ``correct`` of ``n`` (prompts, instructions, items)."""

    value: float | None
    correct: float
    n: int
    unit: str = "items"


class EvalProtocolRecord(_Open):
    """What protocol an eval ran (or was regraded) under: the profile, the eval's source, the sha256 of every protocol
    string it used, the reasoning rule, samples, repeats, subset rule, grader, HTTP-400 rule, byte verification."""

    name: str
    reference: str | None = None
    source: str | None = None
    strings_sha256: dict[str, str] = Field(default_factory=dict)
    reasoning: str | None = None
    reasoning_rule: str | None = None
    samples: int | None = None
    repeats: int | None = None
    subset: str | None = None
    grader: str | None = None
    http_400_text: str | None = None
    byte_verified: bool | None = None
    regrade: dict[str, Any] | None = None
    """A cross-protocol regrade's plan: which samples were regradable, which differ and in which fields."""


class EvalResult(_Open):
    """One eval's aggregate. ``score`` is the headline; ``correct``/``n`` is its count where the headline is a
    proportion (None where it is not, e.g. IFEval's mean of four: each of the four is under ``metrics``)."""

    score: float | None
    n: int
    n_items: int
    correct: float | None = None
    ci95: list[float] | None = None
    ci_method: str | None = None
    """How ``ci95`` was computed: ``wilson`` / ``t`` (independent items) or cluster-robust (an item's repeats,
    MMLU's subjects); an eval whose headline is not a plain mean names its own (``aggregate``)."""
    counts: Counts = Field(default_factory=Counts)
    graders: dict[str, int] = Field(default_factory=dict)
    failed_items: list[str] = Field(default_factory=list)
    """Samples with no answer after the retries (transport failures): left out of the score in every eval."""
    incomplete: bool = False
    """Some samples have no answer (``failed_items``): the score covers the others; a rerun retries them."""
    http_400_items: list[str] = Field(default_factory=list)
    """Samples the endpoint rejected with HTTP 400, graded by the protocol's HTTP-400 rule (``http_400_text``)."""
    warnings: list[str] = Field(default_factory=list)
    """What makes the cell doubtful, one line each (HTTP 400s above 1% of its samples)."""
    metrics: dict[str, Metric] = Field(default_factory=dict)
    judge_failed_items: list[str] | None = None
    grader_agreement: dict[str, Any] | None = None
    summary_rows: list[list[Any]] | None = None
    protocol: EvalProtocolRecord | None = None
    scoring_forced: bool | None = None
    """``regrade --protocol P --force-scoring``: samples whose requests differ under P were graded anyway."""
    isolation_mode: str | None = None
    """HumanEval: the sandbox mode its programs ran in (``rootns``, ``userns``; ``setuid``/``none`` only opted in)."""


class Tokens(_Open):
    prompt: int = 0
    completion: int = 0


class Results(Record):
    scorecheck: ScorecheckInfo
    protocol: ProtocolRef
    model: str
    config: Described
    evals: dict[str, EvalResult]
    notes: list[str] = Field(default_factory=list)
    model_identity: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[str] = Field(default_factory=list)
    models_answer: dict[str, Any] = Field(default_factory=dict)
    prompt_sha256: dict[str, str | None] = Field(default_factory=dict)
    data_sha256: dict[str, str] = Field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    wall_s: float | None = None
    tokens: Tokens | None = None
    requests_this_session: dict[str, int] = Field(default_factory=dict)
    schedule: dict[str, Any] | None = None
    """``scorecheck run``: how the session scheduled its requests (engine/): each replica's concurrency (mode,
    final, max, changes), the grading workers, and the ETA's predictions against the actual time."""
    judge: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    """``scorecheck grade``: where the graded responses came from."""
    regrade: dict[str, Any] | None = None
    """``scorecheck regrade``: which run was regraded, how, and its previous scores."""


# -- samples.jsonl / timings.jsonl -----------------------------------------------------------------------------------
class Sample(Record):
    eval: str
    item_id: str
    sample_index: int = 0
    request_key: str | None = None
    prompt: Any = None
    gold: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)
    status: str
    finish_reason: str | None = None
    completion_tokens: int | None = None
    response: str | None = None
    reasoning: str | None = None
    answer_text: str | None = None
    extracted: str | None = None
    score: float | None = None
    grader: str | None = None
    grader_detail: Any = None
    grade_info: Any = None
    reasoning_format: str | None = None
    error: str | None = None
    grades: dict[str, Any] | None = None
    flags: dict[str, bool] = Field(default_factory=dict)
    forced_fields: list[str] | None = None
    """``regrade --force-scoring``: the request fields in which this sample differs from the target protocol's."""

    def order_key(self) -> tuple[str, str, int]:
        return (self.eval, self.item_id, self.sample_index)


TIMING_FIELDS = {"latency": ("latency",), "grade_seconds": ("grade_info", "seconds")}
"""Timing field -> where it sits in a stored sample: what changes from run to run is written to timings.jsonl, never
to samples.jsonl (HumanEval's sandbox wall time sits in its grade_info)."""


class Timing(Record):
    eval: str
    item_id: str
    sample_index: int = 0
    latency: float | None = None
    """Seconds from the request to its answer (the last attempt)."""
    grade_seconds: float | None = None
    """Seconds the grader took where it records them (HumanEval's sandbox)."""


# -- config.json -----------------------------------------------------------------------------------------------------
class EndpointRecord(_Open):
    base_url: str
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    """Values redacted unless the header is on results.hygiene.SAFE_HEADERS."""


class RunConfigRecord(Record):
    """config.json: the resolved configuration of ``scorecheck run`` (config.Resolved.describe())."""

    endpoints: list[EndpointRecord] = Field(default_factory=list)
    model: str | None = None
    protocol: str
    evals: list[str]
    system_prompt: SystemPrompt
    reasoning: str | None = None
    """``--reasoning`` as given; None: each eval's protocol default (``reasoning_per_eval``)."""
    reasoning_per_eval: dict[str, str] = Field(default_factory=dict)
    sampling: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = None
    samples: int | None = None
    """``--epochs`` as given; None: each eval's protocol default (``samples_per_eval``)."""
    samples_per_eval: dict[str, int] = Field(default_factory=dict)
    grading: dict[str, Any] | None = None


RECORDS: dict[str, type[Record]] = {
    "results.json": Results,
    "samples.jsonl": Sample,
    "timings.jsonl": Timing,
    "config.json": RunConfigRecord,
}
"""File name -> the model of its record (of each line for .jsonl)."""
