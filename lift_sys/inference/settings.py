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

    # HTTP server
    host: str = Field("127.0.0.1", description="Bind address of `lift-sys serve`")
    port: int = Field(8000, ge=0, le=65535, description="Port of `lift-sys serve`")
    api_key: Optional[SecretStr] = Field(None, description="When set, every endpoint but /health needs `Authorization: Bearer <key>`")
    max_queue: int = Field(20, ge=1, description="Requests waiting for the model beyond which the server answers 429")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body")
    max_tokens_default: int = Field(1024, ge=1, description="max_tokens when a request does not say")

    def public(self) -> dict[str, object]:
        """Settings as shown to a user: secrets masked."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                value = "***" if getattr(self, name) is not None else None
            out[name] = value
        return out
