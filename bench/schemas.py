"""Real-world schemas through the server's own path, grammar level, three engines side by side.

For each schema of a suite (a JSON-Schema-Test-Suite draft folder, or
MaskBench's ``data/``), what ``/v1/generate`` would do with it, minus the
model: the schema guard, the output validator's preparation, each
backend's lint, the compile cache with its time box -- then, for a
compiled grammar, every test instance fed token by token through a
matcher (:mod:`lift_sys.generation.grammar.conformance`).

Outcomes per (schema, backend):

* ``exact``     -- compiled; the grammar is the schema's constraint (possibly
  rewritten with the same meaning: a discriminated ``oneOf`` as ``anyOf``,
  ``2.0`` as ``2``; listed in the row as ``rewritten``);
* ``enforced``  -- compiled a *looser* grammar that leaves out keywords the
  backend cannot express (named in the row, :mod:`lift_sys.generation.grammar.relax`);
  the server validates every output against the full schema and resamples
  (the response says ``enforcement: grammar+validation``);
* ``refused``   -- a 400 naming the keyword and JSON pointer;
* ``refused_unnamed`` -- a 4xx that names no keyword/pointer (a target to fix);
* ``timeout`` / ``busy`` -- the compile time box; ``error`` -- anything else.

Served = exact + enforced. Fail-open is an instance the reference validator
rejects that an *exact* grammar accepts; an *enforced* grammar's
accepted-invalid instances are counted apart (caught by validation, not by
the grammar), but it must still accept every valid instance (a looser
grammar that rejects one is ``valid_rejected``, as for exact). llama.cpp's
converter runs as a peer in a child process with the same deadline.
"""

# (no "from __future__ import annotations": lift-sys loads this file outside sys.modules, and dataclasses need it there to read string annotations)

import json
import platform
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

from lift_sys.errors import (
    GrammarCompileTimeout,
    InvalidRequest,
    LiftError,
    Overloaded,
    SchemaRefused,
    UnsupportedSchemaError,
)
from lift_sys.generation.grammar import GrammarCache, GrammarSpec, Vocabulary
from lift_sys.generation.grammar.conformance import (
    byte_vocabulary,
    reference_validator,
    run_instance,
    serialize,
    subschema_validity,
)
from lift_sys.service.core import guard_spec
from lift_sys.ir.validate import prepare_validator

ENGINES = ("llguidance", "xgrammar", "llamacpp")


@dataclass
class Case:
    name: str
    schema: Any
    tests: list[dict[str, Any]]  # {"data", "valid" (the suite's label), "description"}


def load_suite(path: Path) -> list[Case]:
    """A suite folder: MaskBench files ({schema, tests}) or JSON-Schema-Test-Suite files ([{schema, tests}])."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    cases: list[Case] = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "schema" in doc:
            cases.append(Case(f.stem, doc["schema"], list(doc.get("tests") or [])))
        elif isinstance(doc, list):
            for i, group in enumerate(doc):
                if isinstance(group, dict) and "schema" in group:
                    cases.append(Case(f"{f.stem}#{i} {group.get('description', '')}"[:160], group["schema"],
                                      list(group.get("tests") or [])))
    return cases


def sample(cases: list[Case], limit: int | None, seed: int) -> list[Case]:
    """All cases, or a seeded sample of ``limit`` (same seed, same sample)."""
    if limit is None or limit >= len(cases):
        return cases
    return sorted(random.Random(seed).sample(cases, limit), key=lambda c: c.name)


def classify(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """An exception from the server path -> (outcome, what the 4xx named)."""
    message = getattr(exc, "message", str(exc))[:300]
    if isinstance(exc, (SchemaRefused, UnsupportedSchemaError)):
        return "refused", {"keyword": exc.keyword, "pointer": exc.pointer, "message": message}
    if isinstance(exc, GrammarCompileTimeout):
        return "timeout", {"message": message}
    if isinstance(exc, Overloaded):
        return "busy", {"message": message}
    if isinstance(exc, InvalidRequest):
        return "refused_unnamed", {"message": message, "kind": exc.kind}
    return "error", {"message": f"{type(exc).__name__}: {message}"}


@dataclass
class EngineStats:
    outcomes: dict[str, int] = field(default_factory=dict)
    tests: dict[str, int] = field(default_factory=dict)
    compile_ms: list[float] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)
    refused_keywords: dict[str, int] = field(default_factory=dict)
    enforced_keywords: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))], 3) if s else 0.0


def _judge(stats: EngineStats, name: str, engine: str, outcome: str, truth: bool, accepted: bool,
           text: str, i: int) -> None:
    if truth and accepted:
        kind = "valid_accepted"
    elif not truth and not accepted:
        kind = "invalid_rejected"
    elif truth:  # a looser (enforced) grammar must accept every valid instance too: only the validator may reject
        kind = "valid_rejected" if outcome == "exact" else "valid_rejected_by_looser_grammar"
    else:
        kind = "invalid_accepted" if outcome == "exact" else "invalid_accepted_caught_by_validation"
    stats.bump(stats.tests, kind)
    if kind in ("valid_rejected", "valid_rejected_by_looser_grammar", "invalid_accepted") and len(stats.failures) < 200:
        stats.failures.append({"schema": name, "engine": engine, "kind": kind, "test": i, "text": text[:300]})


class SchemaBench:
    def __init__(self, vocab: Vocabulary, engines: Iterable[str], timeout_s: float, model_path: str | None,
                 enforce: bool = True) -> None:
        self.vocab = vocab
        self.enforce = enforce  # enforced mode, as the server runs (False: exact grammars only, the old behaviour)
        self.engines = [e for e in engines if e in ENGINES]
        self.cache = GrammarCache(max_entries=16, compile_timeout_s=timeout_s)
        self.timeout_s = timeout_s
        self.stats = {e: EngineStats() for e in self.engines}
        self.label_disagreements = 0
        for engine in self.engines:  # the server builds each backend's tokenizer at start-up: not a schema's cost
            if engine != "llamacpp":
                self.cache.get(GrammarSpec.json_schema({"type": "string"}), engine, vocab)
        self.peer = None
        if "llamacpp" in self.engines:
            from lift_sys.generation.grammar.llamacpp_peer import LlamaCppPeer

            if model_path is None:
                raise InvalidRequest("the llama.cpp peer needs a GGUF vocabulary (run with the model, not --vocab bytes)")
            self.peer = LlamaCppPeer(model_path, timeout_s)

    def run_case(self, case: Case) -> dict[str, Any]:
        row: dict[str, Any] = {"schema": case.name, "tests": len(case.tests)}
        spec = GrammarSpec.json_schema(case.schema) if isinstance(case.schema, dict) else GrammarSpec("json_schema", case.schema)
        try:
            spec = guard_spec(spec)
            if isinstance(spec.source, dict):
                prepare_validator(spec.source, schema_key=spec.key)
            guard_error: BaseException | None = None
        except LiftError as exc:
            guard_error = exc
        except Exception as exc:  # noqa: BLE001 - a 500 in the server: reported as such
            guard_error = exc
        truths: list[bool] = []
        texts: list[str | None] = []
        if guard_error is None:
            checker = reference_validator(spec.source)
            valid = subschema_validity(spec.source)
            for test in case.tests:
                truth = bool(checker.is_valid(test.get("data")))
                self.label_disagreements += truth != bool(test.get("valid"))
                truths.append(truth)
                texts.append(serialize(test.get("data"), spec.source, valid))
        for engine in self.engines:
            stats = self.stats[engine]
            if guard_error is not None:
                outcome, info = classify(guard_error)
            elif engine == "llamacpp":
                outcome, info = self._peer(case, spec, truths, stats)
            else:
                outcome, info = self._ours(case, spec, engine, truths, texts, stats)
            stats.bump(stats.outcomes, outcome)
            if outcome == "refused":
                stats.bump(stats.refused_keywords, info["keyword"])
            row[engine] = {"outcome": outcome, **info}
        return row

    def _ours(self, case: Case, spec: GrammarSpec, engine: str, truths: list[bool], texts: list[str | None],
              stats: EngineStats) -> tuple[str, dict[str, Any]]:
        for attempt in range(2):
            t0 = time.perf_counter()
            try:
                compiled = self.cache.get(spec, engine, self.vocab, relax=self.enforce)
                break
            except Overloaded as exc:  # an earlier schema still holds the compile threads
                if attempt or not self.cache.wait_idle(600):
                    return classify(exc)
            except Exception as exc:  # noqa: BLE001
                return classify(exc)
        ms = (time.perf_counter() - t0) * 1000
        if not compiled.cache_hit:
            stats.compile_ms.append(ms)
        dropped = [r.to_dict() for r in compiled.relaxed if not r.exact]
        rewritten = [r.to_dict() for r in compiled.relaxed if r.exact]
        if compiled.relaxed and compiled.spec is not None and isinstance(compiled.spec.source, dict):
            # written the way *this* grammar writes it: a relaxed schema can merge its properties in
            # another order (a oneOf left to validation no longer contributes its branch's properties)
            source = compiled.spec.source
            texts = [serialize(test.get("data"), source, subschema_validity(source)) for test in case.tests]
        outcome = "enforced" if dropped else "exact"
        for r in dropped:
            stats.bump(stats.enforced_keywords, r["keyword"])
        timed = False
        for i, (truth, text) in enumerate(zip(truths, texts)):
            if text is None:
                stats.bump(stats.tests, "unserializable")
                continue
            result = run_instance(compiled, text, self.vocab, time_masks=not timed and truth)
            if truth and not result.accepted:  # the decoder's verdict: a mask before every token
                result = run_instance(compiled, text, self.vocab, masked=True)
            timed = timed or bool(result.mask_us)
            stats.mask_us.extend(result.mask_us)
            _judge(stats, case.name, engine, outcome, truth, result.accepted, text, i)
        info: dict[str, Any] = {"compile_ms": round(ms, 3)}
        if dropped:
            info["validated"] = dropped
        if rewritten:
            info["rewritten"] = rewritten
        return outcome, info

    def _peer(self, case: Case, spec: GrammarSpec, truths: list[bool], stats: EngineStats) -> tuple[str, dict[str, Any]]:
        assert self.peer is not None
        valid = subschema_validity(spec.source)
        texts = [serialize(t.get("data"), spec.source, valid, required_first=True) for t in case.tests]
        keep = [i for i, t in enumerate(texts) if t is not None]
        result = self.peer.check(spec.source, [texts[i] for i in keep])
        if result.outcome != "exact":
            return result.outcome, {"message": result.message}
        stats.compile_ms.append(result.compile_ms)
        stats.mask_us.extend(result.mask_us)
        for j, accepted in zip(keep, result.accepted):
            _judge(stats, case.name, "llamacpp", "exact", truths[j], accepted, texts[j] or "", j)
        return "exact", {"compile_ms": round(result.compile_ms, 3)}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for engine, s in self.stats.items():
            total = sum(s.outcomes.values())
            served = s.outcomes.get("exact", 0) + s.outcomes.get("enforced", 0)
            out[engine] = {
                "outcomes": dict(sorted(s.outcomes.items())),
                "served": served,
                "served_pct": round(100 * served / total, 1) if total else 0.0,
                "exact_pct": round(100 * s.outcomes.get("exact", 0) / total, 1) if total else 0.0,
                "tests": dict(sorted(s.tests.items())),
                "compile_ms": {"p50": _pct(s.compile_ms, 0.5), "p99": _pct(s.compile_ms, 0.99),
                               "max": round(max(s.compile_ms, default=0.0), 3), "n": len(s.compile_ms)},
                "mask_us": {"p50": _pct(s.mask_us, 0.5), "p99": _pct(s.mask_us, 0.99), "n": len(s.mask_us)},
                "refused_keywords": dict(sorted(s.refused_keywords.items(), key=lambda kv: -kv[1])[:25]),
                "enforced_keywords": dict(sorted(s.enforced_keywords.items(), key=lambda kv: -kv[1])[:25]),
                "failures": s.failures,
            }
        return out

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("llguidance", "xgrammar", "llama_cpp_python", "jsonschema", "jsonschema_rs"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_schema_bench(*, suite: Path, engines: list[str], limit: int | None = None, seed: int = 0,
                     timeout_s: float = 10.0, vocab: str = "model", console: Console | None = None,
                     enforce: bool = True) -> dict[str, Any]:
    """Run the bench; returns the JSON document (summary per engine + one row per schema)."""
    console = console or Console(stderr=True)
    if not suite.exists():
        raise InvalidRequest(f"suite not found: {suite} (a folder of .json files; nothing is downloaded)")
    cases = sample(load_suite(suite), limit, seed)
    model_path: str | None = None
    if vocab == "bytes":
        vocabulary = byte_vocabulary()
    else:
        from lift_sys.service.runtime import local_engine

        engine = local_engine()
        vocabulary = engine.vocabulary()
        model_path = str(engine.model_path)
    bench = SchemaBench(vocabulary, engines, timeout_s, model_path, enforce=enforce)
    rows = []
    t0 = time.perf_counter()
    try:
        for n, case in enumerate(cases, 1):
            rows.append(bench.run_case(case))
            if n % 100 == 0:
                console.print(f"  {n}/{len(cases)} schemas, {time.perf_counter() - t0:.0f} s")
    finally:
        bench.close()
    elapsed = time.perf_counter() - t0
    results = {
        "bench": "schemas",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": str(suite),
        "schemas": len(cases),
        "tests": sum(len(c.tests) for c in cases),
        "limit": limit,
        "seed": seed,
        "timeout_s": timeout_s,
        "enforce": enforce,
        "vocabulary": vocabulary.name,
        "elapsed_s": round(elapsed, 1),
        "label_disagreements": bench.label_disagreements,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "versions": _versions(),
        "engines": bench.summary(),
        "rows": rows,
    }
    console.print(render_table(results))
    return results


def render_table(results: dict[str, Any]) -> Table:
    engines = results["engines"]
    table = Table(title=f"{results['suite']}: {results['schemas']} schemas, {results['tests']} tests, "
                        f"{results['elapsed_s']} s")
    table.add_column("")
    for e in engines:
        table.add_column(e, justify="right")
    keys = ["exact", "enforced", "refused", "refused_unnamed", "timeout", "busy", "error"]
    for k in keys:
        table.add_row(k, *[str(engines[e]["outcomes"].get(k, 0)) for e in engines])
    table.add_row("served (exact + enforced)", *[f"{engines[e]['served']} ({engines[e]['served_pct']}%)"
                                                 for e in engines])
    for k in ["valid_accepted", "valid_rejected", "valid_rejected_by_looser_grammar", "invalid_rejected",
              "invalid_accepted", "invalid_accepted_caught_by_validation"]:
        table.add_row(f"tests: {k}", *[str(engines[e]["tests"].get(k, 0)) for e in engines])
    table.add_row("compile ms p50 / p99", *[f"{engines[e]['compile_ms']['p50']} / {engines[e]['compile_ms']['p99']}"
                                            for e in engines])
    table.add_row("mask µs p50 / p99", *[f"{engines[e]['mask_us']['p50']} / {engines[e]['mask_us']['p99']}"
                                         for e in engines])
    return table


def run_schema_e2e(*, url: str, suite: Path, limit: int = 100, seed: int | None = None, max_tokens: int = 256,
                   backend: str | None = None, timeout_s: float = 300.0, api_key: str | None = None,
                   console: Console | None = None) -> dict[str, Any]:
    """A rotating, seeded sample of the suite through a running ``lift-sys serve`` (``/v1/generate``).

    Checks what a client sees: every 200 validates against its schema with
    python-``jsonschema`` (the reference validator, 2020-12 unless the schema
    names its draft), every failure is a 4xx with an error body, never a
    5xx. ``seed`` defaults to today's date (YYYYMMDD), so each day's run
    covers a different sample and any run can be repeated.
    """
    import httpx
    import jsonschema

    console = console or Console(stderr=True)
    seed = int(datetime.now(timezone.utc).strftime("%Y%m%d")) if seed is None else seed
    cases = [c for c in load_suite(suite) if isinstance(c.schema, dict)]
    cases = sample(cases, limit, seed)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    counts: dict[str, int] = {}
    statuses: dict[str, int] = {}
    enforcement: dict[str, int] = {}  # valid 200s by how the schema was enforced
    rows = []
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=timeout_s, headers=headers) as client:
        for n, case in enumerate(cases, 1):
            body: dict[str, Any] = {"prompt": "Produce one JSON value that satisfies the schema: a realistic example.",
                                    "json_schema": case.schema, "max_tokens": max_tokens, "seed": seed}
            if backend:
                body["grammar_backend"] = backend
            try:
                resp = client.post("/v1/generate", json=body)
            except httpx.HTTPError as exc:
                kind, status, detail = "transport_error", 0, str(exc)[:200]
            else:
                status = resp.status_code
                detail = ""
                if status == 200:
                    value = resp.json().get("json")
                    try:
                        jsonschema.validate(value, case.schema)  # the reference, with the schema's own draft
                        kind = "valid"
                        mode = (resp.json().get("enforcement") or {}).get("mode", "unknown")
                        enforcement[mode] = enforcement.get(mode, 0) + 1
                    except jsonschema.ValidationError as exc:
                        kind, detail = "invalid_200", exc.message[:200]
                    except jsonschema.SchemaError as exc:
                        kind, detail = "schema_unreadable_by_reference", exc.message[:200]
                elif 400 <= status < 500:
                    error = (resp.json().get("error") or {}) if resp.headers.get("content-type", "").startswith(
                        "application/json") else {}
                    kind = "clear_4xx" if error.get("type") and error.get("message") else "unclear_4xx"
                    detail = f"{error.get('type')}: {str(error.get('message'))[:200]}"
                else:
                    kind, detail = "5xx", resp.text[:200]
            counts[kind] = counts.get(kind, 0) + 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            rows.append({"schema": case.name, "status": status, "kind": kind, "detail": detail})
            console.print(f"  {n}/{len(cases)} {case.name[:50]:50} {status} {kind} {detail[:60]}")
    results = {
        "bench": "schemas-e2e", "url": url, "suite": str(suite), "schemas": len(cases), "seed": seed,
        "max_tokens": max_tokens, "backend": backend, "elapsed_s": round(time.perf_counter() - t0, 1),
        "counts": counts, "statuses": statuses, "enforcement": enforcement,
        "ok": counts.get("invalid_200", 0) == 0 and counts.get("5xx", 0) == 0 and counts.get("unclear_4xx", 0) == 0,
        "rows": rows,
    }
    console.print(f"{len(cases)} schemas: {counts}  statuses {statuses}  valid 200s by enforcement {enforcement}"
                  f"  -> {'OK' if results['ok'] else 'FAIL'}")
    return results
