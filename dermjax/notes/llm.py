"""LLM notes: prompts for the two LLM styles and an OpenAI-compatible chat-completions client.

Style `llm` gives the model the case record's known fields as a list of facts, each worded as
the verifier reads it, after one worked example; unknown fields are left out. The notes are then
verified, repaired or regenerated (synthesize.py). Style `llm_unconstrained` sends no metadata at all; it exists only as
the hallucination control, so the verifier's report shows what grounding buys.

The client speaks `POST {base_url}/chat/completions` (OpenAI, vLLM, llama.cpp, Ollama, TGI all
do). Requests run at bounded concurrency and are retried with exponential backoff and jitter on
timeouts, connection errors, HTTP 408/429/5xx (Retry-After honoured) and unusable answers.
Answers are cached on disk under the sha256 of (model, messages, parameters), so a rerun of the
same settings sends no requests.
"""
from __future__ import annotations

import collections
import email.utils
import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from dermjax.core.errors import DermjaxError, TemporaryError
from dermjax.core.io import write_json
from dermjax.notes import ontology as O
from dermjax.notes.record import finding_state, known_fields

__all__ = ["STYLES", "PROMPT_VERSION", "LLMConfig", "Completion", "ChatClient", "EndpointError",
           "resolve_config", "build_messages", "grounded_facts", "cache_key"]

STYLES = ("llm", "llm_unconstrained")
# Part of every note's provenance and of the run settings: a prompt change invalidates reuse.
# Version 2 replaced the long must-state / do-not-mention prompt: a 135M model echoed its
# capitalised instructions into the notes and took 16 s per record writing them.
PROMPT_VERSION = 2

ENV_BASE_URL = "DERMJAX_LLM_BASE_URL"
ENV_MODEL = "DERMJAX_LLM_MODEL"
ENV_API_KEY = "DERMJAX_LLM_API_KEY"


class EndpointError(DermjaxError):
    """The endpoint cannot serve this run (bad URL, key or model, or it stopped answering)."""


class EndpointDown(EndpointError, TemporaryError):
    """It stopped answering: status 75, and the same command later resumes the run."""


# --------------------------------------------------------------------------------------------
# Prompts. The grounded prompt is a list of facts, each already worded the way the verifier
# reads it, and one worked example; small models copy a format far more reliably than they
# follow rules. What the record does not know is simply absent from the list.

_SYSTEM = ("You turn a list of facts about a skin lesion image into a clinical note of one or two "
           "sentences. Use only the facts in the list. Add nothing else: no size, history, "
           "symptoms, treatment, advice or other diagnosis.")
_EXAMPLE_FACTS = ["dermoscopic image", "diagnosis: seborrheic keratosis", "benign", "70-year-old woman",
                  "on the chest"]
_EXAMPLE_NOTE = ("Dermoscopic image of a seborrheic keratosis on the chest of a 70-year-old woman. "
                 "The lesion is benign.")

_UNCONSTRAINED = "Write a short dermatology clinical note for a skin lesion image."

_SITE_WORDS = {"head/neck": "head and neck", "acral": "acral skin", "genital": "genital area"}
_MODALITY_WORDS = {"dermoscopic": "dermoscopic image", "clinical": "clinical photograph"}
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
# How a recorded finding value is written; the verifier reads exactly these phrases.
_VALUE_PHRASES = {
    "pigment_network": "{v} pigment network",
    "streaks": "{v} streaks",
    "dots_and_globules": "{v} dots and globules",
    "pigmentation": "{v} pigmentation",
    "vascular_structures": "{v} vessels",
}


def _age_text(age: float) -> str:
    return f"{age:g}" if age != int(age) else str(int(age))


def _finding_phrase(name: str, raw):
    """One known finding as the words to write, or None when its value is outside section 4."""
    label = O.FINDING_LABELS[name]
    if name == "colors":
        if not isinstance(raw, (list, tuple)):
            return "no colours" if finding_state(name, raw) == "absent" else None
        colors = [str(c).strip().lower() for c in raw]
        if not colors or not all(c in O.FINDINGS["colors"] for c in colors):
            return None
        return "colours: " + ", ".join(colors)
    state = finding_state(name, raw)
    if state is None:
        return None
    value = raw.strip().lower() if isinstance(raw, str) else None
    if (name, value) in O.FINDING_ABSENT_VALUES:
        return value
    if state == "absent":
        return f"no {label}"
    if state == "present":
        return f"{label} present"
    if state not in O.FINDINGS[name]:
        return None
    if name in _VALUE_PHRASES:
        return "vessels within regression" if state == "within regression" else _VALUE_PHRASES[name].format(v=state)
    return state  # asymmetry ("asymmetric in one axis") and elevation ("palpable")


def grounded_facts(record: dict) -> list[str]:
    """The record's known fields as short phrases, each one a claim the record supports."""
    k = known_fields(record)
    facts = []
    if k["modality"]:
        facts.append(_MODALITY_WORDS[k["modality"]])
    dx, group = k["diagnosis"], k["diagnosis_group"]
    if dx or (group and group != "other"):
        facts.append("diagnosis: " + (dx or group))
    if k["malignancy"]:
        facts.append(k["malignancy"])
    person = []
    if k["age"] is not None:
        person.append(_age_text(k["age"]) + "-year-old")
    if k["sex"]:
        adult = k["age"] is None or k["age"] >= 18
        person.append(("man" if adult else "boy") if k["sex"] == "male" else ("woman" if adult else "girl"))
    elif person:
        person.append("patient")
    if person:
        facts.append(" ".join(person))
    if k["body_site"]:
        facts.append("on the " + _SITE_WORDS.get(k["body_site"], k["body_site"]))
    if k["fitzpatrick"] is not None:
        facts.append("Fitzpatrick skin type " + _ROMAN[k["fitzpatrick"]])
    if k["confirmation"]:
        facts.append("confirmed by " + k["confirmation"])
    for name in O.FINDINGS:
        if name in k["findings"]:
            phrase = _finding_phrase(name, k["findings"][name])
            if phrase:
                facts.append(phrase)
    return facts


def _fact_list(facts: list[str]) -> str:
    return "Facts:\n" + "\n".join("- " + f for f in facts)


def build_messages(record: dict, style: str) -> list[dict]:
    """The chat messages that ask for a note of `style` (one of STYLES) about `record`."""
    if style == "llm":
        return [{"role": "system", "content": _SYSTEM},
                {"role": "user", "content": _fact_list(_EXAMPLE_FACTS)},
                {"role": "assistant", "content": _EXAMPLE_NOTE},
                {"role": "user", "content": _fact_list(grounded_facts(record))}]
    if style == "llm_unconstrained":
        return [{"role": "user", "content": _UNCONSTRAINED}]
    raise ValueError(f"not an LLM style: {style!r}; choose from {', '.join(STYLES)}")


# --------------------------------------------------------------------------------------------
# Configuration.

@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.7
    max_tokens: int = 200
    timeout: float = 60.0          # seconds per request attempt
    retries: int = 5               # further attempts after the first
    concurrency: int = 8           # requests in flight at once
    backoff: float = 1.0           # first retry delay in seconds; doubles per attempt
    max_backoff: float = 60.0
    # A run whose requests keep failing stops instead of grinding through every record; the
    # notes finished so far stay in the partial output for the rerun.
    abort_after_failures: int = 20

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def params(self) -> dict:
        """What shapes an answer besides the messages and seed: part of every cache key."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}


def resolve_config(base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                   **options) -> LLMConfig:
    """An LLMConfig from flags, falling back to the DERMJAX_LLM_* environment; DermjaxError
    (one line) when the endpoint is not usable as given."""
    base_url = base_url or os.environ.get(ENV_BASE_URL, "")
    model = model or os.environ.get(ENV_MODEL, "")
    api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    if not base_url:
        raise DermjaxError(f"LLM notes need an endpoint: pass --llm-base-url or set {ENV_BASE_URL} "
                           "(e.g. https://api.openai.com/v1 or http://localhost:8000/v1)")
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise DermjaxError(f"LLM base URL {base_url!r} is not an http(s) URL "
                           "(e.g. http://localhost:8000/v1)")
    try:
        parsed.port
    except ValueError:
        raise DermjaxError(f"LLM base URL {base_url!r} has a bad port") from None
    if not model:
        raise DermjaxError(f"LLM notes need a model name: pass --llm-model or set {ENV_MODEL}")
    cfg = LLMConfig(base_url=base_url, model=model, api_key=api_key or None, **options)
    checks = (("concurrency", cfg.concurrency >= 1), ("timeout", cfg.timeout > 0),
              ("retries", cfg.retries >= 0), ("max_tokens", cfg.max_tokens >= 1),
              ("temperature", cfg.temperature >= 0), ("backoff", cfg.backoff >= 0),
              ("abort_after_failures", cfg.abort_after_failures >= 1))
    bad = [name for name, ok in checks if not ok]
    if bad:
        raise DermjaxError(f"LLM setting(s) out of range: {', '.join(f'{b}={getattr(cfg, b)}' for b in bad)}")
    return cfg


def cache_key(config: LLMConfig, messages: list[dict], seed: int) -> str:
    body = {"messages": messages, "seed": seed, **config.params()}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Client.

@dataclass
class Completion:
    text: str | None        # None when every attempt failed
    cached: bool
    requests: int           # HTTP requests this call sent
    error: str | None = None


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _GiveUp(Exception):
    """A failure that another attempt would only repeat (e.g. HTTP 400 for this prompt)."""


def _retry_after(value) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg).splitlines()[0][:200]
    except (ValueError, AttributeError):
        pass
    return body.decode("utf-8", "replace").strip().splitlines()[0][:200] if body.strip() else ""


def _answer_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        raise _Retry("answer is not JSON") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Retry("answer has no choices[0].message.content") from None
    if not isinstance(content, str) or not content.strip():
        raise _Retry("answer has an empty message")
    return content.strip()


class ChatClient:
    """Thread-safe: call `complete` from many threads; at most `concurrency` requests fly at once."""

    _RETRY_AFTER_CAP = 600.0

    def __init__(self, config: LLMConfig, cache_dir: str | None = None):
        self.config = config
        self.cache_dir = cache_dir
        self.stats: collections.Counter = collections.Counter()
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._lock = threading.Lock()
        self._failures_in_a_row = 0
        self._answered = False
        self._rng = random.Random()

    # The cache: one small JSON file per key, written atomically, so concurrent writers and a
    # killed run never leave a half-written answer under a key.
    def _cache_path(self, key: str) -> str:
        return os.path.join(self.cache_dir, key[:2], key + ".json")

    def _cache_get(self, key: str):
        if not self.cache_dir:
            return None
        try:
            with open(self._cache_path(key), encoding="utf-8") as f:
                text = json.load(f).get("text")
        except (OSError, ValueError, AttributeError):
            return None
        return text if isinstance(text, str) and text else None

    def _cache_put(self, key: str, body: dict, text: str) -> None:
        if self.cache_dir:
            write_json(self._cache_path(key), {"key": key, "request": body, "text": text})

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _delay(self, attempt: int) -> float:
        base = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
        with self._lock:
            return base * (0.5 + 0.5 * self._rng.random())

    def _send(self, payload: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(self.config.url, data=payload, headers=headers, method="POST")
        with self._slots:
            self._count("requests")
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as e:
                status, body, retry_after = e.code, e.read() if e.fp else b"", e.headers.get("Retry-After")
                e.close()
                self._http_error(status, body, retry_after)
            except (TimeoutError, socket.timeout):
                raise _Retry(f"no answer within {self.config.timeout:g} s") from None
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    raise _Retry(f"no answer within {self.config.timeout:g} s") from None
                raise _Retry(f"cannot connect to {self.config.url}: {reason}") from None
            except (OSError, http.client.HTTPException) as e:
                raise _Retry(f"connection to {self.config.url} failed: {e or type(e).__name__}") from None
        return _answer_text(body)

    def _http_error(self, status: int, body: bytes, retry_after) -> None:
        detail = _error_detail(body)
        where = f"{self.config.url} answered HTTP {status}" + (f" ({detail})" if detail else "")
        if status in (408, 409, 429) or status >= 500:
            raise _Retry(where, _retry_after(retry_after))
        if status in (401, 403):
            raise EndpointError(f"{where}: check --llm-api-key / {ENV_API_KEY}")
        if status in (404, 405):
            raise EndpointError(f"{where}: check --llm-base-url (it should end before /chat/completions) "
                                f"and --llm-model {self.config.model!r}")
        raise _GiveUp(where)

    def _settle(self, ok: bool, error: str | None = None) -> None:
        with self._lock:
            self._answered = self._answered or ok
            self._failures_in_a_row = 0 if ok else self._failures_in_a_row + 1
            n = self._failures_in_a_row
            # An endpoint that has never answered is most likely misconfigured: give up after the
            # first wave of requests rather than after abort_after_failures of them.
            limit = self.config.abort_after_failures
            if not self._answered:
                limit = min(limit, self.config.concurrency)
        if n >= limit:
            raise EndpointDown(f"{n} LLM requests in a row failed (last: {error}); stopping, rerun "
                                "to resume")

    def complete(self, messages: list[dict], seed: int, stop: threading.Event | None = None) -> Completion:
        """The model's answer to `messages` with `seed`, from the cache when it holds it.

        Setting `stop` (from another thread) ends the retry waits early, for a run shutting down.
        """
        key = cache_key(self.config, messages, seed)
        cached = self._cache_get(key)
        if cached is not None:
            self._count("cache_hits")
            return Completion(cached, True, 0)
        body = {**self.config.params(), "messages": messages, "seed": seed}
        payload = json.dumps(body, ensure_ascii=False).encode()
        error = None
        sent = 0
        stop = stop or threading.Event()
        for attempt in range(self.config.retries + 1):
            if stop.is_set():
                error = "stopped"
                break
            sent += 1
            try:
                text = self._send(payload)
            except _Retry as e:
                error = str(e)
                if attempt < self.config.retries:
                    self._count("retries")
                    wait = e.wait if e.wait is not None else self._delay(attempt + 1)
                    stop.wait(min(wait, self._RETRY_AFTER_CAP))
                continue
            except _GiveUp as e:
                error = str(e)
                break
            self._cache_put(key, body, text)
            self._settle(True)
            self._count("answers")
            return Completion(text, False, sent)
        self._count("failed")
        self._settle(False, error)
        return Completion(None, False, sent, error)

