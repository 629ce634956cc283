"""Validating JSON against a JSON Schema: every constrained output, any schema, nothing fetched.

Generic (no IR here): ``/v1/generate``, chat completions and the IR path
all check their output with it. Two validators on purpose: jsonschema-rs
answers valid/invalid in ~2 µs where python-jsonschema takes ~1.5 ms on an
IR, and python-jsonschema explains a failure of our own schemas best.
Neither ever fetches a ``$ref`` or ``$schema`` (see ``_refuse_retrieval``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import jsonschema
import jsonschema_rs

from lift_sys.errors import InvalidRequest, OutputValidationError

_FAST: dict[str, Any] = {}
_FAST_LOCK = threading.Lock()


def _refuse_retrieval(uri: str) -> Any:
    """Retriever for both validators: nothing outside the schema document is ever fetched.

    jsonschema-rs fetches an ``http://`` ``$ref`` or an unknown ``$schema``
    with its default retriever, and python-jsonschema's default registry
    used ``urlopen``; a schema from a client made the server open
    connections. The meta-schemas of the known drafts are bundled with both
    libraries and resolve without this.
    """
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)


def _py_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """python-jsonschema, 2020-12, formats asserted, with a registry that refuses every retrieval."""
    from referencing import Registry

    return jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=_refuse_retrieval),
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _rs_validator(schema: dict[str, Any]) -> Any:
    """jsonschema-rs, 2020-12, formats asserted, with a retriever that refuses every retrieval.

    Formats asserted: 2020-12 makes ``format`` an annotation by default,
    but a caller who writes ``"format": "date"`` wants a date, the grammars
    constrain it, and enforced mode leaves what a grammar cannot express
    of it to this validator. Without the assertion that promise was empty:
    ``{"d": "2021-02-29"}`` and ``{"u": "not a uri"}`` passed as
    "validated" (JSTS optional/format: both grammars let some invalid
    dates, times and hostnames through). Unknown formats stay annotations.
    """
    return jsonschema_rs.Draft202012Validator(schema, retriever=_refuse_retrieval, validate_formats=True)


def _cached_validator(schema: dict[str, Any], key: str) -> Any:
    validator = _FAST.get(key)
    if validator is None:
        try:
            validator = _rs_validator(schema)
        except Exception:  # noqa: BLE001 - e.g. a regex dialect jsonschema-rs refuses: use jsonschema alone
            validator = _py_validator(schema)
        with _FAST_LOCK:
            if len(_FAST) >= 256:
                _FAST.clear()
            _FAST[key] = validator
    return validator


def prepare_validator(schema: dict[str, Any], *, schema_key: str) -> None:
    """Build (and cache) the jsonschema-rs validator for a *caller's* schema, before generating.

    A schema jsonschema-rs cannot read is refused here (400), instead of
    being checked after generation by python-jsonschema: that fallback runs
    the caller's regexes with Python's backtracking ``re`` on model output,
    holding the GIL -- a pattern like ``^([a-z]+|[[:digit:]])+$`` (a POSIX
    class to the backend, something else to ``re``) could freeze the server.
    """
    if isinstance(_FAST.get(schema_key), jsonschema_rs.Validator):
        return
    try:
        validator = _rs_validator(schema)
    except Exception as exc:  # noqa: BLE001 - a jsonschema-rs error naming what it cannot read
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidRequest(
            f"the output validator cannot read this schema ({message[:200]}); simplify it",
            detail={"validator": "jsonschema-rs"},
        ) from None
    with _FAST_LOCK:
        if len(_FAST) >= 256:
            _FAST.clear()
        _FAST[schema_key] = validator


def _rs_error(validator: Any, value: Any) -> tuple[str, str, str]:
    first = next(iter(validator.iter_errors(value)))
    keyword = next((str(p) for p in reversed(first.schema_path) if isinstance(p, str)), "unknown")
    return "/" + "/".join(map(str, first.instance_path)), first.message, keyword


def schema_error(value: Any, schema: dict[str, Any], *, schema_key: str | None = None,
                 trusted: bool = True) -> tuple[str, str, str] | None:
    """The first way ``value`` fails ``schema``, as (JSON pointer, message, keyword); None if valid.

    Every constrained generation is checked, so the check must be cheap:
    jsonschema-rs answers valid/invalid in ~2 µs on an IR where the pure
    Python ``jsonschema`` takes ~1.5 ms. A failure is rare (a backend
    ignored part of the schema). For our own schemas (``trusted``) it is
    explained by ``jsonschema``'s ``best_match``, which picks the most
    relevant error of an ``anyOf``; a caller's schema is explained by
    jsonschema-rs itself, so the caller's regexes never run in Python's
    backtracking ``re``. ``schema_key`` (``GrammarSpec.key``) saves
    re-serializing a known schema to find its cached validator.
    """
    key = schema_key or json.dumps(schema, sort_keys=True)
    validator = _cached_validator(schema, key)
    if validator.is_valid(value):
        return None
    if not trusted and isinstance(validator, jsonschema_rs.Validator):
        return _rs_error(validator, value)
    error = jsonschema.exceptions.best_match(_py_validator(schema).iter_errors(value))
    if error is not None:
        return "/" + "/".join(map(str, error.absolute_path)), error.message, str(error.validator)
    pointer, message, _ = _rs_error(validator, value)  # the validators disagree: say what jsonschema-rs saw
    return pointer, message, "unknown"


def validate_json(value: Any, schema: dict[str, Any], *, schema_key: str | None = None, trusted: bool = True) -> None:
    """Validate ``value`` against ``schema``; raise OutputValidationError naming the first problem.

    ``trusted=False`` for a caller's schema (see :func:`schema_error`). A
    reference the validators cannot resolve (they never fetch) is the
    schema's fault, not the output's: InvalidRequest.
    """
    from referencing.exceptions import Unresolvable

    try:
        error = schema_error(value, schema, schema_key=schema_key, trusted=trusted)
    except Unresolvable as exc:
        raise InvalidRequest(f"the schema has a reference that cannot be resolved ({exc}); nothing is fetched") from None
    if error is not None:
        where, message, keyword = error
        raise OutputValidationError(
            f"output does not match the schema at {where}: {message}",
            detail={"pointer": where, "validator": keyword},
        )
