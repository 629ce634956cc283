"""# lift-sys on Modal: SGLang + XGrammar on GPUs, scale to zero

One file, read top to bottom. The workflow:

    modal run lift_sys/deploy/modal_app.py::download_model   # once: weights -> Volume (CPU only)
    modal serve lift_sys/deploy/modal_app.py                 # dev: hot reload, temporary URLs
    modal run lift_sys/deploy/modal_app.py::test             # one IR + code, remotely, with timings
    modal deploy lift_sys/deploy/modal_app.py                # production
    lift-sys e2e --url https://<workspace>--lift-sys-inference-constrainedirgenerator-web.modal.run

Shape: a GPU class runs SGLang as a subprocess (XGrammar masks tokens on the
GPU side) and, in the same container, *our* service over the remote engine
pointed at it -- so the HTTP API is the very app ``lift-sys serve`` runs
locally. A CPU-only health function reports the deployment's configuration
without waking a GPU.

Configuration comes from ``LIFT_MODAL_*`` in the deploying shell (see
:class:`~lift_sys.settings.ModalSettings`; ``lift-sys modal plan``
prints it and the GPU choice). It is read once here and passed to the
containers as their environment, so what was planned is what runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import modal

from lift_sys.deploy.gpu import plan_gpus
from lift_sys.generation.registry import get_model
from lift_sys.settings import ModalSettings

# ---------------------------------------------------------------------------
# ## Settings and GPU sizing
#
# The seed used `modal.gpu.A10G()`; GPU objects are gone in Modal 1.x: a GPU
# is a string, or an ordered fallback list of strings. And the seed's A10G
# (24 GB) could never hold Qwen3-Coder-30B-A3B in bf16 (~61 GB of weights):
# the sizing check below refuses such a plan *before* anything is rented.

SETTINGS = ModalSettings()
MODEL = get_model(SETTINGS.model)
GPUS = SETTINGS.gpu_list()
PLAN = plan_gpus(MODEL, GPUS, context=SETTINGS.context_length, concurrency=SETTINGS.max_inputs,
                 mem_fraction=SETTINGS.mem_fraction, dtype=SETTINGS.dtype)

MODELS_DIR = "/models"
HF_HOME = f"{MODELS_DIR}/hf"  # the seed also set TRANSFORMERS_CACHE: deprecated, HF_HOME covers it
SGLANG_PORT = 30000

# ---------------------------------------------------------------------------
# ## Images
#
# Our package is added as source (`add_local_python_source`), mounted when a
# container starts -- never imported while the image builds. The light image
# serves health and downloads; the GPU image adds a pinned SGLang.

_OUR_DEPS = [
    "pydantic>=2.7,<3", "pydantic-settings>=2.3", "jsonschema>=4.21", "numpy>=1.26", "jinja2>=3.1",
    "fastapi>=0.115", "httpx>=0.27", "prometheus-client>=0.20", "typer>=0.12", "rich>=13",
    "huggingface-hub[hf_transfer]>=0.24",
]

light_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(*_OUR_DEPS)
    .env({"HF_HOME": HF_HOME, "HF_HUB_ENABLE_HF_TRANSFER": "1"})
    .add_local_python_source("lift_sys")
)

sglang_image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libnuma1")
    # The seed's `sglang[all]>=0.5.3.post1` floated; a pinned release keeps
    # rebuilds reproducible (its xgrammar/torch/flashinfer come with it).
    .uv_pip_install(f"sglang[all]=={SETTINGS.sglang_version}", *_OUR_DEPS)
    .env({"HF_HOME": HF_HOME, "HF_HUB_ENABLE_HF_TRANSFER": "1"})
    .add_local_python_source("lift_sys")
)

# ## The weights Volume
#
# Hugging Face's cache lives on a Volume, so only the first cold start of a
# new model pays the download -- and `download_model` pays it on a CPU.

volume = modal.Volume.from_name("lift-sys-models", create_if_missing=True)

app = modal.App(SETTINGS.app_name)

_SECRETS = [modal.Secret.from_name(SETTINGS.api_key_secret)] if SETTINGS.api_key_secret else []


def sglang_command(settings: ModalSettings, model_path: str, port: int = SGLANG_PORT) -> list[str]:
    """The SGLang server command line this deployment runs.

    * ``--grammar-backend``: xgrammar (SGLang's default and fastest) or llguidance;
    * ``--constrained-json-disable-any-whitespace``: compact JSON -- with the
      default unbounded whitespace a model can emit spaces until max_tokens;
    * no jump-forward flag: SGLang retired jump-forward decoding (the seed's
      "3-10x faster JSON" came partly from it).
    """
    gpu = settings.gpu_list()[0]
    tp = int(gpu.partition(":")[2] or 1)
    return [
        sys.executable, "-m", "sglang.launch_server",
        "--model-path", model_path,
        "--served-model-name", settings.model,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--grammar-backend", settings.grammar_backend,
        "--constrained-json-disable-any-whitespace",
        "--context-length", str(settings.context_length),
        "--mem-fraction-static", str(settings.mem_fraction),
        "--tp", str(tp),
        "--enable-metrics",
    ]


def _model_path() -> str:
    """Local snapshot of the served model on the Volume (downloading it if missing)."""
    from huggingface_hub import snapshot_download

    repo = MODEL.hf_repo or MODEL.name
    try:
        return snapshot_download(repo, local_files_only=True)
    except Exception:  # not on the Volume yet: download (slow on GPU time) and keep it
        print(f"{repo} not on the volume; downloading (run download_model first to do this on a CPU)")
        path = snapshot_download(repo)
        volume.commit()
        return path


# ---------------------------------------------------------------------------
# ## Downloading weights, on a CPU


@app.function(image=light_image, volumes={MODELS_DIR: volume}, timeout=3600, cpu=2.0, env=SETTINGS.as_env())
def download_model(force: bool = False) -> str:
    """Fill the Volume with the model's weights; commit once at the end (never per request)."""
    from huggingface_hub import snapshot_download

    repo = MODEL.hf_repo or MODEL.name
    t0 = time.time()
    path = snapshot_download(repo, force_download=force)
    volume.commit()
    print(f"{repo} -> {path} in {time.time() - t0:.0f} s")
    return path


# ---------------------------------------------------------------------------
# ## The GPU class
#
# Loads once (`@modal.enter`), serves many (`@modal.concurrent`), scales to
# zero after `scaledown_window` idle seconds. The seed's settings, kept or
# replaced: timeout=600 (kept), scaledown_window=300 (kept), max_inputs=20
# (kept; our server's queue bound matches it), GPU list (replaces the A10G),
# startup_timeout (new: weights + SGLang start exceed the input timeout on a
# cold start), memory snapshots (new, opt-in).

CLS_OPTIONS: dict[str, Any] = dict(
    image=sglang_image,
    gpu=GPUS,
    volumes={MODELS_DIR: volume},
    timeout=SETTINGS.timeout,
    startup_timeout=SETTINGS.startup_timeout,
    scaledown_window=SETTINGS.scaledown_window,
    enable_memory_snapshot=SETTINGS.memory_snapshot,
    env=SETTINGS.as_env(),
    secrets=_SECRETS,
)
CONCURRENCY: dict[str, Any] = dict(max_inputs=SETTINGS.max_inputs)


@app.cls(**CLS_OPTIONS)
@modal.concurrent(**CONCURRENCY)
class ConstrainedIRGenerator:
    # With enable_memory_snapshot, this CPU-side phase (imports, settings)
    # is captured in a snapshot and restored on later cold starts; the GPU
    # phase below (SGLang start) always runs fresh.
    @modal.enter(snap=SETTINGS.memory_snapshot)
    def prepare(self) -> None:
        from lift_sys import service  # noqa: F401  (warm imports into the snapshot)
        from lift_sys.server import app  # noqa: F401

        self.settings = ModalSettings()
        self.proc: subprocess.Popen | None = None

    @modal.enter(snap=False)
    def start_engine(self) -> None:
        from lift_sys.service.core import InferenceService

        if self.settings.engine == "local":  # offline tests: the embedded model, same code path
            from lift_sys.service.runtime import local_service

            self.service = local_service(grammar_backend="llguidance")
            return
        from lift_sys.generation.engines.openai_http import OpenAIHTTPEngine
        from lift_sys.server.loopback import wait_healthy

        self.proc = subprocess.Popen(sglang_command(self.settings, _model_path()))
        url = f"http://127.0.0.1:{SGLANG_PORT}"
        wait_healthy(url, self.settings.startup_timeout, self.proc, what="SGLang server")
        engine = OpenAIHTTPEngine(url, model=self.settings.model, context_length=self.settings.context_length)
        # The service lints schemas with the same backend SGLang compiles them with.
        self.service = InferenceService(engine, default_backend=self.settings.grammar_backend)

    @modal.exit()
    def stop(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @modal.method()
    def generate_ir(self, request: str, max_tokens: int = 1024, temperature: float = 0.0, seed: int | None = None) -> dict:
        from lift_sys.service.core import GenerateOptions

        t0 = time.perf_counter()
        r = self.service.generate_ir(request, GenerateOptions(max_tokens=max_tokens, temperature=temperature, seed=seed))
        return {"ir": r.ir.model_dump(mode="json"), "checks": [str(c) for c in r.checks],
                "stats": r.generation.stats(), "total_s": time.perf_counter() - t0}

    @modal.method()
    def generate_code(self, ir: dict, max_tokens: int = 1024, temperature: float = 0.0) -> dict:
        from lift_sys.service.core import GenerateOptions
        from lift_sys.ir.validate import spec_from_document

        t0 = time.perf_counter()
        spec = spec_from_document(ir)
        r = self.service.generate_code(spec, GenerateOptions(max_tokens=max_tokens, temperature=temperature))
        return {"code": r.code, "checks": [c.to_dict() for c in r.checks], "ok": r.ok,
                "stats": r.generation.stats(), "total_s": time.perf_counter() - t0}

    @modal.method()
    def generate(self, prompt: str, json_schema: dict, max_tokens: int = 1024, temperature: float = 0.0) -> dict:
        from lift_sys.service.core import GenerateOptions

        r = self.service.generate(prompt, json_schema, GenerateOptions(max_tokens=max_tokens, temperature=temperature))
        return {"text": r.text, "json": r.json, "stats": r.stats()}

    @modal.asgi_app()
    def web(self):
        """The same FastAPI app as `lift-sys serve`, over this container's service."""
        from lift_sys.server.app import asgi
        from lift_sys.settings import Settings

        return asgi(self.service, Settings(max_queue=self.settings.max_inputs))


# ---------------------------------------------------------------------------
# ## Health, on a CPU
#
# Never wakes a GPU: it reports what this deployment *is* (model, GPU list,
# grammar backend, sizing), from the settings it was deployed with.


@app.function(image=light_image, cpu=0.25, env=SETTINGS.as_env())
@modal.fastapi_endpoint(method="GET")
def health() -> dict:
    s = ModalSettings()
    return {
        "status": "ok",
        "app": s.app_name,
        "model": s.model,
        "gpus": s.gpu_list(),
        "grammar_backend": s.grammar_backend,
        "context_length": s.context_length,
        "max_inputs": s.max_inputs,
        "scaledown_window": s.scaledown_window,
        "memory_snapshot": s.memory_snapshot,
        "gpu_plan": PLAN.to_dict(),
    }


# ---------------------------------------------------------------------------
# ## `modal run lift_sys/deploy/modal_app.py::test`


@app.local_entrypoint()
def test(request: str = "a function that returns the n-th Fibonacci number, raising ValueError for negative n") -> None:
    import json

    gen = ConstrainedIRGenerator()
    t0 = time.time()
    ir = gen.generate_ir.remote(request)
    print(json.dumps(ir["ir"], indent=2))
    print(f"IR: {ir['stats']}  (round trip {time.time() - t0:.1f} s, includes any cold start)")
    t1 = time.time()
    code = gen.generate_code.remote(ir["ir"])
    print(code["code"])
    print(f"code: checks {'ok' if code['ok'] else code['checks']}  {code['stats']}  (round trip {time.time() - t1:.1f} s)")
