"""The one inference service: every front (CLI, HTTP, Modal) calls this.

Data flows one way: request -> prompt + compiled grammar -> engine ->
validated result. The service owns what is the same for every front:
option checks, the grammar cache, the schema lint, truncation and
validation, and the counters behind ``stats()``. It knows nothing about
HTTP or Modal; errors are :mod:`lift_sys.errors` exceptions that each
front translates.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from lift_sys import __version__
from lift_sys.codegen.sandbox import describe as sandbox_description
from lift_sys.codegen.check import Check, check_code_against_ir
from lift_sys.codegen.imports import add_missing_imports
from lift_sys.codegen.prompt import (CODE_BLOCK_REGEX, CODE_SCHEMA, CodeFormat, code_messages, raw_code_messages,
                                     request_code_messages, unfence)
from lift_sys.errors import (
    Cancelled,
    EngineError,
    InvalidRequest,
    LiftError,
    OutputValidationError,
    RunawayOutput,
    SchemaNotEnforced,
    SchemaRefused,
    TruncatedOutput,
)
from lift_sys.generation.engines.base import (
    CancelToken,
    ChatMessage,
    Completion,
    Continuation,
    Constraint,
    Engine,
    OnText,
)
from lift_sys.generation.options import GenerateOptions
from lift_sys.generation.grammar import DEFAULT_BACKEND, GrammarCache, GrammarSpec, get_backend
from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS
from lift_sys.generation.grammar.schema_guard import sanitize_schema
from lift_sys.ir.models import IR, IRSpec, ir_generation_schema
from lift_sys.ir.prompt import ir_messages
from lift_sys.generation.runaway import RunawayWatch
from lift_sys.ir.given import carry_given, request_signature
from lift_sys.ir.typed import fitted_ir_schema
from lift_sys.generation.validation import prepare_validator, validate_json
from lift_sys.ir.validate import IRCheck, check_ir, parse_ir_json, predicate_problems
from lift_sys.ir.watch import FirstOf, PredicateWatch, SignatureWatch, salvage_examples


@dataclass
class GenerationResult:
    """A finished, validated generation."""

    text: str
    json: Any
    completion: Completion
    grammar_backend: str | None
    compile_cache_hit: bool = False
    # How the constraint was enforced: "grammar" (the grammar is the schema's constraint), "grammar+validation"
    # (a looser grammar; every sample validated against the full schema, resampled on failure), None (free text).
    enforcement: str | None = None
    samples: int = 1
    relaxed: tuple[Any, ...] = ()  # Relaxation per keyword + pointer the grammar left to validation

    def enforcement_info(self) -> dict[str, Any] | None:
        """What a response says about enforcement (None for free text)."""
        if self.enforcement is None:
            return None
        return {"mode": self.enforcement, "samples": self.samples,
                "validated_keywords": [r.to_dict() for r in self.relaxed if not r.exact]}

    @property
    def finish_reason(self) -> str:
        return self.completion.finish_reason

    def usage(self) -> dict[str, int]:
        c = self.completion
        return {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "cached_prompt_tokens": c.cached_prompt_tokens,
            "forced_tokens": c.forced_tokens,
        }

    def stats(self) -> dict[str, Any]:
        """The numbers a user wants after a run (CLI stats line, HTTP timings)."""
        c = self.completion
        return {
            "model": c.model,
            "grammar_backend": self.grammar_backend,
            **self.usage(),
            "finish_reason": c.finish_reason,
            "ttft_ms": round(c.timings.ttft_ms, 1),
            "decode_tok_s": round(c.decode_tok_s, 2),
            "compile_ms": round(c.timings.compile_ms, 3),
            "compile_cache_hit": self.compile_cache_hit,
            "mask_ms": round(c.timings.mask_ms, 2),
            "total_ms": round(c.timings.total_ms, 1),
        }


@dataclass
class IRResult:
    """An IR plus how it was made and what the semantic checks found."""

    ir: IR
    checks: list[IRCheck]
    generation: GenerationResult
    samples: int = 1  # IR generations it took (runaway, truncation and malformed predicates are resampled)
    resampled: list[str] = field(default_factory=list)  # why each earlier sample was not kept
    # the grammar the kept sample finished under (ir/typed.py): "def line" (the request's), "signature" (the
    # sample's own, fitted once written), or "" (the generic IR schema)
    fitted: str = ""


@dataclass
class CodeResult:
    """Generated code for an IR plus its static checks against the IR."""

    code: str
    language: str
    checks: list[Check]
    generation: GenerationResult

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class _Counters:
    requests: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    forced_tokens: int = 0


# Built once: a spec caches its key, so a request pays neither a deep copy
# of the schema nor its canonical hash (together ~0.35 ms per IR request).
_IR_GRAMMAR = GrammarSpec.json_schema(ir_generation_schema())
_CODE_GRAMMAR = GrammarSpec.json_schema(CODE_SCHEMA)
_CODE_BLOCK_GRAMMAR = GrammarSpec("regex", CODE_BLOCK_REGEX)
_BUILTIN_KEYS = frozenset({_IR_GRAMMAR.key, _CODE_GRAMMAR.key, _CODE_BLOCK_GRAMMAR.key})
TRUSTED_SCHEMAS.update(_BUILTIN_KEYS)  # the lint may accept a narrower grammar for our own schemas


class _OwnSchemas:
    """Keys of IR schemas this service fitted to a request (``ir/typed.py``): ours, like the built-ins.

    Bounded (one key per distinct ``def`` line; the oldest are forgotten,
    and then only cost a recompile under the caller-schema rules).
    """

    def __init__(self, limit: int = 1024) -> None:
        self._keys: "OrderedDict[str, None]" = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            TRUSTED_SCHEMAS.add(key)
            while len(self._keys) > self._limit:
                old, _ = self._keys.popitem(last=False)
                TRUSTED_SCHEMAS.discard(old)

    def __contains__(self, key: object) -> bool:
        return key in _BUILTIN_KEYS or key in self._keys


_OWN_SCHEMAS = _OwnSchemas()


def ir_grammar_for(request: str) -> GrammarSpec:
    """The IR grammar for ``request``: fitted to its ``def`` line when it has one (see ``ir/typed.py``)."""
    sig = request_signature(request, None)
    schema = fitted_ir_schema(*sig) if sig is not None else None
    return _IR_GRAMMAR if schema is None else _own_grammar(schema)


def _fitted(grammar: GrammarSpec, first: GrammarSpec) -> str:
    """IRResult.fitted for a sample that finished under ``grammar`` (``first``: the request's own)."""
    if grammar is _IR_GRAMMAR:
        return ""
    return "def line" if grammar is first else "signature"


def _own_grammar(schema: dict[str, Any]) -> GrammarSpec:
    spec = GrammarSpec.json_schema(schema)
    _OWN_SCHEMAS.add(spec.key)
    return spec
_BUILTINS = (_IR_GRAMMAR, _CODE_GRAMMAR, _CODE_BLOCK_GRAMMAR)

# An IR needs a few hundred tokens; a truncation at a budget this large is a ramble worth resampling,
# one below it is the caller's budget (resampling would only truncate again).
_RESAMPLE_TRUNCATION_AT = 512

# Enforced mode (a looser grammar + validation against the full schema): samples before a 422 schema_not_enforced.
ENFORCE_SAMPLES = 3


def resample_options(options: GenerateOptions, attempt: int) -> GenerateOptions:
    """The options of sample ``attempt``: the caller's first, then a new seed at temperature >= 0.7.

    Greedy decoding repeats itself, so a resample must sample; one rule for
    every resampling loop (IR, enforced schemas).
    """
    if attempt == 0:
        return options
    return replace(options, temperature=max(options.temperature, 0.7), seed=(options.seed or 0) + 7919 * attempt)


def _unusable_examples(spec: IRSpec) -> dict[int, str]:
    """Invented examples that cannot be run as calls (wrong parameter names) or repeat an earlier one.

    A call with a missing argument fails for every candidate, so as a check it
    only ever rejects correct code; a repeated example counts one claim twice.
    """
    names = {p.name for p in spec.signature.parameters}
    seen: set[str] = set()
    out: dict[int, str] = {}
    for j, e in enumerate(spec.examples):
        key = json.dumps(e.inputs, sort_keys=True)
        if e.given:
            seen.add(key)
            continue
        if set(e.inputs) != names:
            out[j] = f"inputs {sorted(e.inputs)} do not match the parameters {sorted(names)}"
        elif key in seen:
            out[j] = "repeats an earlier example's inputs"
        seen.add(key)
    return out


def _code_result(code: str, ir: IRSpec, result: GenerationResult) -> CodeResult:
    """A candidate's source with the imports it forgot added (:mod:`lift_sys.codegen.imports`), statically checked."""
    code = add_missing_imports(code)
    return CodeResult(code=code, language="python", checks=check_code_against_ir(code, ir), generation=result)


def _repeated_assertions(spec: IRSpec) -> dict[int, str]:
    """Assertions that repeat an earlier one verbatim (the 0.5B model wrote one predicate five times over
    in an IR for "merge two sorted lists"): the same claim, checked and reported once."""
    seen: set[tuple[str, str]] = set()
    out: dict[int, str] = {}
    for j, a in enumerate(spec.assertions):
        key = (a.kind.value, " ".join(a.predicate.split()))
        if key in seen:
            out[j] = "repeats an earlier assertion"
        seen.add(key)
    return out


class TextWatch(Protocol):
    """A check on the text decoded so far (:class:`~lift_sys.ir.watch.PredicateWatch`)."""

    problem: str | None
    good_until: int | None  # with a problem: how many characters before it are still good (None: none known)

    def feed(self, piece: str) -> bool:
        """Take the next piece; True once the text is known to be unusable (``problem`` says why)."""


class StoppedByCheck(Exception):
    """Decoding was stopped by a ``stop_when`` check; the caller resamples (never reaches a front)."""

    def __init__(self, reason: str, partial_text: str, completion_tokens: int, *,
                 completion: Completion | None = None, good_until: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial_text = partial_text
        self.completion_tokens = completion_tokens
        self.completion = completion
        self.good_until = good_until

    def continuation(self) -> Continuation | None:
        """Where the next sample can pick up: the stopped completion up to the last good character."""
        if self.completion is None or not self.good_until:
            return None
        return Continuation(self.completion, self.good_until)


class _LinkedCancel(CancelToken):
    """Cancelled by its own ``cancel()`` (the runaway watch) or by the caller's token."""

    def __init__(self, parent: CancelToken | None) -> None:
        super().__init__()
        self._parent = parent

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

_ROLES = ("system", "user", "assistant")


def guard_spec(spec: GrammarSpec) -> GrammarSpec:
    """A JSON-schema spec as every library may see it: self-contained, finite, ``$schema`` removed.

    Raises SchemaRefused (a 400) for a remote/dangling ``$ref``, ``$id``, an
    unknown ``$schema``, a cycle without progress ... (see
    :mod:`lift_sys.generation.grammar.schema_guard`). The verdict is memoized
    by the spec's key, so the IR schema costs a dict lookup per request.
    """
    if spec.kind != "json_schema":
        return spec
    if spec.source is True:  # a boolean schema (any draft since 6): any value, which {} says to every backend
        return GrammarSpec.json_schema({})
    if spec.source is False:
        raise SchemaRefused("false", "", "the schema is false: no value is valid, so there is nothing to generate")
    clean = sanitize_schema(spec.source, spec.key)
    return spec if clean is spec.source else GrammarSpec.json_schema(clean)


def _check_messages(messages: list[ChatMessage]) -> None:
    """Roles the chat template knows, and text that is valid Unicode (no lone surrogates).

    Every front parses its input differently (JSON allows ``"\\ud800"``);
    a lone surrogate would otherwise surface as an encode error deep in the
    tokenizer.
    """
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES or not isinstance(msg.get("content"), str):
            raise InvalidRequest(f"messages[{i}] must be {{role: system|user|assistant, content: string}}")
        try:
            msg["content"].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(
                f"messages[{i}].content has a lone surrogate at index {exc.start}; text must be valid Unicode",
                detail={"message": i, "index": exc.start},
            ) from None


class InferenceService:
    """Constrained generation over one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        default_backend: str = DEFAULT_BACKEND,
        grammar_cache: GrammarCache | None = None,
        compile_timeout_s: float = 10.0,
    ) -> None:
        get_backend(default_backend)  # fail fast on an unknown/uninstalled backend
        self.engine = engine
        self.default_backend = default_backend
        self.grammar_cache = grammar_cache or GrammarCache(compile_timeout_s=compile_timeout_s)
        for builtin in _BUILTINS:  # client schemas must not evict these
            self.grammar_cache.pin(builtin)
        self._counters = _Counters()
        self._counters_lock = threading.Lock()
        self._linted: OrderedDict[tuple[str, str], GrammarSpec] = OrderedDict()  # remote: linted -> the spec sent
        self._started = time.time()
        # the verification sandbox in force (probed once: ~0.1 s for a bwrap start), shown by /health
        self._sandbox = sandbox_description()

    # ------------------------------------------------------------------ generic

    def _check_options(self, options: GenerateOptions) -> None:
        options.check(self.engine.context_length)

    def constraint_for(self, spec: GrammarSpec, backend: str | None = None) -> Constraint:
        """Lint + compile (cached) ``spec`` for this engine's vocabulary."""
        name = backend or self.default_backend
        vocab = self.engine.vocabulary()
        if vocab is None:  # remote engine: the server compiles; we still lint (once per schema and backend)
            wire = self._linted.get((name, spec.key))
            if wire is None:
                backend = get_backend(name)
                backend.lint(spec)
                wire = spec
                if spec.kind == "json_schema" and isinstance(spec.source, dict):
                    # the server's backend gets the schema in the form it reads right, as a local compile would
                    source = backend.wire_schema(spec.source)
                    wire = spec if source == spec.source else GrammarSpec.json_schema(source)
                with self._counters_lock:
                    self._linted[(name, spec.key)] = wire
                    while len(self._linted) > 256:
                        self._linted.popitem(last=False)
            return Constraint(spec=wire, backend=name)
        compiled = self.grammar_cache.get(spec, name, vocab)
        return Constraint(spec=spec, backend=name, compiled=compiled)

    def _enforced_constraint(self, spec: GrammarSpec, backend: str | None) -> tuple[Constraint, tuple[Any, ...]]:
        """A caller's JSON schema in enforced mode: its exact grammar, or a looser one plus what it leaves out.

        See :mod:`lift_sys.generation.grammar.relax`. Remote engine: the
        looser schema is what is sent.
        """
        name = backend or self.default_backend
        vocab = self.engine.vocabulary()
        if vocab is not None:
            compiled = self.grammar_cache.get(spec, name, vocab, relax=True)
            if not compiled.relaxed:
                return Constraint(spec=spec, backend=name, compiled=compiled), ()
            return Constraint(spec=compiled.spec or spec, backend=name, compiled=compiled), compiled.relaxed
        from lift_sys.errors import UnsupportedSchemaError
        from lift_sys.generation.grammar.relax import relax_schema

        try:
            return self.constraint_for(spec, name), ()
        except UnsupportedSchemaError:
            looser, relaxed = relax_schema(spec.source, name)
            if not relaxed:
                raise
            return self.constraint_for(GrammarSpec.json_schema(looser), name), tuple(relaxed)

    def generate(
        self,
        messages: list[ChatMessage] | str,
        grammar: GrammarSpec | dict[str, Any] | None,
        options: GenerateOptions = GenerateOptions(),
        *,
        on_text: OnText | None = None,
        cancel: CancelToken | None = None,
        stop_runaway: bool = False,
        stop_when: "TextWatch | None" = None,
        continue_from: Continuation | None = None,
    ) -> GenerationResult:
        """Generate under ``grammar`` (a GrammarSpec, or a JSON Schema dict; None = unconstrained).

        Raises TruncatedOutput when a constrained generation hits max_tokens,
        OutputValidationError when JSON output fails its schema.
        ``stop_runaway``: stop as soon as the output loops (RunawayOutput, a
        TruncatedOutput) instead of running on to max_tokens. ``stop_when``:
        a check on the text so far; when it fires, decoding stops and
        :class:`StoppedByCheck` carries its reason and, where the check
        knows it, the continuation to pick up from. ``continue_from``: only
        when ``self.engine.can_continue``.
        """
        if isinstance(messages, str):
            if not messages.strip():
                raise InvalidRequest("prompt is empty")
            messages = [{"role": "user", "content": messages}]
        if not messages:
            raise InvalidRequest("messages is empty")
        _check_messages(messages)
        spec = GrammarSpec.json_schema(grammar) if isinstance(grammar, dict) else grammar
        self._check_options(options)
        if spec is not None:
            spec = guard_spec(spec)
        caller_schema = spec is not None and spec.key not in _OWN_SCHEMAS
        if caller_schema and spec.kind == "json_schema":
            prepare_validator(spec.source, schema_key=spec.key)  # before any work: 400 if it cannot be checked
        try:
            t0 = time.perf_counter()
            relaxed: tuple[Any, ...] = ()
            if caller_schema and spec.kind == "json_schema" and isinstance(spec.source, dict):
                constraint, relaxed = self._enforced_constraint(spec, options.grammar_backend)
            else:
                constraint = self.constraint_for(spec, options.grammar_backend) if spec is not None else None
            compile_ms = (time.perf_counter() - t0) * 1000
            validated = any(not r.exact for r in relaxed)
            # Enforced by validation: up to ENFORCE_SAMPLES samples, each checked against the full schema; nothing
            # is streamed before a sample passes (a stream never shows output that is then taken back).
            tries = ENFORCE_SAMPLES if validated else 1
            for attempt in range(tries):
                opts = resample_options(options, attempt)
                try:
                    result = self._generate_once(messages, spec, constraint, opts, compile_ms, caller_schema,
                                                 on_text=None if validated else on_text, cancel=cancel,
                                                 stop_runaway=stop_runaway, stop_when=stop_when,
                                                 continue_from=continue_from if attempt == 0 else None)
                except SchemaNotEnforced as exc:
                    if not validated:
                        raise
                    if attempt + 1 < tries:
                        continue
                    failed = exc.detail.get("validator")
                    names = sorted({r.keyword for r in relaxed if not r.exact})
                    raise SchemaNotEnforced(
                        f"{exc.message.split(' (the ')[0]}, in each of {tries} samples: the {constraint.backend} "
                        f"grammar cannot express {', '.join(repr(n) for n in names)} (at "
                        f"{', '.join(sorted({r.pointer or '/' for r in relaxed if not r.exact}))}), so outputs are "
                        "validated against the full schema and resampled; none passed"
                        + (f" (failing keyword: {failed!r})" if failed else ""),
                        detail={**exc.detail, "samples": tries, "enforcement": "grammar+validation",
                                "validated_keywords": [r.to_dict() for r in relaxed if not r.exact]},
                    ) from None
                result.enforcement = None if spec is None else "grammar+validation" if validated else "grammar"
                result.samples = attempt + 1
                result.relaxed = relaxed
                if validated and on_text is not None and result.text:
                    on_text(result.text)
                return result
            raise AssertionError("unreachable")
        except Exception as exc:
            self._count_failure(exc)
            raise

    def _generate_once(self, messages: list[ChatMessage], spec: GrammarSpec | None, constraint: Constraint | None,
                       options: GenerateOptions, compile_ms: float, caller_schema: bool, *,
                       on_text: OnText | None, cancel: CancelToken | None, stop_runaway: bool,
                       stop_when: "TextWatch | None" = None,
                       continue_from: Continuation | None = None) -> GenerationResult:
        """One sample of :meth:`generate`: decode, then truncation and validation against ``spec`` (the full schema)."""
        watch, hook, token = None, on_text, cancel
        if stop_runaway or stop_when is not None:
            json_output = spec is not None and spec.kind == "json_schema"
            watch = RunawayWatch(json_output=json_output) if stop_runaway else None
            token = _LinkedCancel(cancel)

            def hook(piece: str) -> None:
                fired = watch is not None and watch.feed(piece)
                if stop_when is not None and stop_when.feed(piece):
                    fired = True
                if fired:
                    token.cancel()
                if on_text is not None:
                    on_text(piece)

        if continue_from is None:
            completion = self.engine.generate(messages, options, constraint, on_text=hook, cancel=token)
        else:
            completion = self.engine.generate(messages, options, constraint, on_text=hook, cancel=token,
                                              continue_from=continue_from)
        completion.timings.compile_ms = compile_ms
        result = GenerationResult(
            text=completion.text,
            json=None,
            completion=completion,
            grammar_backend=constraint.backend if constraint else None,
            compile_cache_hit=bool(constraint and constraint.compiled and constraint.compiled.cache_hit),
        )
        self._count(result)
        if completion.finish_reason == "cancelled":
            if watch is not None and watch.fired and not (cancel is not None and cancel.cancelled):
                raise RunawayOutput(completion.text, options.max_tokens, completion.completion_tokens, result)
            if stop_when is not None and stop_when.problem and not (cancel is not None and cancel.cancelled):
                raise StoppedByCheck(stop_when.problem, completion.text, completion.completion_tokens,
                                     completion=completion, good_until=getattr(stop_when, "good_until", None))
            raise Cancelled("the client went away; generation stopped")
        if spec is not None and completion.finish_reason == "length":
            raise TruncatedOutput(completion.text, options.max_tokens, completion.completion_tokens, result)
        if spec is not None and spec.kind == "json_schema" and completion.finish_reason == "stop":
            try:
                try:
                    result.json = json.loads(completion.text)
                except json.JSONDecodeError as exc:
                    raise OutputValidationError(
                        f"constrained output is not JSON ({exc}); the {result.grammar_backend} backend did not "
                        "enforce the schema",
                        detail={"text": completion.text},
                    ) from None
                validate_json(result.json, spec.source, schema_key=spec.key, trusted=not caller_schema)
            except OutputValidationError as exc:
                if not caller_schema:
                    raise  # our own IR/code schema: a server bug, reported as such
                raise SchemaNotEnforced(
                    f"{exc.message} (the {result.grammar_backend} backend accepted this schema but does not "
                    "enforce it the way JSON Schema defines it; simplify the failing part)",
                    detail={**exc.detail, "text": completion.text},
                ) from None
        return result

    # ------------------------------------------------------------------ IR

    def generate_ir(
        self,
        request: str,
        options: GenerateOptions = GenerateOptions(),
        *,
        on_text: OnText | None = None,
        cancel: CancelToken | None = None,
        samples: int = 3,
    ) -> IRResult:
        """Natural-language request -> validated IR, with what the request states carried in.

        Up to ``samples`` generations: the first as asked (greedy by
        default), later ones sampled with a new seed when the previous one
        looped (stopped while decoding), was truncated at a budget an IR
        should fit in, or wrote a predicate that is not one boolean
        expression over the parameters (a tuple, a constant, an unknown
        name). If every sample has bad predicates, the last one is kept
        with those predicates dropped and reported as error findings. The
        request's ``def`` line and its examples are then carried in
        verbatim (:func:`~lift_sys.ir.given.carry_given`, marked ``given``).
        """
        if not request or not request.strip():
            raise InvalidRequest("the request text is empty")
        if samples < 1:
            raise InvalidRequest("samples must be >= 1")
        resampled: list[str] = []
        last_truncation: TruncatedOutput | None = None
        resume: Continuation | None = None
        first_grammar = ir_grammar_for(request)  # fitted to the request's def line, if it has one
        can_continue = bool(getattr(self.engine, "can_continue", False))
        first_fit = first_grammar is _IR_GRAMMAR and can_continue  # fit to the sample's own signature
        grammar, fit_later, fitting = first_grammar, first_fit, False
        i = 0
        while i < samples:
            opts = resample_options(options, i)
            # Not the last sample: stop it at the first malformed predicate (the last one is kept and its
            # bad predicates dropped, so it runs to the end). The next sample continues this one from the
            # bad predicate's value where the engine can, instead of writing intent and signature again.
            # With no def line, the sample also stops once its signature is written, and goes on under the
            # grammar fitted to that signature (SignatureWatch; the same sample, not a resample).
            signature = SignatureWatch() if fit_later else None
            watch = FirstOf(signature, PredicateWatch() if i + 1 < samples else None)
            try:
                result = self.generate(ir_messages(request), grammar, opts, on_text=on_text, cancel=cancel,
                                       stop_runaway=True, stop_when=watch if watch.watches else None,
                                       continue_from=resume)
            except StoppedByCheck as exc:
                if signature is not None and watch.fired is signature:
                    grammar, fit_later, fitting = _own_grammar(signature.schema), False, True
                    resume = exc.continuation()
                    continue
                resume = exc.continuation() if can_continue else None
                resampled.append(f"malformed_predicate (stopped after {exc.completion_tokens} tokens"
                                 + (f", continued from character {resume.chars}" if resume else "")
                                 + f"): {exc.reason}")
                i, fitting = i + 1, False
                continue
            except TruncatedOutput as exc:
                # a loop or a cut: start afresh, signature and all
                resume, grammar, fitting = None, first_grammar, False
                fit_later = first_fit
                if not isinstance(exc, RunawayOutput) and options.max_tokens < _RESAMPLE_TRUNCATION_AT:
                    raise
                last_truncation, last_truncation_grammar = exc, grammar
                resampled.append(exc.kind)
                i += 1
                continue
            except EngineError:
                if not fitting:
                    raise
                # the written signature did not replay through its fitted grammar (an escape spelled
                # differently, say): this sample again, unfitted -- never an error for the caller
                resume, grammar, fit_later, fitting = None, first_grammar, False, False
                continue
            # generate() already validated the JSON against this schema; only pydantic remains.
            spec: IRSpec = carry_given(parse_ir_json(result.json, schema_checked=True), request)
            bad = predicate_problems(spec)
            if bad and i + 1 < samples:
                resampled.append("malformed_predicate: " + "; ".join(b.message for b in bad))
                resume, grammar, fitting = None, first_grammar, False
                fit_later = first_fit
                i += 1
                continue
            ir_result = self._finish_ir(spec, bad, result, samples=i + 1, resampled=resampled)
            ir_result.fitted = _fitted(grammar, first_grammar)
            return ir_result
        assert last_truncation is not None
        salvaged = salvage_examples(last_truncation.partial_text)
        # at least one complete example of its own: a sample that looped in its first example is no IR
        if salvaged is not None and salvaged[1] >= 1 and isinstance(last_truncation.result, GenerationResult):
            doc, kept = salvaged
            try:
                validate_json(doc, last_truncation_grammar.source, schema_key=last_truncation_grammar.key,
                              trusted=True)
                spec = carry_given(parse_ir_json(doc, schema_checked=True), request)
            except LiftError:
                raise last_truncation from None
            ir_result = self._finish_ir(spec, predicate_problems(spec), last_truncation.result, samples=samples,
                                        resampled=resampled)
            ir_result.fitted = _fitted(last_truncation_grammar, first_grammar)
            ir_result.checks.insert(0, IRCheck("warning", "/examples", f"every sample was cut in its examples "
                                               f"({last_truncation.kind}); the last one is kept with its {kept} "
                                               "complete example(s)"))
            return ir_result
        raise last_truncation

    def _finish_ir(self, spec: IRSpec, bad: list, result: GenerationResult, *, samples: int,
                   resampled: list[str]) -> IRResult:
        """Drop bad predicates, repeated assertions and unusable examples, with a finding for each."""
        dropped = {int(b.where.split("/")[2]) for b in bad}
        repeated = {j: why for j, why in _repeated_assertions(spec).items() if j not in dropped}
        if dropped or repeated:
            spec.assertions = [a for j, a in enumerate(spec.assertions) if j not in dropped and j not in repeated]
        unusable = _unusable_examples(spec)
        if unusable:
            spec.examples = [e for j, e in enumerate(spec.examples) if j not in unusable]
        ir = IR.from_spec(spec, model=result.completion.model or self.engine.model_name,
                          grammar_backend=result.grammar_backend or "")
        checks = ([IRCheck("error", b.where, b.message + " (dropped)") for b in bad]
                  + [IRCheck("warning", f"/assertions/{j}", why + " (dropped)") for j, why in repeated.items()]
                  + [IRCheck("warning", f"/examples/{j}", why + " (dropped)") for j, why in unusable.items()]
                  + check_ir(spec))
        return IRResult(ir=ir, checks=checks, generation=result, samples=samples, resampled=resampled)

    def generate_code(
        self,
        ir: IRSpec,
        options: GenerateOptions = GenerateOptions(),
        *,
        feedback: str | None = None,
        context: str | None = None,
        on_text: OnText | None = None,
        cancel: CancelToken | None = None,
        code_format: CodeFormat = "raw",
    ) -> CodeResult:
        """IR -> Python source of its function, statically checked.

        ``code_format="raw"`` (default): a fenced Python block under a regular
        grammar; ``"json"``: ``{"code": ...}``. Either way the result is the source.
        """
        if code_format == "json":
            result = self.generate(code_messages(ir, feedback, context), _CODE_GRAMMAR, options, on_text=on_text,
                                   cancel=cancel)
            code = str(result.json["code"]).strip("\n") + "\n"
        elif code_format == "raw":
            result = self.generate(raw_code_messages(ir, feedback, context), _CODE_BLOCK_GRAMMAR, options,
                                   on_text=on_text, cancel=cancel, stop_runaway=True)
            code = unfence(result.text)
        else:
            raise InvalidRequest(f"code_format must be raw or json, not {code_format!r}")
        return _code_result(code, ir, result)

    def generate_code_from_request(self, request: str, ir: IRSpec, options: GenerateOptions = GenerateOptions(), *,
                                   feedback: str | None = None, cancel: CancelToken | None = None) -> CodeResult:
        """The user's request -> the IR's function as a fenced Python block, statically checked against ``ir``.

        A second way to write a candidate (:func:`request_code_messages`):
        the IR fixes the name and is the oracle, the request is the prompt.
        """
        result = self.generate(request_code_messages(request, ir, feedback), _CODE_BLOCK_GRAMMAR, options,
                               cancel=cancel, stop_runaway=True)
        return _code_result(unfence(result.text), ir, result)

    def generate_verified_code(self, ir: IRSpec, options: GenerateOptions = GenerateOptions(), *,
                               attempts: int = 3, on_attempt=None, cancel: CancelToken | None = None,
                               context: str | None = None, code_format: CodeFormat = "raw"):
        """IR -> code: candidates verified in the sandbox, the best chosen by given checks then agreement.

        With ``context`` (the request the IR came from) and raw code,
        candidates alternate between the request and the IR as the prompt.
        See :func:`lift_sys.codegen.repair.generate_verified_code`.
        """
        from lift_sys.codegen.repair import generate_verified_code

        if attempts < 1:
            raise InvalidRequest("attempts must be >= 1")

        def generate(ir_: IRSpec, opts: GenerateOptions, feedback: str | None = None) -> CodeResult:
            return self.generate_code(ir_, opts, feedback=feedback, cancel=cancel, context=context,
                                      code_format=code_format)

        def from_request(ir_: IRSpec, opts: GenerateOptions, feedback: str | None = None) -> CodeResult:
            assert context is not None
            return self.generate_code_from_request(context, ir_, opts, feedback=feedback, cancel=cancel)

        with_request = bool(context and context.strip()) and code_format == "raw"
        return generate_verified_code(generate, ir, options, attempts=attempts, on_attempt=on_attempt,
                                      from_request=from_request if with_request else None,
                                      parallel=min(2, self.parallel_generations))

    def lift(self, request: str, options: GenerateOptions = GenerateOptions(), *, attempts: int = 3,
             on_attempt=None, cancel: CancelToken | None = None, code_format: CodeFormat = "raw"):
        """Natural language -> IR -> verified code (the CLI's ``pipeline`` and ``/v1/pipeline``).

        The code generator sees the request next to the IR (the IR is a
        summary of it). Returns ``(IRResult, PipelineResult)``.
        """
        ir_result = self.generate_ir(request, options, cancel=cancel)
        piped = self.generate_verified_code(ir_result.ir, options, attempts=attempts, on_attempt=on_attempt,
                                            cancel=cancel, context=request, code_format=code_format)
        return ir_result, piped

    # ------------------------------------------------------------------ status

    def _count(self, result: GenerationResult) -> None:
        with self._counters_lock:
            c = self._counters
            c.requests += 1
            c.prompt_tokens += result.completion.prompt_tokens
            c.completion_tokens += result.completion.completion_tokens
            c.forced_tokens += result.completion.forced_tokens

    def _count_failure(self, exc: Exception) -> None:
        kind = getattr(exc, "kind", exc.__class__.__name__)
        with self._counters_lock:
            self._counters.failures[kind] = self._counters.failures.get(kind, 0) + 1

    def warm_up(self) -> int:
        """Compile the IR and code grammars and prefill the prompt prefix every IR request shares.

        Returns the prompt tokens processed. Why: on a 2-core CPU the first
        IR request otherwise pays ~1 s building the grammar backend's
        tokenizer and compiling, and ~5 s prefilling the ~460-token system
        prompt + worked example. The local engine keeps the KV cache of the
        longest common prefix between requests, so afterwards the first real
        request starts decoding in a few hundred ms (measured: TTFT 5.7 s ->
        0.27 s, compile 0.97 s -> ~0). A remote engine's server has its own
        caches: nothing to do.
        """
        if self.engine.vocabulary() is None:
            return 0
        for grammar in _BUILTINS:
            self.constraint_for(grammar)
        completion = self.engine.generate(ir_messages("warm-up"), GenerateOptions(max_tokens=1, temperature=0.0))
        return completion.prompt_tokens - completion.cached_prompt_tokens

    # ------------------------------------------------------------------ what fronts may ask

    @property
    def is_local(self) -> bool:
        """The model runs in this process and masks here (llama.cpp); a remote engine takes the schema."""
        return self.engine.vocabulary() is not None

    @property
    def parallel_generations(self) -> int:
        """Generations that proceed at once without waiting for each other.

        The engine's ``slots`` when it reports them (``LIFT_SLOTS`` locally:
        with more than one, llama.cpp decodes them in the same steps);
        otherwise 1 locally and 8 for a remote engine -- the server behind
        it batches (SGLang), this side only waits on the network.
        """
        return max(1, int(self.engine.info().get("slots", 1 if self.is_local else 8)))

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def engine_info(self) -> dict[str, Any]:
        """Static facts about the engine (model, engine kind, context, load time)."""
        return self.engine.info()

    def cache_stats(self):
        """The grammar compile cache's counters (hits, misses, ...)."""
        return self.grammar_cache.stats

    def health(self) -> dict[str, Any]:
        """Cheap, never touches the model."""
        info = self.engine.info()
        return {
            "status": "ok",
            "ready": True,
            "model": info.get("model", self.engine.model_name),
            "engine": info.get("engine", self.engine.name),
            "grammar_backend": self.default_backend,
            "version": __version__,
            "uptime_s": round(time.time() - self._started, 3),
            "sandbox": self._sandbox,
        }

    def stats(self) -> dict[str, Any]:
        with self._counters_lock:
            c = self._counters
            counters = {
                "requests": c.requests,
                "failures": dict(c.failures),
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "forced_tokens": c.forced_tokens,
            }
        cache = self.grammar_cache.stats
        return {
            **counters,
            "grammar_cache": {"hits": cache.hits, "misses": cache.misses, "size": cache.size},
            "engine": self.engine.info(),
        }
