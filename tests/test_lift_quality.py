"""Issue 11's pieces, in milliseconds: given examples, predicate lint, runaway, IR resampling, selection.

The real-model pipeline is exercised in test_pipeline.py; here the fake
engine scripts exactly the failure each piece must handle.
"""

from __future__ import annotations

import json

import pytest

from lift_sys.codegen.prompt import fenced
from lift_sys.codegen.repair import generate_verified_code
from lift_sys.errors import RunawayOutput
from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.generation.runaway import is_runaway
from lift_sys.ir.given import carry_given, given_examples, request_signature
from lift_sys.ir.models import IRSpec
from lift_sys.ir.prompt import EXAMPLE_IR
from lift_sys.ir.validate import predicate_problem, spec_from_document
from lift_sys.service.core import GenerateOptions, InferenceService

DOCSTRING_REQUEST = '''
def run_length(text: str) -> str:
    """Run-length encode text.
    >>> run_length('aaabcc')
    'a3b1c2'
    >>> run_length('')
    ''
    >>> run_length(None)
    Traceback (most recent call last):
        ...
    TypeError: text must be a str
    """
'''


# ---------------------------------------------------------------------------- given examples


def test_doctests_with_values_and_tracebacks_are_read_verbatim():
    name, params, returns = request_signature(DOCSTRING_REQUEST)
    assert (name, [p.name for p in params], returns) == ("run_length", ["text"], "str")
    found = given_examples(DOCSTRING_REQUEST, name, ["text"])
    assert [(e.inputs, e.output, e.raises, e.given) for e in found] == [
        ({"text": "aaabcc"}, "a3b1c2", None, True),
        ({"text": ""}, "", None, True),
        ({"text": None}, None, "TypeError", True),
    ]


@pytest.mark.parametrize("text, want", [
    ("add(2, 3) == 5", [({"a": 2, "b": 3}, 5)]),
    ("For example add(1, b=4) -> 5.", [({"a": 1, "b": 4}, 5)]),
    ("add([1, 2], [3]) ➞ [1, 2, 3]", [({"a": [1, 2], "b": [3]}, [1, 2, 3])]),
    ("add(1, 2) should return 3, and add(0, 0) returns 0", [({"a": 1, "b": 2}, 3), ({"a": 0, "b": 0}, 0)]),
    # not examples: a definition ("="), an expression after the arrow, a call with a name in it
    ("add(1, 1) = 2 by definition", []),
    ("add(5, 6) -> 19 - 5 - 6 = 8", []),
    ("add(x, 2) == 4", []),
    ("add(1) == 1", []),  # the wrong number of arguments for add(a, b)
])
def test_call_examples_in_prose(text, want):
    assert [(e.inputs, e.output) for e in given_examples(text, "add", ["a", "b"])] == want


def test_becomes_examples_only_for_one_parameter_functions():
    text = "Compress a string: 'aaabcc' becomes 'a3b1c2' and 'xy' becomes 'x1y1'."
    assert [(e.inputs, e.output) for e in given_examples(text, "compress", ["s"])] == [
        ({"s": "aaabcc"}, "a3b1c2"), ({"s": "xy"}, "x1y1")]
    assert given_examples(text, "compress", ["s", "n"]) == []


def test_nothing_in_a_request_is_executed():
    hostile = "f(__import__('os').system('touch /tmp/pwned')) == 1\n>>> f(open('/etc/passwd'))\n1\n"
    assert given_examples(hostile, "f", ["x"]) == []


def test_carry_given_fixes_the_signature_and_puts_given_examples_first():
    ir = IRSpec.model_validate(EXAMPLE_IR)  # count_vowels(text), three invented examples
    request = ("def countVowels(s):\n    \"\"\"\n    >>> countVowels('Hello')\n    2\n    >>> countVowels('sky')\n"
               "    0\n    \"\"\"\n")
    out = carry_given(ir, request)
    assert out.signature.name == "countVowels" and [p.name for p in out.signature.parameters] == ["s"]
    assert [(e.inputs, e.output, e.given) for e in out.examples[:2]] == [({"s": "Hello"}, 2, True), ({"s": "sky"}, 0, True)]
    assert all(not e.given for e in out.examples[2:])


def test_client_ir_examples_are_given_unless_marked_invented():
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["examples"][1]["given"] = False  # as /v1/ir writes an invented one
    spec = spec_from_document(doc)
    assert [e.given for e in spec.examples] == [True, False, True]


# ---------------------------------------------------------------------------- predicates and runaway


@pytest.mark.parametrize("predicate, kind, problem", [
    ("n == 0 or fib(n) == result,", "postcondition", "tuple"),
    ("True", "postcondition", "bare constant"),
    ("len(lst) > 0", "precondition", "unknown name lst"),
    ("result >= 0", "precondition", "unknown name result"),
    ("math.sqrt(n) >= 0", "postcondition", "unknown name math"),
    ("isinstance(n,", "precondition", "not a Python expression"),
    ("all(x >= 0 for x in range(n)) and result >= 0", "postcondition", None),
    ("fib(n + 1) >= result", "postcondition", None),
])
def test_predicates_must_be_one_boolean_expression_over_known_names(predicate, kind, problem):
    found = predicate_problem(predicate, ["n"], "fib", kind)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_runaway_detection():
    counting = '{"examples":[{"inputs":{"x":[' + ",".join(str(i) for i in range(1, 80))
    assert is_runaway(counting)
    assert is_runaway('"description":"' + "and then the list " * 12)
    normal = json.dumps(EXAMPLE_IR, separators=(",", ":"))
    assert not is_runaway(normal) and not is_runaway('{"x":[' + ",".join(str(i) for i in range(1, 25)) + "]}")
    assert not is_runaway(normal, json_output=True)
    # A template counting inside one JSON string (a long period, never verbatim): a loop in JSON only.
    counting_predicate = '{"predicate":"result == f(n-1) + f(n-2)' + "".join(
        f" or f(n-{2 * i + 1}) == f(n-{2 * i + 2})" for i in range(1, 12))
    assert is_runaway(counting_predicate, json_output=True) and not is_runaway(counting_predicate)
    # ... but a list of examples that counts is JSON structure, not one string: no loop.
    examples = '{"examples":[' + ",".join(f'{{"inputs":{{"n":{i}}},"output":{i * i}}}' for i in range(12))
    assert not is_runaway(examples, json_output=True)
    # Three repeats of a sortedness template inside a predicate are not enough (120 characters of one template).
    sorted_pred = '{"predicate":"' + " and ".join(f"r[{i}] <= r[{i + 1}]" for i in range(3)) + '"'
    assert not is_runaway(sorted_pred, json_output=True)


def _ir_text(predicate: str = "result >= 0", long_list: bool = False) -> str:
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["assertions"][1]["predicate"] = predicate
    text = json.dumps(doc, separators=(",", ":"))
    if long_list:
        return text.replace('"Hello"', '"' + "ab" * 400)  # the fake engine streams it; the watch stops it
    return text


def test_ir_runaway_is_stopped_while_decoding_and_resampled():
    engine = FakeEngine([_ir_text(long_list=True), _ir_text()])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert result.samples == 2 and result.resampled == ["runaway_output"]
    first_opts, second_opts = engine.calls[0][1], engine.calls[1][1]
    assert second_opts.temperature > 0 and second_opts.seed != first_opts.seed


def test_ir_runaway_every_time_is_reported_as_runaway_with_the_partial_text():
    engine = FakeEngine([_ir_text(long_list=True)])
    with pytest.raises(RunawayOutput) as err:
        InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000), samples=2)
    assert len(engine.calls) == 2 and "abababab" in err.value.partial_text
    assert err.value.to_dict()["type"] == "runaway_output"


def test_every_sample_looping_in_its_examples_keeps_the_complete_ones_with_a_finding():
    """The part before the loop is complete and valid: an IR with fewer examples, said so, not no IR."""
    looping = _ir_text().replace('{"text":""}', '{"text":"' + "ab" * 400 + '"}')  # the loop in example 1
    engine = FakeEngine([looping])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert len(engine.calls) == 3 and result.resampled == ["runaway_output"] * 3
    assert [e.inputs for e in result.ir.examples] == [{"text": "Hello"}] and result.ir.holes == []
    assert result.checks[0].where == "/examples" and "1 complete example" in result.checks[0].message
    assert [a.predicate for a in result.ir.assertions] == ["isinstance(text, str)", "result >= 0"]
    assert result.fitted == ""  # a remote-kind engine: the generic grammar throughout


def test_malformed_predicates_are_resampled_then_dropped_with_a_finding():
    engine = FakeEngine([_ir_text("0 <= result, result <= len(text)"), _ir_text("0 <= result <= len(text)")])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert result.samples == 2 and result.resampled[0].startswith("malformed_predicate")
    assert result.ir.assertions[1].predicate == "0 <= result <= len(text)"

    engine = FakeEngine([_ir_text("0 <= result <= len(txt)")])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000), samples=2)
    assert [a.predicate for a in result.ir.assertions] == ["isinstance(text, str)"]
    assert any("unknown name txt" in c.message and "dropped" in c.message for c in result.checks)


def test_a_malformed_predicate_stops_its_sample_while_decoding_before_the_examples():
    from lift_sys.generation.engines.fake import pieces

    bad = _ir_text("0 <= result, result <= len(text)")
    engine = FakeEngine([bad, _ir_text("0 <= result <= len(text)")])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert result.samples == 2 and result.ir.assertions[1].predicate == "0 <= result <= len(text)"
    reason = result.resampled[0]
    assert reason.startswith("malformed_predicate (stopped after ") and "a tuple" in reason, reason
    stopped = int(reason.split("stopped after ")[1].split(" ")[0])
    assert stopped <= len(pieces(bad[:bad.index('"examples"')])) < len(pieces(bad))  # the examples never decoded
    # the last sample is kept whole: its bad predicate is dropped, not stopped
    engine = FakeEngine([bad])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000), samples=1)
    assert result.samples == 1 and len(result.ir.examples) > 0
    assert any("a tuple" in c.message and "dropped" in c.message for c in result.checks)


def test_a_stopped_sample_is_continued_from_its_bad_predicate_where_the_engine_can():
    """Intent, signature and the good assertions are kept; only the bad predicate's value is sampled again."""
    bad, good = _ir_text("0 <= result, result <= len(text)"), _ir_text("0 <= result <= len(text)")
    cut = bad.index('"predicate":"0 <= result,') + len('"predicate":"')
    # the first sample stops twice: after its signature (to fit the grammar to it, ir/typed.py), then at the
    # bad predicate; the second sample continues from the bad predicate's value
    engine = FakeEngine([bad, bad, good], can_continue=True)
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert result.samples == 2 and result.ir.assertions[1].predicate == "0 <= result <= len(text)"
    fit, continuation = engine.continuations
    assert bad[:fit.chars].endswith('"returns":"int"}')
    assert continuation.chars == cut and continuation.completion.text == bad[:len(continuation.completion.text)]
    assert f"continued from character {cut}" in result.resampled[0] and "a tuple" in result.resampled[0]
    assert engine.calls[2][1].temperature > 0  # the value is sampled, not the greedy choice again
    # A remote-kind engine cannot continue: the next sample starts afresh.
    engine = FakeEngine([bad, good])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert result.samples == 2 and engine.continuations == [] and "continued" not in result.resampled[0]


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
def test_the_generation_grammar_cannot_end_a_predicate_with_a_comma(backend):
    """Caught *while* decoding: the grammar itself has no trailing comma (a tuple) and no line break."""
    from lift_sys.generation.grammar import GrammarSpec
    from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance
    from lift_sys.generation.grammar.llguidance_backend import LLGuidanceBackend
    from lift_sys.generation.grammar.xgrammar_backend import XGrammarBackend
    from lift_sys.ir.models import ir_generation_schema

    assertion = ir_generation_schema()["$defs"]["Assertion"]["properties"]["predicate"]
    schema = {"type": "object", "properties": {"p": assertion}, "required": ["p"], "additionalProperties": False}
    from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS

    vocab = byte_vocabulary()
    spec = GrammarSpec.json_schema(schema)
    TRUSTED_SCHEMAS.add(spec.key)  # a piece of our own IR schema (xgrammar may serve it narrower: no escapes)
    try:
        compiled = {"llguidance": LLGuidanceBackend, "xgrammar": XGrammarBackend}[backend]().compile(spec, vocab)
    finally:
        TRUSTED_SCHEMAS.discard(spec.key)

    def accepts(predicate: str) -> bool:
        return run_instance(compiled, json.dumps({"p": predicate}, separators=(",", ":"), ensure_ascii=False),
                            vocab).accepted

    assert accepts("0 <= result <= len(text)") and accepts("f(a, b) == (1, 2)") and accepts("s != 'é'")
    assert not accepts("0 <= result <= len(text),") and not accepts("n > 0, ") and not accepts("a\nb")


def test_repeated_assertions_are_dropped_with_a_finding():
    doc = json.loads(_ir_text())
    doc["assertions"] = doc["assertions"] + [dict(doc["assertions"][1], predicate="  " + doc["assertions"][1]["predicate"])]
    engine = FakeEngine([json.dumps(doc, separators=(",", ":"))])
    result = InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=1000))
    assert [a.predicate for a in result.ir.assertions] == ["isinstance(text, str)", "result >= 0"]
    assert any(c.where == "/assertions/2" and "repeats" in c.message for c in result.checks)


def test_a_small_budget_truncation_is_the_callers_and_is_not_resampled():
    engine = FakeEngine([_ir_text()])
    with pytest.raises(Exception) as err:
        InferenceService(engine).generate_ir("count the vowels", GenerateOptions(max_tokens=20))
    assert type(err.value).__name__ == "TruncatedOutput" and len(engine.calls) == 1


# ---------------------------------------------------------------------------- selection

GOOD = ("def count_vowels(text: str) -> int:\n    if not isinstance(text, str):\n        raise TypeError('no')\n"
        "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n")
OFF_BY_Y = GOOD.replace("'aeiou'", "'aeiouy'")


def _invented_ir(wrong_output_for_sky: int) -> IRSpec:
    """count_vowels with one given example and one *invented* example whose output may be wrong."""
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["examples"] = [{"inputs": {"text": "Hello"}, "output": 2, "given": True},
                       {"inputs": {"text": "sky"}, "output": wrong_output_for_sky, "given": False}]
    return spec_from_document(doc)


def _scripted(codes):
    it = iter(codes)
    service = InferenceService(FakeEngine(lambda m, p, c: fenced(next(it))))
    return lambda ir, opts, feedback=None: service.generate_code(ir, opts, feedback=feedback)


def test_agreeing_candidates_make_a_wrong_invented_example_suspect_not_blocking():
    ir = _invented_ir(wrong_output_for_sky=1)  # the model invented: "sky" has 1 vowel
    result = generate_verified_code(_scripted([GOOD, GOOD, GOOD]), ir, GenerateOptions(), attempts=3)
    checks = {c.name: c for c in result.report.checks}
    assert checks["example[0]"].provenance == "given" and checks["example[0]"].passed
    assert checks["example[1]"].scope == "suspect" and checks["example[1]"].provenance == "suspect"
    assert result.verified and result.code == GOOD and result.best.agreement == 3
    assert "given checks 1/1" in result.selection["why"]


def test_with_no_given_check_agreeing_candidates_contradicted_by_the_ir_are_not_verified():
    """Suspect is not the same as wrong: with nothing the user stated, the consensus and the IR are two readings
    and neither decides (held out, HumanEval/41: two agreeing candidates, 7 contradicting checks, both wrong)."""
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["examples"] = [{"inputs": {"text": "Hello"}, "output": 2, "given": False},
                       {"inputs": {"text": "sky"}, "output": 1, "given": False}]
    result = generate_verified_code(_scripted([GOOD, GOOD, GOOD]), spec_from_document(doc), GenerateOptions(),
                                    attempts=3)
    checks = {c.name: c for c in result.report.checks}
    assert checks["example[1]"].provenance == "suspect" and result.code == GOOD
    assert not result.verified and [c.name for c in result.report.failures()] == ["consensus"]
    # the same candidates with the invented example right: every check agrees, verified
    doc["examples"][1]["output"] = 0
    result = generate_verified_code(_scripted([GOOD, GOOD, GOOD]), spec_from_document(doc), GenerateOptions(),
                                    attempts=3)
    assert result.verified


def test_a_suspect_check_another_plausible_candidate_passes_withholds_verified():
    """The cluster's failed checks are only suspect if no candidate that keeps the given checks satisfies them."""
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["examples"] = [{"inputs": {"text": "Hello"}, "output": 2, "given": True},
                       {"inputs": {"text": "sky"}, "output": 1, "given": False},  # the 'y' reading
                       {"inputs": {"text": "why"}, "output": 0, "given": False}]  # the plain reading
    result = generate_verified_code(_scripted([GOOD, GOOD, GOOD, OFF_BY_Y]), spec_from_document(doc),
                                    GenerateOptions(), attempts=4)
    assert result.code == GOOD and result.best.agreement == 3
    assert not result.verified
    [contest] = result.report.failures()[-1:]
    assert contest.name == "agreement" and "candidate 3" in contest.detail and "example[1]" in contest.detail
    # a lone dissenter that fails a given check is no rival: the cluster stays verified
    wrong = OFF_BY_Y.replace("'aeiouy'", "'aeiouyl'")  # "Hello" -> 4
    result = generate_verified_code(_scripted([GOOD, GOOD, GOOD, wrong]), spec_from_document(doc),
                                    GenerateOptions(), attempts=4)
    assert result.code == GOOD and result.verified


def test_agreement_only_among_samples_of_one_prompt_does_not_verify():
    """Two samples of one prompt share its misreading: corroboration must come from the other prompt."""
    ir = _invented_ir(wrong_output_for_sky=0)
    broken = GOOD.replace("return sum", "return 1 + sum")  # fails the given example: no rival, no partner

    def run(codes):
        it = iter(codes)
        service = InferenceService(FakeEngine(lambda m, p, c: fenced(next(it))))
        return service.generate_verified_code(ir, GenerateOptions(), attempts=4, context="count the vowels")

    result = run([GOOD, broken, GOOD, broken])  # sources: request, ir, request, ir
    assert result.code == GOOD and result.best.agreement == 2 and not result.verified
    assert "same prompt (request)" in result.report.failures()[-1].detail
    result = run([GOOD, GOOD, broken, broken])  # the request-written and the IR-written candidate agree
    assert result.code == GOOD and result.verified


def test_a_lone_candidate_cannot_overrule_the_ir():
    ir = _invented_ir(wrong_output_for_sky=1)
    result = generate_verified_code(_scripted([GOOD]), ir, GenerateOptions(), attempts=1)
    checks = {c.name: c for c in result.report.checks}
    assert checks["example[1]"].scope == "code" and checks["example[1]"].provenance == "invented"
    assert not result.verified


def test_agreement_with_the_ir_beats_a_larger_cluster_only_by_dual_agreement():
    ir = _invented_ir(wrong_output_for_sky=1)  # OFF_BY_Y says "sky" -> 1: agrees with the invented example
    result = generate_verified_code(_scripted([GOOD, OFF_BY_Y]), ir, GenerateOptions(), attempts=2)
    assert result.code == OFF_BY_Y and len(result.attempts) == 2
    assert {c.provenance for c in result.report.checks if c.name.startswith("example")} == {"given", "agreed"}
    # ...but one candidate agreeing with the IR, alone, is not verified: nothing corroborates it
    assert not result.verified
    assert [c.provenance for c in result.report.failures()] == ["probe"]


def test_given_checks_outrank_agreement():
    ir = _invented_ir(wrong_output_for_sky=0)
    wrong = GOOD.replace("'aeiou'", "'ae'")  # "Hello" -> 1: fails the given example
    result = generate_verified_code(_scripted([wrong, wrong, GOOD, GOOD]), ir, GenerateOptions(), attempts=4)
    assert result.code == GOOD and result.verified and result.best.index == 2 and result.best.agreement == 2
    # the candidates after the first were told about the failed *given* check, never about invented ones
    assert "example[0]" in result.attempts[1].feedback and "example[1]" not in result.attempts[1].feedback


def test_with_the_request_at_hand_candidates_alternate_between_request_and_ir_prompts():
    """The request-written candidate comes first; the IR-written one next; feedback reaches both."""
    ir = _invented_ir(wrong_output_for_sky=0)
    wrong = GOOD.replace("'aeiou'", "'ae'")  # fails the given example "Hello" -> 2
    seen: list[str] = []

    def script(messages, prompt, call):
        seen.append(messages[-1]["content"])
        return fenced([wrong, wrong, GOOD, GOOD][len(seen) - 1])

    service = InferenceService(FakeEngine(script))
    request = "Count the vowels (a, e, i, o, u, either case) in a string; count_vowels('Hello') == 2."
    result = service.generate_verified_code(ir, GenerateOptions(), attempts=4, context=request)
    assert [a.source for a in result.attempts] == ["request", "ir", "request", "ir"]
    assert [a.temperature for a in result.attempts] == [0.0, 0.0, 0.8, 0.8]
    assert result.best.index == 2 and result.best.agreement == 2
    # the request prompt is the request plus the IR's def line, never the IR's JSON (or its invented examples)
    assert seen[0].startswith(request) and "def count_vowels(text: str) -> int:" in seen[0]
    assert '"sky"' not in seen[0] and "IR:" not in seen[0]
    assert "IR:" in seen[1] and "example[0]" in seen[1] and "example[0]" in seen[2]
    assert result.code == GOOD and result.verified and result.best.source == "request"
    assert "from the request" in result.selection["why"]


def test_with_parallel_slots_candidates_come_in_waves_and_feedback_reaches_the_next_wave():
    """Two candidates of a wave are written at the same time (a barrier both must reach proves it);
    the next wave is told what the first one failed."""
    import threading

    ir = _invented_ir(wrong_output_for_sky=0)
    wrong = GOOD.replace("'aeiou'", "'ae'")  # fails the given example "Hello" -> 2
    both_inside = threading.Barrier(2, timeout=60)
    calls: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def write(i: int):
        def gen(ir_, opts, feedback=None):
            with lock:
                calls.append((i, feedback))
            if i < 2:
                both_inside.wait()  # raises BrokenBarrierError if the wave ran one at a time
            return _scripted([GOOD if i >= 2 else wrong])(ir_, opts, feedback=feedback)
        return gen

    counter = iter(range(100))
    lock2 = threading.Lock()

    def next_writer(ir_, opts, feedback=None):
        with lock2:
            i = next(counter)
        return write(i)(ir_, opts, feedback=feedback)

    result = generate_verified_code(next_writer, ir, GenerateOptions(), attempts=4, parallel=2)
    assert [a.index for a in result.attempts] == [0, 1, 2, 3]
    first_wave = [f for i, f in calls if i < 2]
    assert first_wave == [None, None]
    assert all(f is not None and "example[0]" in f for i, f in calls if i >= 2)
    assert result.code == GOOD and result.best.index in (2, 3) and result.best.agreement == 2


def test_a_request_with_its_own_def_line_is_not_told_the_signature_twice():
    from lift_sys.codegen.prompt import request_code_messages

    ir = _invented_ir(wrong_output_for_sky=0)
    messages = request_code_messages("def count_vowels(text):\n    \"\"\"Count vowels.\"\"\"\n", ir)
    assert "The function to write" not in messages[-1]["content"]
    assert "The function to write: def count_vowels(text: str) -> int:" in request_code_messages("count vowels", ir)[-1]["content"]


def test_without_a_request_every_candidate_is_written_from_the_ir():
    ir = _invented_ir(wrong_output_for_sky=0)
    wrong = GOOD.replace("'aeiou'", "'ae'")
    result = generate_verified_code(_scripted([wrong, GOOD]), ir, GenerateOptions(), attempts=2)
    assert [a.source for a in result.attempts] == ["ir", "ir"]


CLOSE_ADJACENT = ("def has_close(numbers: list[float], threshold: float) -> bool:\n"
                  "    return any(abs(a - b) < threshold for a, b in zip(numbers, numbers[1:]))\n")
CLOSE_ANY_PAIR = ("def has_close(numbers: list[float], threshold: float) -> bool:\n"
                  "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")


def _close_ir() -> IRSpec:
    """HumanEval/0's shape: two given doctests that an adjacent-pairs-only function also passes."""
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["signature"] = {"name": "has_close", "returns": "bool", "parameters": [
        {"name": "numbers", "type_hint": "list[float]"}, {"name": "threshold", "type_hint": "float"}]}
    doc["assertions"] = []
    doc["examples"] = [{"inputs": {"numbers": [1.0, 2.0, 3.0], "threshold": 0.5}, "output": False, "given": True},
                       {"inputs": {"numbers": [1.0, 2.8, 3.0, 4.0, 5.0, 2.0], "threshold": 0.3}, "output": True,
                        "given": True}]
    return spec_from_document(doc)


def test_probes_are_the_examples_inputs_perturbed_never_repeated():
    from lift_sys.codegen.probes import probe_inputs

    ir = _close_ir()
    probes = probe_inputs(ir)
    assert len(probes) == 12 and len({json.dumps(p, sort_keys=True) for p in probes}) == 12
    assert all(set(p) == {"numbers", "threshold"} for p in probes)
    assert {"numbers": [1.0, 3.0, 5.0, 2.8, 4.0, 2.0], "threshold": 0.3} in probes  # reordered: pairs no longer adjacent
    assert not any(p == e.inputs for p in probes for e in ir.examples)


def test_two_functions_the_checks_cannot_tell_apart_are_not_verified():
    """Both pass the two doctests; a probe shows they are different functions: neither is verified."""
    result = generate_verified_code(_scripted([CLOSE_ADJACENT, CLOSE_ANY_PAIR]), _close_ir(), GenerateOptions(),
                                    attempts=2)
    assert all(a.report.verified for a in result.attempts)  # each passes every check on its own
    assert not result.verified and result.code == CLOSE_ADJACENT
    contest = [c for c in result.report.checks if c.name == "agreement"]
    assert contest and contest[0].provenance == "probe" and not contest[0].passed
    assert "candidate 1 also passes every check" in contest[0].detail and "numbers=" in contest[0].detail
    assert result.selection["contested"] == contest[0].detail


def test_a_larger_agreeing_group_wins_and_is_verified():
    result = generate_verified_code(_scripted([CLOSE_ANY_PAIR, CLOSE_ANY_PAIR, CLOSE_ANY_PAIR]), _close_ir(),
                                    GenerateOptions(), attempts=3)
    assert len(result.attempts) == 3 and result.best.agreement == 3 and result.verified
    assert result.selection["contested"] is None


def test_one_wrong_candidate_passing_every_check_is_enough_to_withhold_verified():
    """HumanEval/0: two candidates wrote the same adjacent-only mistake and agreed; a later, right one
    passing every check too must contest them, or two agreeing wrong programs are 'verified'."""
    result = generate_verified_code(_scripted([CLOSE_ADJACENT, CLOSE_ADJACENT, CLOSE_ANY_PAIR]), _close_ir(),
                                    GenerateOptions(), attempts=3)
    assert len(result.attempts) == 3  # no early stop at the first two agreeing
    assert result.code == CLOSE_ADJACENT and result.best.agreement == 2
    assert not result.verified and "candidate 2 also passes every check" in result.selection["contested"]


def test_a_probe_one_candidate_raises_on_is_not_a_disagreement():
    """Perturbed inputs leave the domain; raising there or returning is a free choice, not a different function."""
    strict = CLOSE_ANY_PAIR.replace("    return", "    if threshold > 0.75:\n        raise ValueError('too large')\n    return")
    result = generate_verified_code(_scripted([CLOSE_ANY_PAIR, strict]), _close_ir(), GenerateOptions(), attempts=2)
    assert any("raised" in o for o in result.attempts[1].probe_outcomes)  # it did raise on a probe
    assert result.best.agreement == 2 and result.verified


def test_which_exception_a_candidate_raises_is_for_the_checks_not_for_agreement():
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["examples"] = [{"inputs": {"text": "Hello"}, "output": 2, "given": True},
                       {"inputs": {"text": None}, "raises": "TypeError", "given": False}]
    other = GOOD.replace("raise TypeError('no')", "raise ValueError('no')")
    result = generate_verified_code(_scripted([other, GOOD]), spec_from_document(doc), GenerateOptions(), attempts=2)
    assert [a.agreement for a in result.attempts] == [2, 2]  # same values wherever both returned one
    assert result.code == GOOD  # ...and the invented TypeError example still decides between them


def test_a_list_of_distinct_examples_is_not_a_loop():
    """Regression: collapsing digits made the Fibonacci IR's examples (n = 0, 1, 2, ...) look periodic."""
    examples = ",".join(f'{{"inputs":{{"n":{n}}},"output":{f},"raises":null}}' for n, f in
                        [(0, 0), (1, 1), (2, 1), (3, 2), (4, 3), (5, 5), (6, 8)])
    assert not is_runaway('{"examples":[' + examples)
    same = ",".join('{"inputs":{"n":1},"output":1,"raises":null}' for _ in range(6))
    assert is_runaway('{"examples":[' + same)  # the same example, verbatim, over and over: a loop


# ---------------------------------------------------------------------------- forgotten imports

def test_forgotten_typing_and_module_imports_are_added_and_nothing_else():
    from lift_sys.codegen.imports import add_missing_imports, missing_imports

    code = ("def f(xs: List[int], d: Optional[Dict[str, int]] = None) -> float:\n"
            "    ys = [math.sqrt(x) for x in xs]\n    return statistics.mean(ys) + undefined_name\n")
    assert missing_imports(code) == ["from typing import Dict, List, Optional", "import math", "import statistics"]
    fixed = add_missing_imports(code)
    assert fixed.startswith("from typing import Dict, List, Optional\nimport math\nimport statistics\ndef f(")
    assert missing_imports(fixed) == []
    # already imported, bound locally, or not a module used as one: left alone
    assert missing_imports("from typing import List\nimport math as m\ndef g(List, x):\n    return m.pi\n") == []
    assert missing_imports("def h(math):\n    return math.pi\n") == []
    assert missing_imports("def broken(:\n") == []


def test_a_candidate_that_forgot_its_typing_import_is_verified_like_one_that_did_not():
    code = GOOD.replace("def count_vowels(text: str) -> int:", "def count_vowels(text: str) -> Optional[int]:")
    ir = _invented_ir(wrong_output_for_sky=0)
    result = generate_verified_code(_scripted([code, code]), ir, GenerateOptions(), attempts=2)
    assert result.code.startswith("from typing import Optional\n") and result.verified
