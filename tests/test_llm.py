"""LLM notes (dermjax.notes.llm) and the verified, resumable notes stage (dermjax.notes.synthesize),
against a scripted OpenAI-compatible server on 127.0.0.1 that the tests start themselves."""
from __future__ import annotations

import collections
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from dermjax.data.sources import load_records
from dermjax.core.errors import DermjaxError
from dermjax.notes import finding_state, known_fields, llm, verify
from dermjax.notes import synthesize as synth
from dermjax.notes.ontology import FINDING_LABELS
from dermjax.notes.styles import template_note

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "test-key"
N_RECORDS = 40
MAX_ATTEMPTS = 8


# --------------------------------------------------------------------------------------------
# What the fake model writes.

def _hash(*parts) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest(), 16)


def faithful(rec: dict, seed: int) -> str:
    return template_note(rec, seed)


def _wrong_site(k):
    lower = k["body_site"] in ("foot", "lower extremity")
    return "The lesion is on the face." if lower else "The lesion is on the foot."


def _wrong_sex(k):
    return "The patient is a man." if k["sex"] == "female" else "The patient is a woman."


def _wrong_age(k):
    return "The patient is 70 years old." if k["age"] is not None and k["age"] < 40 else \
        "The patient is 9 years old."


def _extra_finding(k):
    name = next(n for n in ("bleeding", "ulceration", "itch", "pain", "growth")
                if finding_state(n, k["findings"].get(n)) != "present")
    return f"{FINDING_LABELS[name].capitalize()} is present."


PLANTED_SENTENCES = {"site": _wrong_site, "sex": _wrong_sex, "age": _wrong_age, "finding": _extra_finding}
# A wrong diagnosis (unrepairable) is a third of the planted hallucinations.
KINDS = (*PLANTED_SENTENCES, "diagnosis", "diagnosis")


def hallucinated(rec: dict, seed: int, kind: str) -> str:
    """A note with one planted hallucination: an added false sentence (repairable), or a wrong
    diagnosis as the whole note (only a new generation helps)."""
    k = known_fields(rec)
    if kind == "diagnosis":
        wrong = "vascular lesion" if k["diagnosis_group"] == "dermatofibroma" else "dermatofibroma"
        text = f"Findings are consistent with {wrong}."
    else:
        extra = PLANTED_SENTENCES[kind](k)
        assert not verify(rec, extra).ok, (kind, extra, rec)
        text = faithful(rec, seed) + " " + extra
    assert not verify(rec, text).ok
    return text


UNCONSTRAINED_NOTES = (
    "A 54-year-old man presented with a pigmented lesion on the back. Dermoscopy shows an atypical "
    "pigment network and irregular streaks. Findings are consistent with melanoma.",
    "Clinical photograph of a pearly papule on the nose of an elderly woman with arborizing vessels. "
    "The appearance suggests basal cell carcinoma.",
    "A benign-appearing mole on the arm of a young adult. Symmetric, regular pigmentation, no streaks.",
)


def planted(seed: int, share: float) -> bool:
    return _hash("plant", seed) % 1000 < share * 1000


def kind_of(seed: int) -> str:
    return KINDS[_hash("kind", seed) % len(KINDS)]


# --------------------------------------------------------------------------------------------
# The fake server.

class FakeLLM:
    """Scripted chat completions. `respond(info)` picks the answer: ("text", str),
    ("status", code, headers), ("sleep", seconds, text) or ("raw", bytes)."""

    def __init__(self, records, seed=0, respond=None):
        self.by_seed = {}
        for r in records:
            for style in llm.STYLES:
                for a in range(MAX_ATTEMPTS):
                    self.by_seed[synth.attempt_seed(seed, r["image_id"], style, a)] = (r, style, a)
        self.respond = respond or self.faithful
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.answer_limit = None           # answers served before requests start to wait
        self.gate = threading.Event()      # ... until this is set
        self.gate.set()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    fake.handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, or it was killed)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    # Scripts.
    def faithful(self, info):
        if info["style"] == "llm_unconstrained":
            return "text", UNCONSTRAINED_NOTES[_hash(info["seed"]) % len(UNCONSTRAINED_NOTES)]
        return "text", faithful(info["record"], info["seed"])

    def hallucinating(self, share):
        def respond(info):
            rec, seed = info["record"], info["seed"]
            if info["style"] == "llm" and planted(seed, share):
                return "text", hallucinated(rec, seed, kind_of(seed))
            return self.faithful(info)
        return respond

    def handle(self, h, raw: bytes):
        if h.path != "/v1/chat/completions":
            return self.reply(h, 404, {"error": {"message": "no such route"}})
        if h.headers.get("Authorization") != f"Bearer {KEY}":
            return self.reply(h, 401, {"error": {"message": "invalid api key"}})
        body = json.loads(raw)
        rec, style, attempt = self.by_seed[body["seed"]]
        with self.lock:
            nth = sum(1 for e in self.log if e["seed"] == body["seed"])
            self.log.append({"image_id": rec["image_id"], "style": style, "attempt": attempt,
                             "seed": body["seed"], "body": body})
            answered = len(self.log)
        if self.answer_limit is not None and answered > self.answer_limit:
            self.gate.wait()
        action = self.respond({"record": rec, "style": style, "attempt": attempt,
                               "seed": body["seed"], "nth": nth, "body": body})
        kind = action[0]
        if kind == "sleep":
            time.sleep(action[1])
            kind, action = "text", ("text", action[2])
        if kind == "text":
            return self.reply(h, 200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                       "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": action[1]}}]})
        if kind == "status":
            return self.reply(h, action[1], {"error": {"message": f"scripted {action[1]}"}}, action[2])
        return self.reply(h, 200, action[1])

    @staticmethod
    def reply(h, status, payload, headers=None):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


# --------------------------------------------------------------------------------------------
# Fixtures.

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from dermjax.data.synthetic import write_dataset

    root = str(tmp_path_factory.mktemp("syn"))
    write_dataset(root, N_RECORDS, seed=3, image_size=16, progress=False)
    return root


@pytest.fixture(scope="module")
def records(data_root):
    return load_records("synthetic", data_root)


@pytest.fixture
def server(records):
    fake = FakeLLM(records)
    yield fake
    fake.close()


def client_for(server, tmp_path, cache="cache", **options):
    opts = dict(timeout=5.0, retries=4, concurrency=4, backoff=0.01, max_backoff=0.05)
    opts.update(options)
    cfg = llm.resolve_config(server.url, "fake-model", KEY, **opts)
    return llm.ChatClient(cfg, str(tmp_path / cache) if cache else None)


def settings_for(styles, **extra):
    return {"source": "synthetic", "styles": list(styles), "seed": 0, **extra}


def run_notes(records, out, styles, client, **kw):
    return synth.write_notes(records, str(out), list(styles), settings_for(styles), client=client,
                             progress=False, **kw)


def read_rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def partial_rows(path):
    with open(path) as f:
        lines = f.read().splitlines()
    return [json.loads(line) for line in lines[1:] if line.strip()]


# --------------------------------------------------------------------------------------------
# Prompts.

def test_grounded_prompt_offers_only_facts_that_verify(records):
    for rec in records:
        messages = llm.build_messages(rec, "llm")
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        # The worked example is itself a note that verifies against the facts it was given.
        assert llm._EXAMPLE_NOTE and all(f.split(": ")[-1].split()[-1].lower() in llm._EXAMPLE_NOTE.lower()
                                         for f in llm._EXAMPLE_FACTS)
        prompt = messages[-1]["content"]
        facts = llm.grounded_facts(rec)
        assert prompt == "Facts:\n" + "\n".join("- " + f for f in facts)
        k = known_fields(rec)
        assert f"diagnosis: {k['diagnosis']}" in facts
        for fact in facts:
            # Every fact offered is a claim the record supports.
            assert verify(rec, fact.replace("diagnosis: ", "") + ".").ok, (fact, rec)
        text = prompt.lower()
        if k["age"] is None:
            assert "year" not in text
        else:
            assert f"{int(k['age'])}-year-old" in text
        if k["sex"] is None:
            assert not {"man", "woman", "boy", "girl"} & set(text.replace("\n", " ").split())
        if k["body_site"] is None:
            assert "- on the" not in text
        for name, label in FINDING_LABELS.items():
            if name not in k["findings"] and name != "colors":
                assert label not in text


def test_unconstrained_prompt_carries_no_metadata(records):
    rec = records[0]
    messages = llm.build_messages(rec, "llm_unconstrained")
    assert messages == llm.build_messages(records[1], "llm_unconstrained")
    text = json.dumps(messages).lower()
    for value in (rec["diagnosis"], rec["diagnosis_group"], rec["sex"], rec["body_site"]):
        if value:
            assert value.lower() not in text
    assert "clinical note" in text


# --------------------------------------------------------------------------------------------
# Client.

def test_client_request_shape_retries_and_cache(records, server, tmp_path):
    failures = [("sleep", 1.0, "late"), ("status", 429, {"Retry-After": "0.01"}),
                ("status", 500, {}), ("raw", b"{not json"), ("raw", b'{"choices": []}')]

    def respond(info):
        if info["nth"] < len(failures):
            return failures[info["nth"]]
        return "text", "Diagnosis: melanoma."

    server.respond = respond
    client = client_for(server, tmp_path, timeout=0.3, retries=len(failures), temperature=0.2,
                        max_tokens=123)
    messages = llm.build_messages(records[0], "llm")
    seed = synth.attempt_seed(0, records[0]["image_id"], "llm", 0)
    answer = client.complete(messages, seed)
    assert answer.text == "Diagnosis: melanoma." and not answer.cached
    assert answer.requests == len(failures) + 1
    assert client.stats["retries"] == len(failures)
    body = server.log[-1]["body"]
    assert body == {"model": "fake-model", "messages": messages, "temperature": 0.2,
                    "max_tokens": 123, "seed": seed}
    sent = len(server.log)
    again = client_for(server, tmp_path, temperature=0.2, max_tokens=123).complete(messages, seed)
    assert again.cached and again.text == answer.text and len(server.log) == sent
    # Another parameter is another cache key.
    client_for(server, tmp_path, temperature=0.3, max_tokens=123).complete(messages, seed)
    assert len(server.log) == sent + 1


def test_client_gives_up_after_its_retries(records, server, tmp_path):
    server.respond = lambda info: ("status", 503, {})
    client = client_for(server, tmp_path, retries=2, abort_after_failures=50)
    seed = synth.attempt_seed(0, records[0]["image_id"], "llm", 0)
    answer = client.complete(llm.build_messages(records[0], "llm"), seed)
    assert answer.text is None and answer.requests == 3 and "503" in answer.error


@pytest.mark.parametrize("status,hint", [(401, "api-key"), (404, "base-url")])
def test_bad_credentials_or_route_is_one_endpoint_error(records, server, tmp_path, status, hint):
    cfg = llm.resolve_config(server.url if status == 401 else server.url + "/nope", "fake-model",
                             "wrong-key" if status == 401 else KEY, retries=3, backoff=0.01)
    with pytest.raises(llm.EndpointError, match=hint) as e:
        llm.ChatClient(cfg).complete(llm.build_messages(records[0], "llm"), 1)
    assert "\n" not in str(e.value) and len(server.log) == 0


def test_config_from_env_and_bad_config(monkeypatch):
    monkeypatch.setenv(llm.ENV_BASE_URL, "http://example.invalid/v1/")
    monkeypatch.setenv(llm.ENV_MODEL, "m")
    monkeypatch.setenv(llm.ENV_API_KEY, "k")
    cfg = llm.resolve_config()
    assert (cfg.url, cfg.model, cfg.api_key) == ("http://example.invalid/v1/chat/completions", "m", "k")
    assert llm.resolve_config(model="other").model == "other"
    for kwargs in ({"base_url": "ftp://x"}, {"base_url": "http://"}, {"concurrency": 0},
                   {"timeout": 0}, {"retries": -1}):
        with pytest.raises(DermjaxError):
            llm.resolve_config(**kwargs)
    monkeypatch.delenv(llm.ENV_MODEL)
    with pytest.raises(DermjaxError, match="--llm-model"):
        llm.resolve_config()


# --------------------------------------------------------------------------------------------
# Verification loop and report.

def test_repair_drops_only_the_false_sentence(records):
    rec = records[0]
    note = faithful(rec, 7)
    fixed, dropped = synth.repair_note(rec, note + " " + _wrong_site(known_fields(rec)))
    assert fixed == note and dropped == [_wrong_site(known_fields(rec))]
    # Nothing left that states the diagnosis: not repairable.
    assert synth.repair_note(rec, hallucinated(rec, 7, "diagnosis"))[0] is None
    assert not synth.states_diagnosis(rec, "A skin lesion is shown.")
    assert synth.states_diagnosis(rec, note)


def expected_outcome(image_id: str, share: float, repair: bool, regenerate: int) -> str:
    """What the verification loop must make of the fake model's answers for one record."""
    for attempt in range(regenerate + 1):
        seed = synth.attempt_seed(0, image_id, "llm", attempt)
        if not planted(seed, share):
            return "accepted_first_try" if attempt == 0 else "regenerated"
        if repair and kind_of(seed) != "diagnosis":
            return "repaired"
    return "rejected"


@pytest.mark.parametrize("repair", [True, False])
def test_planted_hallucinations_are_repaired_regenerated_or_rejected(records, server, tmp_path, repair):
    share = 0.3
    server.respond = server.hallucinating(share)
    styles = ("template", "llm", "llm_unconstrained")
    out = tmp_path / "notes.jsonl"
    summary = run_notes(records, out, styles, client_for(server, tmp_path), regenerate=2, repair=repair)
    rows = read_rows(out)
    assert [r["image_id"] for r in rows] == [r["image_id"] for r in records]
    report = json.loads((tmp_path / "notes.jsonl.report.json").read_text())
    assert report == json.loads(json.dumps(summary["report"]))
    first = {r["image_id"]: synth.attempt_seed(0, r["image_id"], "llm", 0) for r in records}
    planted_first = sum(planted(s, share) for s in first.values())
    s = report["styles"]["llm"]
    assert s["before"]["with_violations"] == planted_first
    assert 0.1 < s["before"]["share"] < 0.5
    assert s["after"]["with_violations"] == 0 and s["after"]["share"] == 0.0
    o = s["outcomes"]
    assert o["accepted_first_try"] == N_RECORDS - planted_first
    assert o["repaired"] + o["regenerated"] + o["rejected"] == planted_first
    assert o["failed_request"] == 0
    expected = collections.Counter(expected_outcome(r["image_id"], share, repair, 2) for r in records)
    assert o == {k: expected.get(k, 0) for k in synth.OUTCOMES}
    assert (o["repaired"] > 0) == repair and o["regenerated"] + o["rejected"] > 0
    assert set(s["before"]["by_field"]) >= {"body_site", "diagnosis_group"}
    # Violations per 100 notes by claim kind: every first-attempt violation counted once, by kind.
    per_100 = s["before"]["per_100_notes_by_claim"]
    assert set(per_100) == set(synth.CLAIM_KINDS) and per_100["site"] > 0 and per_100["diagnosis"] > 0
    firsts = [n["verdicts"][0] for r in rows for n in r["notes"] + r["rejected"]
              if n["style"] == "llm" and n["verdicts"]]
    assert sum(per_100.values()) == pytest.approx(100 * sum(map(len, firsts)) / len(firsts), abs=0.5)
    # The control: no metadata, so nearly every note invents something.
    assert report["styles"]["llm_unconstrained"]["before"]["share"] > 0.8
    # ... and it is asked once: the study trains on its first answer, verified or not.
    assert all(n["attempts"] == 1 for r in rows for n in r["notes"] + r["rejected"]
               if n["style"] == "llm_unconstrained")
    assert report["styles"]["llm_unconstrained"]["outcomes"]["regenerated"] == 0
    assert report["styles"]["template"]["before"]["with_violations"] == 0
    for row in rows:
        rec = row["record"]
        for note in row["notes"]:
            assert note["ok"] and verify(rec, note["text"]).ok and note["violations"] == []
            assert len(note["verdicts"]) == note["attempts"] and note["outcome"] in synth.OUTCOMES
            if note["style"] == "llm":
                assert note["generator"] == "fake-model" and synth.states_diagnosis(rec, note["text"])
                assert note["seed"] == synth.attempt_seed(0, rec["image_id"], "llm", note["attempts"] - 1)
            if note["outcome"] == "repaired":
                assert note["verdicts"][-1] and note["dropped"]
            if note["outcome"] == "repaired" and note["style"] == "llm":
                assert note["text"] == faithful(rec, note["seed"]) and len(note["dropped"]) == 1
        for note in row["rejected"]:
            assert not note["ok"] and note["outcome"] == "rejected" and note["violations"]
    table = synth.format_report(report)
    assert "llm_unconstrained" in table and "before, by field" in table
    print("\n" + table)


def test_transient_failures_recover_and_persistent_ones_are_counted(records, server, tmp_path):
    broken = records[5]["image_id"]
    failures = [("sleep", 0.6, "late"), ("status", 429, {"Retry-After": "0"}), ("status", 500, {}),
                ("raw", b"<html>gateway</html>")]

    def respond(info):
        if info["record"]["image_id"] == broken:
            return "status", 502, {}
        if info["nth"] == 0:
            return failures[_hash(info["seed"]) % len(failures)]
        return server.faithful(info)

    server.respond = respond
    out = tmp_path / "notes.jsonl"
    client = client_for(server, tmp_path, timeout=0.3, retries=2)
    summary = run_notes(records, out, ("template", "llm"), client)
    o = summary["report"]["styles"]["llm"]["outcomes"]
    assert o["failed_request"] == 1 and o["accepted_first_try"] == N_RECORDS - 1
    assert summary["failed_requests"] == 1 and client.stats["retries"] >= N_RECORDS - 1
    row = next(r for r in read_rows(out) if r["image_id"] == broken)
    assert [n["style"] for n in row["notes"]] == ["template"]
    assert row["rejected"][0]["outcome"] == "failed_request" and "502" in row["rejected"][0]["error"]
    # The rerun asks again for that note only; every other answer is in the cache.
    server.respond = server.faithful
    sent = len(server.log)
    summary = run_notes(records, out, ("template", "llm"), client_for(server, tmp_path))
    assert summary["failed_requests"] == 0 and summary["resumed"] == N_RECORDS - 1
    assert {e["image_id"] for e in server.log[sent:]} == {broken}
    assert not os.path.exists(str(out) + ".partial")


def test_endpoint_that_never_answers_stops_the_run(records, server, tmp_path):
    server.respond = lambda info: ("status", 500, {})
    with pytest.raises(llm.EndpointError, match="in a row failed"):
        run_notes(records, tmp_path / "n.jsonl", ("llm",), client_for(server, tmp_path, retries=0))
    assert len(server.log) < N_RECORDS


# --------------------------------------------------------------------------------------------
# Cache and resumability.

def test_rerun_sends_no_requests(records, server, tmp_path):
    server.respond = server.hallucinating(0.3)
    styles = ("llm", "llm_unconstrained")
    first = run_notes(records, tmp_path / "a.jsonl", styles, client_for(server, tmp_path))
    sent = len(server.log)
    assert sent >= 2 * N_RECORDS
    again = run_notes(records, tmp_path / "a.jsonl", styles, client_for(server, tmp_path))
    assert again["reused"] and len(server.log) == sent
    # A fresh output with the same cache: recomputed from cached answers, same notes.
    client = client_for(server, tmp_path)
    fresh = run_notes(records, tmp_path / "b.jsonl", styles, client)
    assert len(server.log) == sent and client.stats["requests"] == 0
    assert client.stats["cache_hits"] == sent
    assert fresh["report"] == first["report"]
    assert read_rows(tmp_path / "a.jsonl") == read_rows(tmp_path / "b.jsonl")


def test_interrupted_run_resumes_without_losing_or_redoing_notes(records, server, tmp_path, monkeypatch):
    server.respond = server.hallucinating(0.3)
    out = tmp_path / "notes.jsonl"
    styles = ("template", "llm")
    k = 12
    appended = []
    real_append = synth._PartialFile.append

    def append_then_die(self, row):
        if len(appended) == k:
            raise KeyboardInterrupt
        appended.append(row["image_id"])
        real_append(self, row)

    monkeypatch.setattr(synth._PartialFile, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_notes(records, out, styles, client_for(server, tmp_path))
    monkeypatch.undo()
    assert not out.exists()
    saved = partial_rows(str(out) + ".partial")
    assert [r["image_id"] for r in saved] == appended
    sent = len(server.log)
    summary = run_notes(records, out, styles, client_for(server, tmp_path))
    assert summary["resumed"] == k and summary["rows"] == N_RECORDS
    assert all(e["image_id"] not in appended for e in server.log[sent:])
    # Requests in flight at the interruption were answered into the cache: none is sent twice.
    seeds = [e["seed"] for e in server.log]
    assert len(seeds) == len(set(seeds))
    rows = read_rows(out)
    assert [r["image_id"] for r in rows] == [r["image_id"] for r in records]
    by_id = {r["image_id"]: r for r in rows}
    assert all(by_id[r["image_id"]] == r for r in saved)


def test_in_memory_synthesis_of_rule_styles(records):
    rows, report = synth.synthesize(records[:6], ["template", "report"], seed=1, progress=False)
    assert [r["image_id"] for r in rows] == [r["image_id"] for r in records[:6]]
    assert all(len(r["notes"]) == 2 and not r["rejected"] and "image_path" not in r["record"] for r in rows)
    for style in ("template", "report"):
        s = report["styles"][style]
        assert s["outcomes"]["accepted_first_try"] == 6 and s["before"]["with_violations"] == 0
    with pytest.raises(DermjaxError, match="need an endpoint"):
        synth.synthesize(records[:1], ["llm"], progress=False)


def test_partial_file_with_torn_tail_or_other_settings(records, server, tmp_path):
    out = tmp_path / "notes.jsonl"
    partial = str(out) + ".partial"
    run_notes(records[:3], out, ("template",), None)
    rows = read_rows(out)
    header = json.dumps({"settings": settings_for(("template",))}, sort_keys=True)
    with open(partial, "w") as f:
        f.write(header + "\n" + json.dumps(rows[0], sort_keys=True) + "\n" + json.dumps(rows[1])[:40])
    os.remove(out)
    summary = run_notes(records[:3], out, ("template",), None)
    assert summary["resumed"] == 1 and read_rows(out) == rows
    # Another run's partial output is not mixed in.
    with open(partial, "w") as f:
        f.write(json.dumps({"settings": {"other": 1}}) + "\n" + json.dumps(rows[0]) + "\n")
    os.remove(out)
    assert run_notes(records[:3], out, ("template",), None)["resumed"] == 0


# --------------------------------------------------------------------------------------------
# Command line.

def prep(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dermjax.cli.prep", "notes", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kw)


def llm_flags(server, concurrency=2):
    return ["--llm-base-url", server.url, "--llm-model", "fake-model", "--llm-api-key", KEY,
            "--llm-concurrency", str(concurrency), "--llm-timeout", "30", "--llm-backoff", "0.01"]


def test_cli_killed_midway_resumes(data_root, records, server, tmp_path):
    server.respond = server.hallucinating(0.3)
    out = str(tmp_path / "notes.jsonl")
    partial = out + ".partial"
    args = ["--source", "synthetic", "--root", data_root, "--out", out, "--styles", "template,llm",
            *llm_flags(server)]
    # Answer a dozen requests, then hold every further one until the process has been killed.
    server.answer_limit = 12
    server.gate.clear()
    proc = subprocess.Popen([sys.executable, "-m", "dermjax.cli.prep", "notes", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(partial) and len(partial_rows(partial)) >= 5:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the notes run never wrote 5 rows")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    server.answer_limit = None
    server.gate.set()
    finished = {r["image_id"] for r in partial_rows(partial)}
    assert 5 <= len(finished) < N_RECORDS and not os.path.exists(out)
    sent = len(server.log)
    p = prep(*args)
    assert p.returncode == 0, p.stderr
    assert "resumed from an earlier run" in p.stdout and "viol.before" in p.stdout
    assert all(e["image_id"] not in finished for e in server.log[sent:])
    rows = read_rows(out)
    assert [r["image_id"] for r in rows] == [r["image_id"] for r in records]
    assert all(set(r) >= {"dataset", "image_id", "record", "notes"} for r in rows)
    report = json.loads(open(out + ".report.json").read())
    assert report["styles"]["llm"]["after"]["with_violations"] == 0
    # Done and complete: the next run reuses the output and asks nothing.
    sent = len(server.log)
    assert "reusing" in prep(*args).stdout and len(server.log) == sent


def test_cli_failed_requests_exit_75_unless_allowed_and_rerun_retries_them(data_root, records, server, tmp_path):
    """Issue 15: a notes run whose requests failed used to exit 0. Issue 16: the message counted
    failed notes as records (two styles failing on one record read "2 of N records")."""
    broken = records[2]["image_id"]
    server.respond = lambda info: (("status", 502, {}) if info["record"]["image_id"] == broken
                                   else server.faithful(info))
    out = str(tmp_path / "n.jsonl")
    args = ["--source", "synthetic", "--root", data_root, "--out", out, "--styles", "template,llm,llm_unconstrained",
            # Concurrency 3: a rerun whose only requests are the two failing ones must not read as
            # an endpoint that never answers (that check stops after one wave of failures).
            *llm_flags(server, concurrency=3), "--llm-retries", "1"]
    p = prep(*args)
    assert p.returncode == 75, p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: {out}: 2 LLM notes are missing (1 of {N_RECORDS} records) because their requests failed; "
        "rerun the same command to retry only those, or pass --allow-failures to accept the notes as they are")
    assert len(read_rows(out)) == N_RECORDS  # written, and kept for the rerun
    p = prep(*args, "--allow-failures")
    assert p.returncode == 0 and "2 LLM notes failed on their requests (1 records)" in p.stdout, p.stderr
    server.respond = server.faithful
    sent = len(server.log)
    p = prep(*args)
    assert p.returncode == 0, p.stderr
    assert {e["image_id"] for e in server.log[sent:]} == {broken}
    row = next(r for r in read_rows(out) if r["image_id"] == broken)
    assert [n["style"] for n in row["notes"] + row["rejected"]] == ["template", "llm", "llm_unconstrained"]


def test_endpoint_that_stops_answering_is_status_75(data_root, server, tmp_path):
    server.respond = lambda info: ("status", 500, {})
    p = prep("--source", "synthetic", "--root", data_root, "--out", str(tmp_path / "n.jsonl"), "--styles", "llm",
             *llm_flags(server), "--llm-retries", "0")
    assert p.returncode == 75 and "in a row failed" in p.stderr.strip().splitlines()[-1], p.stderr


def test_cli_limit_and_bad_endpoint_config(data_root, server, tmp_path):
    out = str(tmp_path / "n.jsonl")
    base = ["--source", "synthetic", "--root", data_root, "--out", out]
    p = prep(*base, "--styles", "template,llm", "--limit", "3", *llm_flags(server), "--no-llm-repair")
    assert p.returncode == 0, p.stderr
    assert len(read_rows(out)) == 3 and len(server.log) == 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("DERMJAX_LLM_")}
    for extra, words in (([], "--llm-base-url"),
                         (["--llm-base-url", "localhost:8000"], "not an http(s) URL"),
                         (["--llm-base-url", server.url], "--llm-model"),
                         (["--llm-base-url", server.url, "--llm-model", "m", "--llm-api-key", "bad"],
                          "api-key")):
        p = prep(*base, "--out", out + ".x", "--styles", "llm", *extra, env=env)
        assert p.returncode == 2 and words in p.stderr, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    p = prep(*base, "--styles", "template,nonsense")
    assert p.returncode == 2 and "unknown note style" in p.stderr
