"""`lift-sys`: the command line.

stdout carries only the product (an IR JSON object, a table asked for);
everything about the run -- progress, stats, errors -- goes to stderr, so
``lift-sys ir "..." > fib.json`` does the obvious thing. Every failure
exits non-zero with a one-line ``error:`` message.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lift_sys import __version__
from lift_sys.errors import LiftError, TruncatedOutput

SAMPLE_REQUEST = "a function that returns the n-th Fibonacci number, raising ValueError for negative n"

app = typer.Typer(
    name="lift-sys",
    help=(
        "Turn plain-English requests into typed IR specifications (and code) with "
        "schema-constrained decoding on a local or remote LLM.\n\n"
        "Start with:  lift-sys ir \"a function that reverses a string\""
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: print a table, write JSON with --json.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
modal_app_cli = typer.Typer(help="The Modal deployment: plan GPUs and settings before `modal deploy`.", no_args_is_help=True)
app.add_typer(modal_app_cli, name="modal")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _fail(exc: LiftError | str, code: int = 1) -> "typer.Exit":
    msg = exc.message if isinstance(exc, LiftError) else exc
    err.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _status(text: str) -> Iterator[None]:
    """A spinner on stderr, only when stderr is a terminal."""
    if err.is_terminal:
        with err.status(text):
            yield
    else:
        yield


def _assembly_progress():
    """A progress callback for model assembly (bar on a terminal, silent otherwise)."""
    if not err.is_terminal:
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(TextColumn("assembling model"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err)
    task = progress.add_task("model", total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    return progress, update


BACKEND_HELP = "llguidance or xgrammar (default: LIFT_GRAMMAR_BACKEND, else llguidance)."
MAX_TOKENS_HELP = "Stop after this many generated tokens, reported as truncated (default: LIFT_MAX_TOKENS_DEFAULT, 1024)."


def _settings():
    from lift_sys.settings import Settings

    try:
        return Settings()
    except ValueError as exc:
        raise _fail(f"bad settings: {exc}") from None


def _service(model: Optional[str], grammar_backend: Optional[str], engine_url: Optional[str] = None,
             engine_model: Optional[str] = None):
    """The service for a CLI command: local llama.cpp, or a remote OpenAI-compatible server.

    Every option left out falls back to its LIFT_* setting (``lift-sys config`` shows them)."""
    from lift_sys.service.runtime import service_from_settings
    from lift_sys.settings import Settings

    from lift_sys.generation.grammar import get_backend

    overrides: dict = {}
    if grammar_backend:
        get_backend(grammar_backend)  # a clear error for an unknown name, before anything loads
        overrides["grammar_backend"] = grammar_backend
    if model:
        overrides["model"] = model
    if engine_url:
        overrides.update(engine="openai", engine_url=engine_url, engine_model=engine_model)
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise _fail(f"bad settings: {exc}") from None
    progress, update = _assembly_progress()
    try:
        with _status(f"loading {model or 'the default model'}" if not engine_url else f"connecting to {engine_url}"):
            return service_from_settings(settings, progress=update)
    finally:
        if progress is not None and progress.live.is_started:
            progress.stop()


def _stats_line(stats: dict) -> str:
    cached = stats.get("cached_prompt_tokens", 0)
    return (
        f"model={stats['model']} backend={stats['grammar_backend']} "
        f"prompt_tokens={stats['prompt_tokens']} (cached {cached}) completion_tokens={stats['completion_tokens']} "
        f"(forced {stats.get('forced_tokens', 0)}) ttft={stats['ttft_ms'] / 1000:.2f}s "
        f"decode={stats['decode_tok_s']:.1f} tok/s total={stats['total_ms'] / 1000:.2f}s"
    )


@app.command()
def ir(
    text: str = typer.Argument(..., help="The request in plain English, e.g. \"a function that reverses a string\"."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see `lift-sys models`)."),
    grammar_backend: Optional[str] = typer.Option(None, "--grammar-backend", "-g", help=BACKEND_HELP),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help=MAX_TOKENS_HELP),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy, deterministic."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed (with --temperature > 0)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the IR to this file."),
    json_stats: bool = typer.Option(False, "--json-stats", help="Stats as one JSON line on stderr."),
    engine_url: Optional[str] = typer.Option(None, "--engine-url", help="Use an OpenAI-compatible server (SGLang, vLLM, lift-sys serve) instead of the local model."),
    engine_model: Optional[str] = typer.Option(None, "--engine-model", help="Model name to ask that server for."),
) -> None:
    """Generate the IR (a JSON spec of the function) for TEXT and print it to stdout."""
    from lift_sys.service.core import GenerateOptions

    try:
        service = _service(model, grammar_backend, engine_url, engine_model)
        options = GenerateOptions(max_tokens=max_tokens or _settings().max_tokens_default, temperature=temperature,
                                  seed=seed, grammar_backend=grammar_backend)
        n = [0]

        def on_text(piece: str) -> None:
            n[0] += 1

        with _status("generating IR"):
            result = service.generate_ir(text, options, on_text=on_text)
    except TruncatedOutput as exc:
        err.print(f"partial output: {exc.partial_text}", soft_wrap=True, markup=False)
        raise _fail(exc) from None
    except LiftError as exc:
        raise _fail(exc) from None
    doc = result.ir.model_dump(mode="json")
    text_out = json.dumps(doc, indent=2, ensure_ascii=False)
    if output is not None:
        output.write_text(text_out + "\n")
    sys.stdout.write(text_out + "\n")
    sys.stdout.flush()
    stats = result.generation.stats()
    stats["load_ms"] = service.engine_info().get("load_ms")
    for check in result.checks:
        err.print(f"[yellow]{check}[/]", soft_wrap=True)
    if json_stats:
        sys.stderr.write(json.dumps(stats) + "\n")
    else:
        err.print(_stats_line(stats), soft_wrap=True, markup=False)


def _read_ir(ir_file: str):
    """An IR document from a file (or ``-``): a clean one-line error for anything that is not one."""
    from lift_sys.ir.validate import spec_from_document

    try:
        if ir_file != "-" and not Path(ir_file).is_file():
            raise OSError(f"{ir_file} is not a regular file")
        raw = sys.stdin.read() if ir_file == "-" else Path(ir_file).read_text(encoding="utf-8")
        return spec_from_document(json.loads(raw))
    except (OSError, ValueError, RecursionError) as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise _fail(f"cannot read an IR from {ir_file}: {first}") from None


def _check_table(report) -> Table:
    table = Table(title="verification" + (" [green]passed[/]" if report.verified else " [red]failed[/]"),
                  caption=f"sandbox: {report.isolation}" + (" + seccomp" if report.seccomp else ""))
    for col in ("check", "source", "result", "evidence"):
        table.add_column(col)
    for c in report.checks:  # names and evidence come from untrusted code and IRs: never markup
        mark = ("[green]ok[/]" if c.passed else "[yellow]ir[/]" if c.scope == "ir"
                else "[yellow]suspect[/]" if c.scope == "suspect" else "[red]FAIL[/]")
        table.add_row(Text(c.name + (" (calls the function)" if c.calls_function else "")), c.provenance, mark,
                      Text(c.detail[:120]))
    return table


def _print_attempt(attempt) -> None:
    if attempt.report is None:
        err.print(f"candidate {attempt.index + 1}: [red]{escape(attempt.error or '')}[/]", soft_wrap=True)
    else:
        r = attempt.report
        verdict = "[green]all checks hold[/]" if r.verified else f"[red]{len(r.failures())} check(s) failed[/]"
        err.print(f"candidate {attempt.index + 1} (from the {attempt.source}, T={attempt.temperature:g}): {verdict} "
                  f"({attempt.seconds:.1f} s)")


def _emit_pipeline(result, ir_doc: dict | None, json_out: bool) -> None:
    if json_out:
        body = {"ir": ir_doc, "code": result.code,
                "verification": result.report.to_dict() if result.report else None,
                "selection": result.selection, "attempts": [a.to_dict() for a in result.attempts]}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        if result.code:
            sys.stdout.write(result.code)
            sys.stdout.flush()
        if result.report is not None:
            err.print(_check_table(result.report))
        if result.selection.get("why") and len(result.attempts) > 1:
            err.print(f"chosen: {result.selection['why']}", markup=False)
    if not result.verified:
        raise _fail("no candidate passed verification" + (f" in {len(result.attempts)} attempts" if result.attempts else ""))


@app.command()
def code(
    ir_file: str = typer.Argument(..., help="IR JSON file (as written by `lift-sys ir -o`), or - for stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see `lift-sys models`)."),
    grammar_backend: Optional[str] = typer.Option(None, "--grammar-backend", "-g", help=BACKEND_HELP),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help=MAX_TOKENS_HELP),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="First attempt; repairs raise it."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    attempts: int = typer.Option(3, "--attempts", help="Candidates to generate and verify (the best is chosen; later ones are told what failed)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object {ir, code, verification, attempts} on stdout."),
    engine_url: Optional[str] = typer.Option(None, "--engine-url", help="Use an OpenAI-compatible server."),
) -> None:
    """Generate the IR's Python function, verify it in a sandbox against the IR, repair on failure."""
    from lift_sys.service.core import GenerateOptions

    spec = _read_ir(ir_file)
    try:
        service = _service(model, grammar_backend, engine_url)
        with _status("generating and verifying code"):
            result = service.generate_verified_code(
                spec, GenerateOptions(max_tokens=max_tokens or _settings().max_tokens_default, temperature=temperature,
                                      seed=seed, grammar_backend=grammar_backend),
                attempts=attempts, on_attempt=_print_attempt)
    except LiftError as exc:
        raise _fail(exc) from None
    _emit_pipeline(result, spec.model_dump(mode="json"), json_out)


# The pipeline's default model, chosen by quality per second (docs/benchmarks.md, 2026-12-05, HumanEval 0-19,
# 2-core AMD EPYC Zen 4, one run): lift with the 1.5B 95 % in 25.1 s a problem, with the 0.5B 70 % in 20.3 s
# (0.038 vs 0.034 passes per second). Used when it is installed and neither --model nor LIFT_MODEL says
# otherwise; else the embedded 0.5B, with a hint.
PIPELINE_MODEL = "qwen2.5-coder-1.5b-instruct"


def _pipeline_model(model: Optional[str], engine_url: Optional[str]) -> Optional[str]:
    import os

    from lift_sys.generation.registry import get_model, is_present

    if model or engine_url or os.environ.get("LIFT_MODEL"):
        return model
    spec = get_model(PIPELINE_MODEL)
    if is_present(spec):
        return PIPELINE_MODEL
    err.print(f"using the embedded 0.5B model; the pipeline is better with {PIPELINE_MODEL} (HumanEval 0-19: "
              f"95 % vs 70 %), from {spec.sources[0].describe()} (`lift-sys models` lists both)",
              soft_wrap=True, markup=False)
    return None


@app.command()
def pipeline(
    text: str = typer.Argument(..., help="The request in plain English."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see `lift-sys models`)."),
    grammar_backend: Optional[str] = typer.Option(None, "--grammar-backend", "-g", help=BACKEND_HELP),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Budget of the IR and of each code attempt. "
                                             + MAX_TOKENS_HELP.split(", reported as truncated")[1].lstrip(" ")),
    attempts: int = typer.Option(3, "--attempts", help="Code candidates, alternately from the request and the IR; all verified, the best chosen."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object {ir, code, verification, attempts} on stdout."),
    engine_url: Optional[str] = typer.Option(None, "--engine-url", help="Use an OpenAI-compatible server."),
) -> None:
    """Natural language -> IR -> verified code, in one go.

    The model: --model, else LIFT_MODEL, else qwen2.5-coder-1.5b-instruct when it is installed (better per
    second than the 0.5B on HumanEval), else the embedded 0.5B."""
    from lift_sys.service.core import GenerateOptions

    try:
        service = _service(_pipeline_model(model, engine_url), grammar_backend, engine_url)
        budget = max_tokens or _settings().max_tokens_default
        opts = GenerateOptions(max_tokens=budget, grammar_backend=grammar_backend)
        with _status("generating IR"):
            ir_result = service.generate_ir(text, opts)
        ir = ir_result.ir
        given = sum(e.given for e in ir.examples)
        err.print(f"IR: {ir.signature.name}({', '.join(p.name for p in ir.signature.parameters)}) -> "
                  f"{ir.signature.returns}; examples: {given} given, {len(ir.examples) - given} invented"
                  + (f"; {ir_result.samples} samples ({', '.join(r.split(':')[0] for r in ir_result.resampled)})"
                     if ir_result.samples > 1 else ""), markup=False)
        with _status("generating and verifying code"):
            result = service.generate_verified_code(ir, opts, attempts=attempts, on_attempt=_print_attempt,
                                                    context=text)
    except TruncatedOutput as exc:
        err.print(f"partial output: {exc.partial_text}", soft_wrap=True, markup=False)
        raise _fail(exc) from None
    except LiftError as exc:
        raise _fail(exc) from None
    _emit_pipeline(result, ir_result.ir.model_dump(mode="json"), json_out)


@app.command()
def verify(
    ir_file: str = typer.Argument(..., help="IR JSON file."),
    code_file: Path = typer.Argument(..., help="Python file with the implementation."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Run the verification checks alone (sandboxed): static checks, IR examples, assertions."""
    from lift_sys.codegen.verify import verify_code

    spec = _read_ir(ir_file)
    if not code_file.is_file():  # a FIFO or a device would block or never end
        raise _fail(f"{code_file} is not a regular file")
    try:
        source = code_file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {code_file}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise _fail(f"{code_file} is not UTF-8 text (byte {exc.start}); verification reads Python source as UTF-8") from None
    report = verify_code(source, spec)
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out.print(_check_table(report))
    if not report.verified:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Bind address (default 127.0.0.1 / LIFT_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 8000 / LIFT_PORT)."),
    reload: bool = typer.Option(False, "--reload", help="Restart on code changes (development)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="local (llama.cpp, default) or openai (a remote OpenAI-compatible server)."),
    engine_url: Optional[str] = typer.Option(None, "--engine-url", help="URL of the remote server (with --engine openai)."),
    engine_model: Optional[str] = typer.Option(None, "--engine-model", help="Model name on the remote server."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Local model (see `lift-sys models`)."),
    grammar_backend: Optional[str] = typer.Option(None, "--grammar-backend", "-g"),
    split: bool = typer.Option(False, "--split/--no-split", help="Local engine: run the model in its own process "
                               "(the HTTP process then never shares the GIL with decoding; see docs/benchmarks.md)."),
) -> None:
    """Serve the HTTP API (/v1/ir, /v1/code, /v1/generate, /v1/chat/completions, /metrics, /docs)."""
    import os

    import uvicorn

    from lift_sys.settings import Settings

    # Options become LIFT_* variables so a --reload worker process sees the same settings.
    for key, value in {"host": host, "port": port, "engine": engine or ("openai" if engine_url else None),
                       "engine_url": engine_url, "engine_model": engine_model, "model": model,
                       "grammar_backend": grammar_backend}.items():
        if value is not None:
            os.environ[f"LIFT_{key.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValueError as exc:
        raise _fail(f"bad settings: {exc}") from None
    err.print(f"lift-sys serving on http://{settings.host}:{settings.port}  (docs: /docs)")
    if reload:
        uvicorn.run("lift_sys.server.app:app_from_env", factory=True, host=settings.host, port=settings.port, reload=True,
                    http="lift_sys.server.guard:SettingsProtocol", limit_concurrency=settings.max_connections)
        return
    from lift_sys.service.runtime import service_from_settings
    from lift_sys.server.app import asgi, quiet_health_access_log
    from lift_sys.server.priority import tune_process_for_serving

    quiet_health_access_log()
    tune_process_for_serving()
    child = None
    try:
        if split and settings.engine == "local":
            from lift_sys.server.model_process import start_model_process

            with _status("starting the model process"):
                child, url = start_model_process(settings)
            settings = settings.model_copy(update={"engine": "openai", "engine_url": url, "engine_model": None})
        with _status("loading model"):
            service = service_from_settings(settings)
        from lift_sys.server.guard import uvicorn_options

        # Header/body read timeouts, header size limit, connection cap (LIFT_HEADER_TIMEOUT_S ...).
        app_ = asgi(service, settings, warm_up=settings.warm_up)
        from lift_sys.server.priority import promote_event_loop
        from lift_sys.server.priority import resolve as resolve_priority

        # uvicorn runs the event loop on this thread: /health must get a core the moment it wakes.
        err.print(f"[dim]event loop: {promote_event_loop()}; model threads: "
                  f"{resolve_priority(settings.worker_priority)}[/]")
        uvicorn.run(app_, host=settings.host, port=settings.port,
                    log_level=os.environ.get("LIFT_LOG_LEVEL", "info"), **uvicorn_options(settings))
    except LiftError as exc:
        raise _fail(exc) from None
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)


@app.command()
def e2e(
    url: str = typer.Option(..., "--url", help="Base URL of the deployment, e.g. http://127.0.0.1:8000 or https://…modal.run"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="LIFT_API_KEY", help="Bearer key, if the server needs one."),
    json_out: bool = typer.Option(False, "--json", help="The report as JSON on stdout (the table goes to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the report as JSON to this file."),
    concurrency: int = typer.Option(1, "--concurrency", help="Parallel IR requests after the first (cold) one."),
    timeout: float = typer.Option(900.0, "--timeout", help="Per-request timeout, longer than a GPU cold start."),
) -> None:
    """Check every endpoint of a running server, validate outputs, measure latency; non-zero exit on any failure."""
    from lift_sys.e2e import print_report, run_e2e

    report = run_e2e(url, api_key=api_key, concurrency=concurrency, timeout_s=timeout)
    print_report(report, err if json_out else out)
    _emit_json(report.to_dict(), json_out, output)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def config(json_out: bool = typer.Option(False, "--json", help="Machine-readable.")) -> None:
    """Show the settings in effect (from LIFT_* environment variables)."""
    from lift_sys.settings import Settings

    try:
        settings = Settings()
    except ValueError as exc:
        raise _fail(f"bad settings: {exc}") from None
    values = settings.public()
    if json_out:
        sys.stdout.write(json.dumps(values, indent=2) + "\n")
        return
    table = Table(title="lift-sys settings (env LIFT_<NAME>)")
    table.add_column("name")
    table.add_column("value")
    table.add_column("meaning")
    for name, field in Settings.model_fields.items():
        table.add_row(name, repr(values[name]), field.description or "")
    out.print(table)


@app.command()
def models(json_out: bool = typer.Option(False, "--json", help="Machine-readable list on stdout.")) -> None:
    """List known models, where each comes from, and whether it is present locally."""
    from lift_sys.generation.registry import DEFAULT_MODEL, is_present, list_models

    rows = []
    for spec in list_models():
        avail = [s.describe() for s in spec.sources if s.is_available()]
        rows.append(
            {
                "name": spec.name,
                "default": spec.name == DEFAULT_MODEL,
                "runs": "local (llama.cpp)" if spec.local else "GPU server (SGLang)",
                "present": is_present(spec),
                "path": str(spec.local_path()) if spec.filename else None,
                "sources": [s.describe() for s in spec.sources],
                "sources_available": avail,
                "install": spec.install_hint(),
            }
        )
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="lift-sys models")
    for col in ("name", "runs", "present", "sources"):
        table.add_column(col)
    for r in rows:
        present = "[green]yes[/]" if r["present"] else ("installable" if r["sources_available"] else "[red]no[/]")
        name = r["name"] + (" (default)" if r["default"] else "")
        table.add_row(name, r["runs"], present, "\n".join(r["sources"]))
    out.print(table)


@modal_app_cli.command("plan")
def modal_plan(
    model: Optional[str] = typer.Option(None, "--model", help="Registry model (default: LIFT_MODAL_MODEL or qwen3-coder-30b-a3b-instruct)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Comma-separated GPU fallback list, e.g. H100,A100-80GB."),
    context: Optional[int] = typer.Option(None, "--context", help="SGLang context length."),
    max_inputs: Optional[int] = typer.Option(None, "--max-inputs", help="Concurrent requests per container."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Weights dtype to size for (bf16, fp8)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable."),
) -> None:
    """Show the Modal deployment's settings and whether each GPU can hold the model (and why)."""
    from lift_sys.deploy.gpu import GPU_MEMORY_GB, GPUSizingError, memory_need, plan_gpus
    from lift_sys.generation.registry import get_model
    from lift_sys.settings import ModalSettings

    overrides = {k: v for k, v in {"model": model, "gpus": gpu, "context_length": context,
                                   "max_inputs": max_inputs, "dtype": dtype}.items() if v is not None}
    try:
        settings = ModalSettings(**overrides)
        spec = get_model(settings.model)
        plan = plan_gpus(spec, settings.gpu_list(), context=settings.context_length, concurrency=settings.max_inputs,
                         mem_fraction=settings.mem_fraction, dtype=settings.dtype)
        result = {"settings": settings.model_dump(), "plan": plan.to_dict(), "ok": True}
    except GPUSizingError as exc:
        result = {"settings": settings.model_dump(), "plan": exc.detail, "ok": False, "error": exc.message}
    except (LiftError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, LiftError) else str(exc)) from None
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        p = result["plan"]
        need = p["need_gb"]
        out.print(f"[bold]{p['model']}[/] ({p['dtype']}): weights {need['weights']} GB + KV cache {need['kv_cache']} GB "
                  f"(context {p['context']}, {p['concurrency']} concurrent) + overhead {need['overhead']} GB = {need['total']} GB")
        table = Table(title="GPU fallback list (tried in order)")
        for col in ("gpu", "memory", "verdict"):
            table.add_column(col)
        for g in settings.gpu_list():
            mem = GPU_MEMORY_GB.get(g.partition(":")[0], 0)
            verdict = "[green]fits[/]" if g in p["accepted"] else f"[red]refused[/]: {p['rejected'].get(g, '')}"
            table.add_row(g, f"{mem:.0f} GB", verdict)
        out.print(table)
        st = Table(title="settings (env LIFT_MODAL_<NAME>)")
        st.add_column("name")
        st.add_column("value")
        for k, v in result["settings"].items():
            st.add_row(k, repr(v))
        out.print(st)
    if not result["ok"]:
        raise _fail(result["error"])


@app.command()
def cost(
    gpu: str = typer.Option("H100", "--gpu", help="Modal GPU type."),
    latency_s: float = typer.Option(3.0, "--latency-s", help="GPU seconds per request."),
    requests_per_day: float = typer.Option(5000, "--requests-per-day"),
    scaledown: float = typer.Option(300, "--scaledown", help="Seconds a container stays warm after a request."),
    concurrency: int = typer.Option(1, "--concurrency", help="Requests served at once per container (shares GPU time)."),
    price: Optional[float] = typer.Option(None, "--price", help="USD per GPU-hour (default: the dated table)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Estimate per-request, idle and monthly cost of the scale-to-zero Modal deployment."""
    from dataclasses import asdict

    from lift_sys.deploy.gpu import PRICES_AS_OF, estimate_cost

    try:
        est = estimate_cost(gpu, latency_s=latency_s, requests_per_day=requests_per_day, scaledown_s=scaledown,
                            price_per_hour=price, concurrency=concurrency)
    except LiftError as exc:
        raise _fail(exc) from None
    if json_out:
        sys.stdout.write(json.dumps({**asdict(est), "prices_as_of": PRICES_AS_OF}, indent=2) + "\n")
        return
    src = "your --price" if price is not None else f"Modal list price, {PRICES_AS_OF}"
    out.print(f"{gpu} at ${est.price_per_hour:.2f}/h ({src})")
    out.print(f"  per request:      ${est.per_request_usd:.5f}  ({latency_s:g} s of GPU)")
    out.print(f"  busy per day:     {est.busy_hours_per_day:.2f} h")
    out.print(f"  warm idle per day:{est.warm_idle_hours_per_day:6.2f} h  -> ${est.idle_daily_usd:.2f}/day idle cost "
              f"(scaledown {scaledown:g} s)")
    out.print(f"  cold starts/day:  {est.cold_starts_per_day:.1f}")
    out.print(f"  per day:          ${est.daily_usd:.2f}    per month (30 d): ${est.monthly_usd:,.2f}")


@app.command()
def version() -> None:
    """Print the version."""
    sys.stdout.write(f"lift-sys {__version__}\n")


@bench_app.command("decode")
def bench_decode(
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    reps: int = typer.Option(3, "--reps", help="Repetitions per configuration (medians reported)."),
    max_tokens: int = typer.Option(160, "--max-tokens", help="Tokens to generate per repetition."),
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
    backends: str = typer.Option("llguidance,xgrammar", "--backends", help="Comma-separated grammar backends to include."),
) -> None:
    """Decode speed: unconstrained vs our grammar backends vs llama.cpp's own json_schema grammar."""
    run_decode_bench = _bench_module("decode").run_decode_bench
    try:
        results = run_decode_bench(
            model=model, reps=reps, max_tokens=max_tokens, backends=[b for b in backends.split(",") if b], console=err
        )
    except LiftError as exc:
        raise _fail(exc) from None
    _emit_json(results, json_out, output)


@bench_app.command("server")
def bench_server(
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
    levels: str = typer.Option("1,4,20", "--levels", help="Concurrency levels of IR requests."),
    health_clients: int = typer.Option(20, "--health-clients", help="Concurrent /health pollers during generations."),
) -> None:
    """Server: /health latency under load, per-request overhead, throughput at 1/4/20 concurrent IR requests."""
    run = _bench_module("server").run_server_bench
    results = run(levels=[int(x) for x in levels.split(",") if x], health_clients=health_clients, console=err)
    _emit_json(results, json_out, output)


@bench_app.command("batch")
def bench_batch(
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
    concurrency: str = typer.Option("1,2,4,8,16", "--concurrency", "-c", help="Comma-separated concurrent IR requests."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: concurrency 1,4 (overrides --concurrency)."),
    slots: Optional[int] = typer.Option(None, "--slots", help="Slots of the batched engine (default: the largest level)."),
    single: bool = typer.Option(True, "--single/--no-single", help="Also run the same levels on a one-slot engine."),
    flash_attn: bool = typer.Option(True, "--flash-attn/--no-flash-attn", help="Flash attention in the batched engine."),
    sustained: str = typer.Option("1,8", "--sustained", help="Comma-separated client counts kept busy for "
                                  "--sustained-s each (steady-state tok/s); empty to skip."),
    sustained_s: float = typer.Option(60.0, "--sustained-s", help="Measurement window of each sustained level, seconds."),
) -> None:
    """Continuous batching: N concurrent IR requests, LIFT_SLOTS=N vs 1 vs the raw llama_decode ceiling, one run.

    Two views of throughput: a burst (N requests at once, until the last
    finishes) and sustained load (N clients sending back to back; tokens
    counted inside a window while every client is busy).
    """
    run = _bench_module("batch").run_batch_bench
    try:
        levels = [1, 4] if quick else [int(x) for x in concurrency.split(",") if x.strip()]
        steady = [] if quick else [int(x) for x in sustained.split(",") if x.strip()]
    except ValueError:
        raise _fail(f"--concurrency and --sustained take comma-separated integers, not {concurrency!r} / {sustained!r}") from None
    if steady and (min(steady) < 1 or max(steady) > 64):
        raise _fail("--sustained levels must be between 1 and 64")
    if not 5 <= sustained_s <= 3600:
        raise _fail("--sustained-s must be between 5 and 3600 seconds")
    if not levels or min(levels) < 1 or max(levels) > 64:
        raise _fail("--concurrency levels must be between 1 and 64")
    if slots is not None and not 2 <= slots <= 64:
        raise _fail("--slots must be between 2 and 64")
    try:
        results = run(levels=levels, slots=slots, single=single, flash_attn=flash_attn, sustained=steady,
                      sustained_s=sustained_s, console=err)
    except LiftError as exc:
        raise _fail(exc) from None
    _emit_json(results, json_out, output)


@bench_app.command("verify")
def bench_verify(
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
    reps: int = typer.Option(30, "--reps", help="Verifications per candidate and isolation level."),
) -> None:
    """Verification cost per candidate (p50/p99), bubblewrap vs process isolation, in one run."""
    run = _bench_module("verify").run_verify_bench
    _emit_json(run(reps=reps, console=err), json_out, output)


@bench_app.command("quality")
def bench_quality(
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
    limit: int = typer.Option(40, "--limit", help="Number of HumanEval problems."),
    offset: int = typer.Option(0, "--offset", help="First problem index."),
    attempts: int = typer.Option(4, "--attempts", help="Code candidates in the lift mode (all are generated, then one is chosen)."),
    modes: str = typer.Option("direct,direct-raw,lift", "--modes", help="Comma-separated: direct (code in a JSON string), direct-raw (a fenced block), lift (NL -> IR -> verified code)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see `lift-sys models`); default LIFT_MODEL."),
    max_tokens: int = typer.Option(1000, "--max-tokens", help="Budget of each generation (IR, each candidate, direct)."),
) -> None:
    """HumanEval pass@1: direct code vs NL -> IR -> verified code (candidates ranked by given checks, then agreement)."""
    run = _bench_module("quality").run_quality_bench
    progress = output.with_suffix(".progress.jsonl") if output else None
    try:
        results = run(limit=limit, offset=offset, attempts=attempts, console=err, max_tokens=max_tokens, model=model,
                      modes=tuple(m for m in modes.split(",") if m), progress_path=progress)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _emit_json(results, json_out, output)


@bench_app.command("schemas")
def bench_schemas(
    suite: Path = typer.Option(..., "--suite", help="A folder of schema files: MaskBench's data/ or a JSON-Schema-Test-Suite draft folder."),
    backend: str = typer.Option("llguidance,xgrammar,llamacpp", "--backend", help="Comma-separated: llguidance, xgrammar, llamacpp (llama.cpp's own converter, as a peer)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="A seeded sample of this many schemas (default: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample."),
    timeout_s: float = typer.Option(10.0, "--time-limit", help="Compile time box per schema and engine, seconds (the server's LIFT_COMPILE_TIMEOUT_S)."),
    vocab: str = typer.Option("model", "--vocab", help="model (the embedded model's tokenizer) or bytes (one token per byte; no llama.cpp peer)."),
    url: Optional[str] = typer.Option(None, "--url", help="End to end: POST each schema to this running server's /v1/generate."),
    e2e_seed: Optional[int] = typer.Option(None, "--e2e-seed", help="With --url: sample seed (default: today's date, so the sample rotates)."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="With --url: max_tokens per request."),
    json_out: bool = typer.Option(False, "--json", help="Results as JSON on stdout (tables go to stderr)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON to this file."),
) -> None:
    """Real-world schemas, grammar level: exact / refused / error per engine, fail-open count, compile and mask times.

    With --url: end to end through a running `lift-sys serve` instead (a rotating seeded sample, default 100).
    """
    module = _bench_module("schemas")
    try:
        if url:
            import os

            results = module.run_schema_e2e(url=url, suite=suite, limit=limit or 100, seed=e2e_seed,
                                            max_tokens=max_tokens, backend=None if "," in backend else backend,
                                            api_key=os.environ.get("LIFT_API_KEY"), console=err)
        else:
            results = module.run_schema_bench(suite=suite, engines=[b for b in backend.split(",") if b], limit=limit,
                                              seed=seed, timeout_s=timeout_s, vocab=vocab, console=err)
    except LiftError as exc:
        raise _fail(exc) from None
    _emit_json(results, json_out, output)


def _bench_module(name: str):
    """Load ``bench/<name>.py`` from the source checkout (benchmarks are a development tool)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    if not path.is_file():
        raise _fail(f"benchmarks run from a source checkout; {path} not found")
    spec = importlib.util.spec_from_file_location(f"lift_sys_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _emit_json(results: dict, json_out: bool, output: Optional[Path]) -> None:
    """``--json``: one JSON document on stdout; ``--output PATH``: the same, written to a file."""
    text = json.dumps(results, indent=2)
    if json_out:
        sys.stdout.write(text + "\n")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        err.print(f"wrote {output}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
