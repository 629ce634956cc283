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
from rich.console import Console
from rich.table import Table

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


def _service(model: Optional[str], grammar_backend: str):
    from lift_sys.inference.runtime import local_service

    progress, update = _assembly_progress()
    try:
        with _status(f"loading {model or 'the default model'}"):
            return local_service(model, grammar_backend=grammar_backend, progress=update)
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
    grammar_backend: str = typer.Option("llguidance", "--grammar-backend", "-g", help="llguidance (default) or xgrammar."),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="Stop after this many generated tokens (reported as truncated)."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy, deterministic."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed (with --temperature > 0)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the IR to this file."),
    json_stats: bool = typer.Option(False, "--json-stats", help="Stats as one JSON line on stderr."),
) -> None:
    """Generate the IR (a JSON spec of the function) for TEXT and print it to stdout."""
    from lift_sys.inference.service import GenerateOptions

    try:
        service = _service(model, grammar_backend)
        options = GenerateOptions(max_tokens=max_tokens, temperature=temperature, seed=seed, grammar_backend=grammar_backend)
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
    stats["load_ms"] = service.engine.info().get("load_ms")
    for check in result.checks:
        err.print(f"[yellow]{check}[/]", soft_wrap=True)
    if json_stats:
        sys.stderr.write(json.dumps(stats) + "\n")
    else:
        err.print(_stats_line(stats), soft_wrap=True, markup=False)


@app.command()
def models(json_out: bool = typer.Option(False, "--json", help="Machine-readable list on stdout.")) -> None:
    """List known models, where each comes from, and whether it is present locally."""
    from lift_sys.inference.models import DEFAULT_MODEL, is_present, list_models

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


@app.command()
def version() -> None:
    """Print the version."""
    sys.stdout.write(f"lift-sys {__version__}\n")


@bench_app.command("decode")
def bench_decode(
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    reps: int = typer.Option(3, "--reps", help="Repetitions per configuration (medians reported)."),
    max_tokens: int = typer.Option(160, "--max-tokens", help="Tokens to generate per repetition."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON to this file ('-' = stdout)."),
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
    _emit_json(results, json_path)


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


def _emit_json(results: dict, json_path: Optional[Path]) -> None:
    if json_path is None:
        return
    text = json.dumps(results, indent=2)
    if str(json_path) == "-":
        sys.stdout.write(text + "\n")
    else:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
        err.print(f"wrote {json_path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
