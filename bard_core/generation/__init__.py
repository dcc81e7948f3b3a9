"""Generation backends: requests with sampling parameters in, completions with token counts out.

    backend = make_backend(HFBackendConfig(backend="hf", model="path/to/model"))
    request = GenerationRequest(uid="q1", messages=[...], sampling=SamplingParams(max_tokens=512, n=4))
    completions = backend.generate([request])  # 4 completions: sample_idx 0..3, seeds 0..3

Backends (DESIGN.md, "Backends"): `hf` (transformers, CPU or GPU), `openai` (any OpenAI-compatible
endpoint), `vllm` (the offline engine). Each is imported only when made, so importing this package
loads neither torch nor httpx nor vllm.
"""

from __future__ import annotations

from bard_core.config.generation import GenerationBackendConfig, HFBackendConfig, OpenAIBackendConfig, SamplingParams
from bard_core.config.generation import ScriptedBackendConfig, VLLMBackendConfig
from bard_core.generation.protocol import Completion, GenerationBackend, GenerationError, GenerationRequest

__all__ = [
    "Completion",
    "GenerationBackend",
    "GenerationBackendConfig",
    "GenerationError",
    "GenerationRequest",
    "HFBackendConfig",
    "OpenAIBackendConfig",
    "SamplingParams",
    "ScriptedBackendConfig",
    "VLLMBackendConfig",
    "make_backend",
]


def make_backend(config: GenerationBackendConfig) -> GenerationBackend:
    """The backend named by `config.backend`, loaded and ready (the hf and vllm backends load the model here)."""
    if config.backend == "hf":
        from bard_core.generation.hf_backend import HFBackend

        return HFBackend(config)
    if config.backend == "openai":
        from bard_core.generation.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "vllm":
        from bard_core.generation.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    if config.backend == "scripted":
        from bard_core.generation.scripted_backend import ScriptedBackend

        return ScriptedBackend(config)
    raise GenerationError(f"unknown generation backend {config.backend!r}")
