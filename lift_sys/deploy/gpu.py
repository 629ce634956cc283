"""GPU sizing and cost: which GPU can serve a model, and what it costs on Modal.

Memory needed = weights + KV cache + runtime overhead, where the KV cache
is sized for the deployment's concurrency: ``max_inputs`` sequences of a
typical request length, and never less than one sequence at the full
configured context. A GPU whose usable memory (the share SGLang may take,
``mem_fraction``) cannot hold that is refused with the numbers, before any
GPU is rented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lift_sys.errors import InvalidRequest
from lift_sys.generation.registry import ModelSpec

GB = 1e9

# Memory per GPU type as Modal names them (GB).
GPU_MEMORY_GB: dict[str, float] = {
    "T4": 16, "L4": 24, "A10G": 24, "A10": 24, "L40S": 48, "A100": 40, "A100-40GB": 40,
    "A100-80GB": 80, "H100": 80, "H100!": 80, "H200": 141, "B200": 192,
}
# GPUs with native FP8 (Ada / Hopper / Blackwell).
FP8_GPUS = {"L4", "L40S", "H100", "H100!", "H200", "B200"}

# Modal list prices, USD per GPU-hour (modal.com/pricing, read 2026-11; override with --price).
PRICE_PER_HOUR: dict[str, float] = {
    "T4": 0.59, "L4": 0.80, "A10G": 1.10, "A10": 1.10, "L40S": 1.95, "A100": 2.10, "A100-40GB": 2.10,
    "A100-80GB": 2.50, "H100": 3.95, "H100!": 3.95, "H200": 4.54, "B200": 6.25,
}
PRICES_AS_OF = "2026-11"


class GPUSizingError(InvalidRequest):
    kind = "gpu_sizing"


@dataclass(frozen=True)
class MemoryNeed:
    weights_gb: float
    kv_gb: float
    overhead_gb: float
    dtype: str

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.kv_gb + self.overhead_gb


@dataclass
class Plan:
    model: str
    dtype: str
    need: MemoryNeed
    context: int
    concurrency: int
    mem_fraction: float
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "dtype": self.dtype, "context": self.context, "concurrency": self.concurrency,
            "mem_fraction": self.mem_fraction,
            "need_gb": {"weights": round(self.need.weights_gb, 1), "kv_cache": round(self.need.kv_gb, 1),
                        "overhead": round(self.need.overhead_gb, 1), "total": round(self.need.total_gb, 1)},
            "accepted": self.accepted, "rejected": self.rejected,
        }


def memory_need(spec: ModelSpec, *, context: int, concurrency: int, typical_tokens: int = 4096,
                dtype: str | None = None, overhead_gb: float = 3.0) -> MemoryNeed:
    """Weights + KV (bf16 cache) + CUDA graphs/activations overhead for ``spec``."""
    dtype = dtype or next(iter(spec.weight_bytes), "bf16")
    if dtype not in spec.weight_bytes:
        raise GPUSizingError(f"model {spec.name!r} has no {dtype} weights (has: {', '.join(spec.weight_bytes)})")
    kv_tokens = max(context, concurrency * min(typical_tokens, context))
    kv = spec.kv_bytes_per_token() * kv_tokens
    return MemoryNeed(spec.weight_bytes[dtype] / GB, kv / GB, overhead_gb, dtype)


def plan_gpus(spec: ModelSpec, gpus: list[str], *, context: int, concurrency: int,
              mem_fraction: float = 0.88, dtype: str | None = None) -> Plan:
    """Check each GPU in the fallback list; raise if none, or any listed one, cannot hold the model."""
    need = memory_need(spec, context=context, concurrency=concurrency, dtype=dtype)
    plan = Plan(spec.name, need.dtype, need, context, concurrency, mem_fraction)
    for gpu in gpus:
        name, _, count_s = gpu.partition(":")
        count = int(count_s) if count_s else 1
        if name not in GPU_MEMORY_GB:
            plan.rejected[gpu] = f"unknown GPU type (known: {', '.join(GPU_MEMORY_GB)})"
            continue
        usable = GPU_MEMORY_GB[name] * count * mem_fraction
        if need.dtype == "fp8" and name not in FP8_GPUS:
            plan.rejected[gpu] = "no native FP8 on this GPU"
        elif need.weights_gb + need.kv_gb > usable:
            plan.rejected[gpu] = (f"needs {need.weights_gb + need.kv_gb:.1f} GB for weights+KV, "
                                  f"{name}x{count} gives {usable:.1f} GB usable ({mem_fraction:.0%} of {GPU_MEMORY_GB[name] * count:.0f} GB)")
        else:
            plan.accepted.append(gpu)
    if plan.rejected:
        why = "; ".join(f"{g}: {r}" for g, r in plan.rejected.items())
        raise GPUSizingError(
            f"{spec.name} ({need.dtype}, {need.weights_gb:.1f} GB weights) does not fit every GPU listed: {why}",
            detail=plan.to_dict(),
        )
    return plan


@dataclass(frozen=True)
class CostEstimate:
    gpu: str
    price_per_hour: float
    per_request_usd: float
    busy_hours_per_day: float
    warm_idle_hours_per_day: float
    cold_starts_per_day: float
    daily_usd: float
    monthly_usd: float
    idle_daily_usd: float


def estimate_cost(gpu: str, *, latency_s: float, requests_per_day: float, scaledown_s: float,
                  price_per_hour: float | None = None, concurrency: int = 1) -> CostEstimate:
    """Cost of a scale-to-zero deployment with Poisson arrivals.

    Each request costs its latency (divided by concurrency when requests
    share a container); after every request the container stays warm for
    up to ``scaledown_s`` unless the next request arrives first, so the
    warm idle time per gap is E[min(gap, W)] = (1 - e^{-rW}) / r and the
    container scales to zero (a cold start follows) with probability e^{-rW}.
    """
    name = gpu.partition(":")[0]
    price = price_per_hour if price_per_hour is not None else PRICE_PER_HOUR.get(name)
    if price is None:
        raise GPUSizingError(f"no price for {gpu}; pass --price")
    per_second = price / 3600
    busy_s = requests_per_day * latency_s / max(1, concurrency)
    rate = requests_per_day / 86400
    if rate > 0:
        idle_per_gap = (1 - math.exp(-rate * scaledown_s)) / rate
        idle_s = min(86400 - busy_s, requests_per_day * idle_per_gap)
        cold = requests_per_day * math.exp(-rate * scaledown_s)
    else:
        idle_s, cold = 0.0, 0.0
    idle_s = max(0.0, idle_s)
    daily = (busy_s + idle_s) * per_second
    return CostEstimate(
        gpu=gpu, price_per_hour=price,
        per_request_usd=latency_s * per_second / max(1, concurrency),
        busy_hours_per_day=busy_s / 3600, warm_idle_hours_per_day=idle_s / 3600, cold_starts_per_day=cold,
        daily_usd=daily, monthly_usd=daily * 30, idle_daily_usd=idle_s * per_second,
    )
