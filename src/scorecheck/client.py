"""Requests to OpenAI-compatible chat endpoints: async, retried with backoff, spread over several endpoints.

Outcomes of one request (after retries):
- ``ok``: a 200 with a parseable chat completion;
- ``http_400``: the endpoint rejected the request (context too long, bad parameter); under glaive-2024 it is graded
  as the empty answer, as the fork's ``BadRequestError`` branch did; not retried;
- ``failed``: retries exhausted (429, 5xx, timeouts, dropped connections, bodies that are not valid JSON) or another
  4xx. Left out of the score, counted, named at the end; a rerun retries exactly these.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from scorecheck.errors import EndpointError


class Transient(Exception):
    """A failure worth retrying."""


class Final(Exception):
    """A failure not worth retrying (4xx other than 400/408/429)."""


@dataclass
class EndpointState:
    base_url: str
    api_key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    sent: int = 0
    throttled: int = 0
    """Answers that asked to slow down (429, 5xx): the concurrency limit backs off when it grows."""
    down_until: float = 0.0
    """Monotonic time before which this endpoint is passed over: it refused or dropped a connection (a dead
    replica); requests go to the others meanwhile, and it is tried again after that."""

    def request_headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", **self.headers}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h


@dataclass
class Outcome:
    status: str  # ok | http_400 | failed
    content: str | None = None
    reasoning: str | None = None
    message: dict[str, Any] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency: float | None = None
    attempts: int = 0
    error: str | None = None
    response: str | None = None
    endpoint: str | None = None
    spilled: bool = False
    """Waiting for grading without its text, which is read back from the store (runner.GRADING_IN_MEMORY)."""


RETRY_STATUSES = {408, 409, 425, 429} | set(range(500, 600))
DOWN_FOR = 15.0
"""Seconds an endpoint that refused or dropped a connection is passed over (when another one is up)."""


class ChatClient:
    def __init__(self, endpoints: list[EndpointState], concurrency: int | None, timeout: float, max_retries: int,
                 retry_wait: float, on_attempt: Callable[[str, str | None], None] | None = None) -> None:  # fmt: skip
        """``on_attempt(status, error)``: called after every attempt (``ok``, ``http_400``, ``failed``), retries
        included (the run's circuit breaker, engine/abort.py)."""
        if not endpoints:
            raise ValueError("no endpoints")
        self.endpoints = endpoints
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self._concurrency = concurrency
        self._on_attempt = on_attempt
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatClient:
        # The connection limit is the scheduler's (engine/concurrency.py): 0 here when it adapts (no cap).
        conn = aiohttp.TCPConnector(limit=self._concurrency + 8 if self._concurrency else 0, limit_per_host=0,
                                    ttl_dns_cache=300)  # fmt: skip
        self._session = aiohttp.ClientSession(
            connector=conn,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            json_serialize=json.dumps,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use the client as an async context manager"
        return self._session

    @property
    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.endpoints)

    def pick(self) -> EndpointState:
        """Least-loaded endpoint that is not marked down; ties go to the one that has been sent the least."""
        now = time.monotonic()
        up = [e for e in self.endpoints if e.down_until <= now] or self.endpoints
        return min(up, key=lambda e: (e.in_flight, e.sent))

    async def _once(self, body: dict[str, Any], on_send: Any = None,
                    endpoint: EndpointState | None = None) -> Outcome:  # fmt: skip
        # The scheduler's replica, unless it is down (then a live one takes the retry, as without a choice).
        ep = endpoint if endpoint is not None and endpoint.down_until <= time.monotonic() else self.pick()
        ep.in_flight += 1
        ep.sent += 1
        t0 = time.monotonic()
        assert self._session is not None
        try:
            if on_send is not None:
                on_send()
            async with self._session.post(
                ep.base_url + "/chat/completions", json=body, headers=ep.request_headers()
            ) as resp:
                text, replaced = decode_body(await resp.read())
                latency = time.monotonic() - t0
                if resp.status == 400:
                    return Outcome("http_400", error=f"HTTP 400: {' '.join(text[:500].split())}", latency=latency,
                                   response=text[:20000], endpoint=ep.base_url)  # fmt: skip
                if resp.status in RETRY_STATUSES:
                    if resp.status == 429 or resp.status >= 500:
                        ep.throttled += 1
                    raise Transient(summarize_http(resp.status, text))
                if resp.status != 200:
                    raise Final(summarize_http(resp.status, text))
                try:
                    data = json.loads(text)
                    choice = data["choices"][0]
                    message = choice.get("message") or {}
                except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                    raise Transient(f"malformed response body: {text[:120]!r}") from None
                if "\\u" in text and _has_surrogate(message):  # a lone surrogate escape (\ud800): not encodable
                    message, replaced = _replace_surrogates(message), replaced + ["lone surrogate"]
                usage = data.get("usage") or {}
                return Outcome(
                    "ok",
                    content=message.get("content"),
                    reasoning=message.get("reasoning") or message.get("reasoning_content"),
                    message=message,
                    finish_reason=choice.get("finish_reason"),
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                    latency=latency,
                    response=text,
                    endpoint=ep.base_url,
                    error=f"{DECODE_REPLACED}: {', '.join(replaced)} replaced by U+FFFD" if replaced else None,
                )
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as e:
            if len(self.endpoints) > 1:  # a dead replica: the retry goes to another one
                ep.down_until = time.monotonic() + DOWN_FOR
            raise Transient(f"{e.__class__.__name__}: {e}"[:300]) from None
        except (TimeoutError, aiohttp.ClientError) as e:
            raise Transient(f"{e.__class__.__name__}: {e}"[:300]) from None
        finally:
            ep.in_flight -= 1

    async def complete(self, body: dict[str, Any], on_send: Any = None,
                       endpoint: EndpointState | None = None) -> Outcome:  # fmt: skip
        """Send one chat completion with retries; never raises for endpoint trouble. ``endpoint``: the replica the
        scheduler chose (every attempt goes there), else the least loaded at each attempt.

        Transient failures are retried up to ``max_retries`` times after :meth:`backoff`. A plain loop: tenacity's
        per-call machinery (and the reference cycles it leaves to the garbage collector) took about a quarter of
        the harness's time per request (BENCHMARKS.md)."""
        return await self._retrying(lambda: self._once(body, on_send, endpoint), self.max_retries)

    async def _retrying(self, once: Callable[[], Awaitable[Outcome]], max_retries: int) -> Outcome:
        """``once()`` until it returns, retrying ``Transient`` failures up to ``max_retries`` times."""
        attempt = 0
        while True:
            attempt += 1
            try:
                out = await once()
            except Final as e:
                self._attempted("failed", str(e))
                return Outcome("failed", error=str(e), attempts=attempt)
            except Transient as e:
                self._attempted("failed", str(e))
                if attempt > max_retries:
                    return Outcome("failed", error=f"{e} (after {attempt} attempts)", attempts=attempt)
                await asyncio.sleep(self.backoff(attempt))
                continue
            out.attempts = attempt
            self._attempted(out.status, out.error)
            return out

    def _attempted(self, status: str, error: str | None) -> None:
        if self._on_attempt is not None:
            self._on_attempt(status, error)

    async def probe(self, body: dict[str, Any], endpoint: EndpointState, retry: bool = True,
                    timeout: float | None = None) -> Outcome:  # fmt: skip
        """The preflight: ``body`` (the run's real sampling, max_tokens included) sent streamed to ``endpoint``,
        the connection closed after the first chunk, so a rejected parameter shows at once without waiting for a
        long answer. Retried like any request (one attempt without ``retry``: the circuit breaker's probes, which
        also set a short ``timeout``: a hanging endpoint must not hold the breaker for the run's --timeout);
        ``ok`` once the first chunk arrives, ``http_400`` (the endpoint's words) when it refuses the request,
        ``failed`` otherwise."""
        return await self._retrying(lambda: self._probe_once({**body, "stream": True}, endpoint, timeout),
                                    self.max_retries if retry else 0)  # fmt: skip

    async def _probe_once(self, body: dict[str, Any], ep: EndpointState, timeout: float | None) -> Outcome:
        assert self._session is not None
        t0 = time.monotonic()
        # Without ``timeout`` the session's (--timeout); aiohttp reads timeout=None as no limit at all.
        limit: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        try:
            async with self._session.post(ep.base_url + "/chat/completions", json=body,
                                          headers=ep.request_headers(), **limit) as resp:  # fmt: skip
                if resp.status != 200:
                    text, _ = decode_body(await resp.read())
                    if resp.status == 400:
                        return Outcome("http_400", error=f"HTTP 400: {summarize_body(text, 40)}", endpoint=ep.base_url)
                    raise (Transient if resp.status in RETRY_STATUSES else Final)(summarize_http(resp.status, text))
                if not resp.content_type.startswith("text/event-stream"):  # the server ignored "stream": one body
                    text, _ = decode_body(await resp.read())
                    first = text
                else:
                    first = ""
                    while not first:  # the first event of the stream; the rest is not read
                        line = await resp.content.readline()
                        if not line:
                            raise Transient("the stream ended before its first chunk")
                        first = decode_body(line)[0].strip()
                        if first.startswith(":"):  # an SSE comment (a keep-alive ping)
                            first = ""
                    first = first.removeprefix("data:").strip()
                    if first == "[DONE]":  # an empty answer: the request was accepted
                        resp.close()
                        return Outcome("ok", latency=time.monotonic() - t0, endpoint=ep.base_url)
                resp.close()  # the server stops generating when the client goes (vLLM, llama.cpp)
                try:
                    chunk = json.loads(first)
                except ValueError:
                    raise Transient(f"malformed first chunk: {summarize_body(first)!r}") from None
                if isinstance(chunk, dict) and chunk.get("error"):  # an error sent inside the stream (vLLM)
                    err = chunk["error"]
                    msg = err.get("message") if isinstance(err, dict) else err
                    return Outcome("http_400", error=f"error in the stream: {summarize_body(str(msg), 40)}",
                                   endpoint=ep.base_url)  # fmt: skip
                if not isinstance(chunk, dict) or not chunk.get("choices"):
                    raise Transient(f"not a chat completion chunk: {summarize_body(first)!r}")
                return Outcome("ok", latency=time.monotonic() - t0, endpoint=ep.base_url)
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"{e.__class__.__name__}: {e}"[:300]) from None
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
            raise Transient(f"{e.__class__.__name__}: {e}"[:300]) from None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 1): ``retry_wait`` doubled per attempt, plus up to
        ``retry_wait`` of jitter, at most 60 s (tenacity's ``wait_exponential_jitter``, which this used to call)."""
        return min(self.retry_wait * 2.0 ** min(attempt - 1, 64) + random.uniform(0, self.retry_wait), 60.0)

    async def list_models(self, ep: EndpointState) -> dict[str, Any]:
        """``GET /models``, retried like any request (429/5xx, resets, timeouts, cut or non-JSON bodies); a wrong
        key (401/403), another 4xx or a refused connection fails at once. Errors are one line."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._models_once(ep)
            except Transient as e:
                if attempt > self.max_retries:
                    raise EndpointError(f"{ep.base_url}/models: {e} (after {attempt} attempts)"[:400]) from None
                await asyncio.sleep(self.backoff(attempt))

    async def _models_once(self, ep: EndpointState) -> dict[str, Any]:
        assert self._session is not None
        try:
            async with self._session.get(
                ep.base_url + "/models", headers=ep.request_headers(), timeout=aiohttp.ClientTimeout(total=15)
            ) as resp:
                text, _ = decode_body(await resp.read())
                if resp.status in (401, 403):
                    raise EndpointError(f"{ep.base_url}/models: HTTP {resp.status}, check the API key")
                if resp.status in RETRY_STATUSES:
                    raise Transient(summarize_http(resp.status, text))
                if resp.status != 200:
                    raise EndpointError(f"{ep.base_url}/models: {summarize_http(resp.status, text)}")
                try:
                    models = json.loads(text)
                except ValueError:
                    raise Transient(f"not JSON: {summarize_body(text)!r}") from None
                if not isinstance(models, dict):
                    raise Transient(f"not a model list: {summarize_body(text)!r}")
                return models
        except aiohttp.ClientConnectorError as e:  # nothing listens there (a wrong URL, a server not up): at once
            raise EndpointError(f"endpoint {ep.base_url} unreachable ({e.__class__.__name__}: {e})"[:300]) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise Transient(f"{e.__class__.__name__}: {e}"[:300]) from None


# -- decoding and error summaries ------------------------------------------------------------------------------------
DECODE_REPLACED = "response decoding"
"""The start of ``Outcome.error`` on an ``ok`` answer whose body had invalid UTF-8 or a lone surrogate escape: the
characters were replaced by U+FFFD and the sample is flagged (``flags.decode_replaced``)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_TAG = re.compile(r"<[^>]*>")


def decode_body(raw: bytes) -> tuple[str, list[str]]:
    """A response body as text: UTF-8, invalid bytes replaced by U+FFFD (then listed) instead of raising."""
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), ["invalid UTF-8"]


def decode_replaced(out: Outcome) -> bool:
    """Whether an answer's text had characters replaced when it was decoded."""
    return out.status == "ok" and bool(out.error) and str(out.error).startswith(DECODE_REPLACED)


def _has_surrogate(obj: Any) -> bool:
    if isinstance(obj, str):
        return _SURROGATE.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_surrogate(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_surrogate(v) for v in obj)
    return False


def _replace_surrogates(obj: Any) -> Any:
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {k: _replace_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_surrogates(v) for v in obj]
    return obj


def summarize_body(text: str, words: int = 12) -> str:
    """The first words of a body, tags dropped, on one line (an nginx 502 page is eight lines of HTML)."""
    flat = " ".join(_TAG.sub(" ", text).split())
    parts = flat.split(" ")
    short = " ".join(parts[:words]) + (" …" if len(parts) > words else "")
    return short[:200]


def summarize_http(status: int, text: str) -> str:
    return f"HTTP {status}: {summarize_body(text)}" if text.strip() else f"HTTP {status}"


def find_model(models: dict[str, Any], name: str) -> dict[str, Any] | None:
    for m in models.get("data") or []:
        if m.get("id") == name or name in (m.get("aliases") or []):
            return m
    return None


def model_identity(entry: dict[str, Any]) -> dict[str, Any]:
    """What /v1/models says about the served model, minus fields that change on every restart."""
    return {k: v for k, v in entry.items() if k not in ("created",)}
