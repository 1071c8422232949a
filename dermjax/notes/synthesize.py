"""Notes for a whole source: every style per record, each verified before it is kept.

Rule-based styles (template, report, narrative, ...) state only what the record knows, so they
are verified and, should one ever fail, rejected. LLM styles (dermjax.notes.llm) are verified
and, on violations, repaired (the offending sentences dropped, kept only if what remains verifies
clean and still states the diagnosis) or regenerated with a new seed up to N times, then
rejected. Every note carries its provenance: style, generator, seed, attempts, each attempt's
verdict before repair, and the outcome.

Output (one JSON line per record, in source order):
    {"dataset", "image_id", "record": {...}, "notes": [kept notes], "rejected": [the rest]}
where a kept note is {"style", "text", "generator", "seed", "ok": true, "violations": [],
"attempts", "verdicts": [[violation, ...] per attempt], "outcome"} (+ "dropped" sentences when
repaired, "prompt" for LLM notes) and a rejected one has "ok": false, the last attempt's text,
violations and "reason", or the request "error".

`write_notes` runs resumably: finished rows are appended (flushed) to OUT.partial as they come,
a rerun skips them, and OUT, OUT.report.json and OUT.meta.json appear only when all is done.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict

from tqdm import tqdm

from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_json, sha256_file, write_json, write_jsonl
from dermjax.notes import llm as llm_lib
from dermjax.notes import styles as styles_lib
from dermjax.notes.record import known_fields
from dermjax.notes.rules import verify

GENERATOR = "dermjax.notes.styles"
OUTCOMES = ("accepted_first_try", "repaired", "regenerated", "rejected", "failed_request")
_KEPT_OUTCOMES = ("accepted_first_try", "repaired", "regenerated")


def known_styles() -> tuple[str, ...]:
    # Read at call time: styles.STYLES may gain entries (e.g. "narrative") after import.
    return tuple(styles_lib.STYLES) + tuple(s for s in llm_lib.STYLES if s not in styles_lib.STYLES)


def check_styles(styles: list[str]) -> None:
    if not styles:
        raise DermjaxError(f"no note styles given; known: {', '.join(known_styles())}")
    unknown = [s for s in styles if s not in known_styles()]
    if unknown:
        raise DermjaxError(f"unknown note style(s) {', '.join(unknown)}; known: {', '.join(known_styles())}")


def note_seed(seed: int, image_id: str, style: str) -> int:
    # Derived from the record and style, not a running counter: stable under reordering.
    return int.from_bytes(hashlib.sha256(f"{seed}:{image_id}:{style}".encode()).digest()[:4], "big")


def attempt_seed(seed: int, image_id: str, style: str, attempt: int) -> int:
    """The seed of the attempt-th generation (0 = first) of one note."""
    return note_seed(seed, image_id, style if attempt == 0 else f"{style}#{attempt}")


# --------------------------------------------------------------------------------------------
# Repair.

# Sentence ends and line breaks, kept as separators so a repaired note keeps its layout.
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])[ \t]+|[ \t]*\n\s*)")
_DX_FIELDS = ("diagnosis", "diagnosis_group")


def _diagnosis_claimed(record: dict, text: str) -> bool:
    """Whether `text` positively names a diagnosis: verified against the record with another
    group swapped in, such a claim shows up as a contradiction (negated or hedged ones do not)."""
    group = known_fields(record)["diagnosis_group"]
    other = "vascular lesion" if group == "dermatofibroma" else "dermatofibroma"
    probe = {**record, "diagnosis": other, "diagnosis_group": other, "malignancy": None}
    return any(v.field in _DX_FIELDS and v.kind == "contradicted" for v in verify(probe, text).violations)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[-_/]", " ", text.lower()).split())


def states_diagnosis(record: dict, text: str) -> bool:
    """Whether a note that verifies clean still tells the record's diagnosis (vacuously true
    when the record has none)."""
    k = known_fields(record)
    terms = [t for t in (k["diagnosis"], k["diagnosis_group"]) if t and t != "other"]
    if not terms:
        return True
    if _diagnosis_claimed(record, text):
        return True
    # A diagnosis the verifier has no word for ("miscellaneous") can only be found as written.
    unread = [t for t in terms if not _diagnosis_claimed(record, t)]
    norm = _words(text)
    return any(re.search(rf"(?<![a-z0-9]){re.escape(_words(t))}(?![a-z0-9])", norm) for t in unread)


def repair_note(record: dict, text: str) -> tuple[str | None, list[str]]:
    """(`text` without its sentences that fail verification, those sentences); the text is None
    when nothing clean is left, or what is left is not clean or no longer states the diagnosis."""
    parts = _SENTENCE_BREAK.split(text.strip())
    sentences, separators = parts[0::2], [""] + parts[1::2]
    kept, dropped = [], []
    for sep, sentence in zip(separators, sentences):
        if not sentence.strip():
            continue
        if verify(record, sentence).ok:
            kept.append((sep if kept else "") + sentence)
        else:
            dropped.append(sentence.strip())
    fixed = "".join(kept).strip()
    if not fixed or not dropped or not verify(record, fixed).ok or not states_diagnosis(record, fixed):
        return None, dropped
    return fixed, dropped


# --------------------------------------------------------------------------------------------
# One record's notes.

def _violations(result) -> list[dict]:
    return [asdict(v) for v in result.violations]


def check_maker_args(styles: list[str], has_client: bool, regenerate: int) -> None:
    check_styles(styles)
    if not has_client and any(s in llm_lib.STYLES for s in styles):
        raise DermjaxError("LLM note styles need an endpoint (--llm-base-url, --llm-model)")
    if regenerate < 0:
        raise DermjaxError(f"--llm-regenerate must be >= 0, got {regenerate}")


class NoteMaker:
    """Makes the notes of one record at a time; safe to call from several threads."""

    def __init__(self, styles: list[str], seed: int = 0, client: llm_lib.ChatClient | None = None,
                 regenerate: int = 2, repair: bool = True):
        check_maker_args(styles, client is not None, regenerate)
        self.styles, self.seed, self.client = list(styles), seed, client
        self.regenerate, self.repair = regenerate, repair
        self.stop = threading.Event()

    def row(self, rec: dict) -> dict:
        record = {k: v for k, v in rec.items() if k != "image_path"}
        kept, rejected = [], []
        for style in self.styles:
            note = (self._llm_note(record, style) if style in llm_lib.STYLES
                    else self._rule_note(record, style))
            (kept if note["ok"] else rejected).append(note)
        return {"dataset": rec["dataset"], "image_id": rec["image_id"], "record": record,
                "notes": kept, "rejected": rejected}

    def _rule_note(self, record: dict, style: str) -> dict:
        s = note_seed(self.seed, record["image_id"], style)
        text = styles_lib.make_note(style, record, s)
        found = _violations(verify(record, text))
        return {"style": style, "text": text, "generator": GENERATOR, "seed": s, "ok": not found,
                "violations": found, "attempts": 1, "verdicts": [found],
                "outcome": "rejected" if found else "accepted_first_try"}

    def _llm_note(self, record: dict, style: str) -> dict:
        messages = llm_lib.build_messages(record, style)
        base = {"style": style, "generator": self.client.config.model,
                "prompt": f"dermjax.notes.llm/v{llm_lib.PROMPT_VERSION}"}
        verdicts, last = [], None
        # The unconstrained style is the unverified control: its first answer is what the study
        # trains on, so asking again would only cost requests (it is still verified, for the report).
        tries = 1 if style == "llm_unconstrained" else self.regenerate + 1
        for attempt in range(tries):
            s = attempt_seed(self.seed, record["image_id"], style, attempt)
            answer = self.client.complete(messages, s, stop=self.stop)
            if answer.text is None:
                # Not a verdict on the model: a rerun asks again (answers so far are cached).
                return {**base, "text": None, "seed": s, "ok": False, "violations": [],
                        "attempts": attempt + 1, "verdicts": verdicts, "outcome": "failed_request",
                        "error": answer.error}
            result = verify(record, answer.text)
            found = _violations(result)
            verdicts.append(found)
            done = {**base, "seed": s, "ok": True, "violations": [], "attempts": attempt + 1,
                    "verdicts": verdicts}
            if result.ok and states_diagnosis(record, answer.text):
                return {**done, "text": answer.text,
                        "outcome": "accepted_first_try" if attempt == 0 else "regenerated"}
            if self.repair and not result.ok:
                fixed, dropped = repair_note(record, answer.text)
                if fixed is not None:
                    return {**done, "text": fixed, "outcome": "repaired", "dropped": dropped}
            last = (answer.text, found, s)
        text, found, s = last
        return {**base, "text": text, "seed": s, "ok": False, "violations": found,
                "attempts": len(verdicts), "verdicts": verdicts, "outcome": "rejected",
                "reason": "violations" if found else "diagnosis not stated"}


def make_rows(maker: NoteMaker, records: list[dict], workers: int):
    """Rows as they finish (completion order when workers > 1)."""
    maker.stop.clear()
    if workers <= 1:
        for rec in records:
            yield maker.row(rec)
        return
    # A bounded window of submitted records: memory stays flat, and an abort leaves little
    # work in flight.
    with ThreadPoolExecutor(workers, thread_name_prefix="notes") as pool:
        pending: set = set()
        try:
            for rec in records:
                pending.add(pool.submit(maker.row, rec))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            if pending:
                # Stopped early: drop queued records and cut retry waits short in running ones.
                maker.stop.set()
                for f in pending:
                    f.cancel()


def synthesize(records: list[dict], styles: list[str], seed: int = 0, *,
               client: llm_lib.ChatClient | None = None, regenerate: int = 2, repair: bool = True,
               progress: bool = True) -> tuple[list[dict], dict]:
    """(rows in record order, hallucination report), in memory; `write_notes` is the resumable
    on-disk form."""
    maker = NoteMaker(styles, seed, client, regenerate, repair)
    workers = client.config.concurrency if client is not None and set(styles) & set(llm_lib.STYLES) else 1
    by_key = {}
    for row in tqdm(make_rows(maker, records, workers), total=len(records), desc="notes", unit="record",
                    disable=not progress):
        by_key[row_key(row)] = row
    rows = [by_key[row_key(r)] for r in records]
    return rows, hallucination_report(rows, styles)


# --------------------------------------------------------------------------------------------
# Hallucination report.

def _field_counts(verdict_lists: list[list[dict]], n: int) -> dict:
    fields = collections.Counter(f for vs in verdict_lists for f in {v["field"] for v in vs})
    return {f: {"count": c, "share": c / n if n else 0.0} for f, c in sorted(fields.items())}


# The claim kinds of the hallucination report, by violated field.
CLAIM_KINDS = {"diagnosis": ("diagnosis", "diagnosis_group", "malignancy"), "site": ("body_site",),
               "age": ("age",), "sex": ("sex",), "findings": (), "unlisted": ("other",),
               "other record fields": ("fitzpatrick", "modality", "confirmation")}


def claim_kind(field: str) -> str:
    if field.startswith("findings."):
        return "findings"
    return next((k for k, fields in CLAIM_KINDS.items() if field in fields), "other record fields")


def _rate(verdict_lists: list[list[dict]]) -> dict:
    n = len(verdict_lists)
    bad = sum(1 for vs in verdict_lists if vs)
    kinds = collections.Counter(v["kind"] for vs in verdict_lists for v in vs)
    claims = collections.Counter(claim_kind(v["field"]) for vs in verdict_lists for v in vs)
    return {"notes": n, "with_violations": bad, "share": bad / n if n else 0.0,
            "by_field": _field_counts(verdict_lists, n), "by_kind": dict(sorted(kinds.items())),
            "per_100_notes_by_claim": {k: round(100 * claims.get(k, 0) / n, 1) if n else 0.0
                                       for k in CLAIM_KINDS}}


def hallucination_report(rows: list[dict], styles: list[str]) -> dict:
    """Per style: the share of notes with a violation before verification (each note's first
    attempt, as an unverified pipeline would have kept it) and after (kept notes, verified again
    here), by field, and the outcome counts."""
    per_style = {}
    for style in styles:
        entries = [(row, n) for row in rows for n in row["notes"] + row.get("rejected", [])
                   if n["style"] == style]
        before = [n["verdicts"][0] for _, n in entries if n.get("verdicts")]
        after = [_violations(verify(row["record"], n["text"])) for row, n in entries if n["ok"]]
        outcomes = collections.Counter(n["outcome"] for _, n in entries)
        per_style[style] = {
            "records": len(entries),
            "kept": len(after),
            "before": _rate(before),
            "after": _rate(after),
            "outcomes": {o: outcomes.get(o, 0) for o in OUTCOMES},
            "attempts": sum(n.get("attempts", 1) for _, n in entries),
        }
    return {"records": len(rows), "styles": per_style}


def format_report(report: dict) -> str:
    head = (f"{'style':<18}{'notes':>7}{'viol.before':>13}{'viol.after':>12}{'first-try':>11}"
            f"{'repaired':>10}{'regen':>7}{'rejected':>10}{'failed':>8}")
    lines = [head]
    details = []
    for style, s in report["styles"].items():
        o = s["outcomes"]
        lines.append(f"{style:<18}{s['records']:>7}{s['before']['share']:>12.1%} {s['after']['share']:>11.1%}"
                     f"{o['accepted_first_try']:>11}{o['repaired']:>10}{o['regenerated']:>7}"
                     f"{o['rejected']:>10}{o['failed_request']:>8}")
        fields = sorted(s["before"]["by_field"].items(), key=lambda kv: -kv[1]["count"])
        if fields:
            details.append(f"  {style} before, by field: " + ", ".join(
                f"{f} {v['count']} ({v['share']:.0%})" for f, v in fields))
    return "\n".join(lines + details)


# --------------------------------------------------------------------------------------------
# Resumable run.

def row_key(row: dict) -> tuple:
    return row["dataset"], row["image_id"]


def _ids_digest(records: list[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r['dataset']}\x00{r['image_id']}\n".encode())
    return h.hexdigest()


class _PartialFile:
    """OUT.partial: a header line with the run settings, then one finished row per line,
    flushed as each row finishes, so a killed run loses at most the row being written."""

    def __init__(self, path: str, settings: dict):
        self.path, self.settings = path, settings
        self._f = None

    def load(self) -> dict:
        """Finished rows of an earlier run with the same settings; anything else is discarded."""
        if not os.path.exists(self.path):
            return {}
        with open(self.path, "rb") as f:
            data = f.read()
        # A kill mid-write leaves a tail without its newline: cut it so appends start clean.
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("settings") != self.settings:
            if lines:
                print(f"notes: {self.path} holds another run's notes; starting over")
            os.remove(self.path)
            return {}
        rows = {}
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[row_key(row)] = row
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
        return rows

    def open(self) -> None:
        fresh = not os.path.exists(self.path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        if fresh:
            self._f.write(json.dumps({"settings": self.settings}, sort_keys=True) + "\n")
            self._f.flush()

    def append(self, row: dict) -> None:
        self._f.write(json.dumps(row, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _finished(row: dict | None, record: dict, styles: list[str]) -> bool:
    if row is None or row.get("record") != {k: v for k, v in record.items() if k != "image_path"}:
        return False
    notes = row["notes"] + row.get("rejected", [])
    return (sorted(n["style"] for n in notes) == sorted(styles)
            and not any(n["outcome"] == "failed_request" for n in notes))


def write_notes(records: list[dict], out: str, styles: list[str], settings: dict, *, seed: int = 0,
                client: llm_lib.ChatClient | None = None, regenerate: int = 2, repair: bool = True,
                progress: bool = True) -> dict:
    """Notes for `records` into `out` (JSON lines), `out`.report.json and `out`.meta.json.

    `settings` names everything that shapes the notes; a finished output with the same settings
    and records is reused, and an interrupted run with the same settings is resumed from
    `out`.partial. Returns {"reused", "rows", "report", "failed_requests" (notes),
    "failed_records" (records with at least one such note), "resumed"}.
    """
    maker = NoteMaker(styles, seed, client, regenerate, repair)
    # Compared with settings read back from JSON, so tuples and lists must not differ.
    settings = json.loads(json.dumps(settings))
    partial_path = out + ".partial"
    reused = reusable_output(out, settings, records)
    if reused is not None:
        return reused
    partial = _PartialFile(partial_path, settings)
    done = partial.load()
    todo = [r for r in records if not _finished(done.get(row_key(r)), r, styles)]
    resumed = len(records) - len(todo)
    uses_llm = client is not None and bool(set(styles) & set(llm_lib.STYLES))
    workers = client.config.concurrency if uses_llm else 1
    partial.open()
    try:
        with tqdm(total=len(records), initial=resumed, desc="notes", unit="record",
                  disable=not progress) as bar:
            for row in make_rows(maker, todo, workers):
                partial.append(row)
                done[row_key(row)] = row
                bar.update()
    finally:
        partial.close()
    summary = finish_output(out, [done[row_key(r)] for r in records], styles, settings, records)
    if summary["failed_requests"] == 0:
        # Kept while requests failed: the rerun retries exactly those notes from it.
        os.remove(partial_path)
    return {**summary, "resumed": resumed}


def reusable_output(out: str, settings: dict, records: list[dict]) -> dict | None:
    """The summary of a finished `out` written from these records and settings, or None.
    `settings` must have been through a JSON round trip (as it is compared with what was read)."""
    meta_path, report_path = out + ".meta.json", out + ".report.json"
    if not (os.path.exists(out) and os.path.exists(meta_path) and os.path.exists(report_path)):
        return None
    meta = read_json(meta_path)
    if (meta.get("settings") == settings and meta.get("records_digest") == _ids_digest(records)
            and meta.get("failed_requests") == 0 and meta.get("sha256") == sha256_file(out)):
        return {"reused": True, "rows": meta.get("records"), "report": read_json(report_path),
                "failed_requests": 0, "failed_records": 0, "resumed": 0}
    return None


def finish_output(out: str, rows: list[dict], styles: list[str], settings: dict, records: list[dict]) -> dict:
    """Writes `out` (rows in record order), its report and its meta file (last: it marks the
    output complete); returns the summary."""
    report = hallucination_report(rows, styles)
    failed = sum(s["outcomes"]["failed_request"] for s in report["styles"].values())
    failed_records = sum(1 for row in rows if any(n["outcome"] == "failed_request" for n in row.get("rejected", [])))
    write_jsonl(out, rows)
    write_json(out + ".report.json", report)
    write_json(out + ".meta.json", {"settings": settings, "records": len(rows), "records_digest": _ids_digest(records),
                                    "sha256": sha256_file(out), "failed_requests": failed,
                                    "outcomes": {st: s["outcomes"] for st, s in report["styles"].items()}})
    return {"reused": False, "rows": len(rows), "report": report, "failed_requests": failed,
            "failed_records": failed_records}
