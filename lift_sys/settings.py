"""Settings for the service, the server and the Modal app: ``LIFT_*`` environment variables.

One object, read when a front starts (never at import time of a library
module), shown by ``lift-sys config``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFT_", extra="ignore")

    # What runs
    engine: Literal["local", "openai"] = Field("local", description="local = llama.cpp in-process; openai = an OpenAI-compatible server")
    model: Optional[str] = Field(None, description="Model name (registry) for the local engine; default: the embedded model")
    engine_url: Optional[str] = Field(None, description="Base URL of the OpenAI-compatible server (engine=openai)")
    engine_model: Optional[str] = Field(None, description="Model name to send to that server (default: whatever it serves)")
    engine_api_key: Optional[SecretStr] = Field(None, description="Bearer token for that server")
    grammar_backend: Literal["llguidance", "xgrammar"] = Field("llguidance", description="Default grammar backend")
    n_ctx: int = Field(4096, ge=256, description="Context window of the local engine (tokens)")
    compile_timeout_s: float = Field(10.0, gt=0, description="Time box for grammar compilation")
    slots: int = Field(1, ge=1, le=64, description="Local engine: sequences decoded together in one llama.cpp step "
                       "(continuous batching; each slot gets its own n_ctx of KV). 1 = one generation at a time. "
                       "Measured in docs/benchmarks.md (`lift-sys bench batch`)")
    prompt_cache_mb: int = Field(256, ge=0, description="Local engine: host memory for the KV of recent "
                                 "prompts, so requests of different kinds taking turns (IR, code from the request, "
                                 "code from the IR) skip re-prefilling their shared prefix. ~12 KB a token for the "
                                 "embedded model; 0 = off")

    # HTTP server
    host: str = Field("127.0.0.1", description="Bind address of `lift-sys serve`")
    port: int = Field(8000, ge=0, le=65535, description="Port of `lift-sys serve`")
    api_key: Optional[SecretStr] = Field(None, description="When set, every endpoint but /health needs `Authorization: Bearer <key>`")
    max_queue: int = Field(20, ge=1, description="Requests waiting for the model beyond which the server answers 429")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body")
    max_json_depth: int = Field(64, ge=8, le=512, description="Deepest nesting of objects/arrays accepted in a JSON body")
    header_timeout_s: float = Field(10.0, gt=0, description="lift-sys serve: a connection that has not sent a request's "
                                    "headers within this many seconds is closed")
    body_timeout_s: float = Field(30.0, gt=0, description="lift-sys serve: a request body not received within this many "
                                  "seconds after its headers gets a 408")
    max_header_bytes: int = Field(65536, ge=4096, description="lift-sys serve: request line + headers beyond this get a 431")
    max_connections: int = Field(200, ge=1, description="lift-sys serve: open connections (or running requests) beyond "
                                 "which a new request gets a 503")
    max_tokens_default: int = Field(1024, ge=1, description="max_tokens when a request does not say")
    warm_up: bool = Field(True, description="lift-sys serve: prefill the prompt prefix every IR request shares at start "
                          "(the first request skips ~5 s of CPU prefill)")
    worker_priority: Literal["auto", "high", "normal", "low", "idle"] = Field(
        "auto",
        description="CPU priority of the local model's threads: auto = high where allowed (root/CAP_SYS_NICE), else "
        "normal; high = nice -5 (keeps ~60% of its speed beside two CPU-bound neighbours; `serve` then puts the event "
        "loop in SCHED_RR); normal = nice 0; low = nice 10; idle = SCHED_IDLE (spare cycles only: any CPU-bound "
        "neighbour starves it). Measured in docs/benchmarks.md",
    )

    def public(self) -> dict[str, object]:
        """Settings as shown to a user: secrets masked."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                value = "***" if getattr(self, name) is not None else None
            out[name] = value
        return out


class ModalSettings(BaseSettings):
    """The Modal deployment, from ``LIFT_MODAL_*`` variables of the *deploying* shell.

    ``modal deploy`` imports the app module locally, reads these once, and
    bakes them into the image's environment, so the containers see exactly
    what ``lift-sys modal plan`` showed -- not whatever their own
    environment happens to hold.
    """

    model_config = SettingsConfigDict(env_prefix="LIFT_MODAL_", extra="ignore")

    app_name: str = Field("lift-sys-inference", description="Modal app name")
    model: str = Field("qwen3-coder-30b-a3b-instruct", description="Registry model served by SGLang")
    dtype: Optional[str] = Field(None, description="Weights dtype to size for (default: the model's first listed)")
    gpus: str = Field("H100,A100-80GB", description="Ordered GPU fallback list (Modal names, comma-separated)")
    grammar_backend: Literal["xgrammar", "llguidance"] = Field("xgrammar", description="SGLang --grammar-backend")
    context_length: int = Field(32768, ge=1024, description="SGLang --context-length")
    max_inputs: int = Field(20, ge=1, description="@modal.concurrent(max_inputs): requests per container")
    scaledown_window: int = Field(300, ge=2, le=3600, description="Seconds a warm container waits before scaling to zero")
    timeout: int = Field(600, ge=10, description="Per-input timeout (s)")
    startup_timeout: int = Field(1200, ge=60, description="Container start (weights load + SGLang start) timeout (s)")
    memory_snapshot: bool = Field(False, description="enable_memory_snapshot: snapshot CPU state after imports for faster cold starts")
    mem_fraction: float = Field(0.88, gt=0.3, lt=0.98, description="SGLang --mem-fraction-static")
    sglang_version: str = Field("0.5.23", description="Pinned SGLang release installed in the image")
    engine: Literal["sglang", "local"] = Field("sglang", description="local = the embedded llama.cpp model instead of SGLang (offline tests)")
    api_key_secret: Optional[str] = Field(None, description="Name of a Modal Secret holding LIFT_API_KEY for the web app")

    def gpu_list(self) -> list[str]:
        return [g.strip() for g in self.gpus.split(",") if g.strip()]

    def as_env(self) -> dict[str, str]:
        """These settings as LIFT_MODAL_* variables (baked into the image)."""
        out = {}
        for name, value in self.model_dump().items():
            if value is not None:
                out[f"LIFT_MODAL_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return out
