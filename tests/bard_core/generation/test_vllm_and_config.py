"""The vLLM backend's translation into engine arguments (vLLM itself cannot be installed here), the config
models, and that importing the package loads no heavy library."""

import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from bard_core.generation import (
    GenerationBackendConfig,
    GenerationRequest,
    HFBackendConfig,
    OpenAIBackendConfig,
    SamplingParams,
    VLLMBackendConfig,
)
from bard_core.generation.vllm_backend import engine_args, engine_requests, to_completion


def test_every_sample_is_one_engine_request_with_its_seed_and_max_tokens():
    chat = [{"role": "user", "content": "2+2?"}]
    requests = [
        GenerationRequest(uid="a", messages=chat, sampling=SamplingParams(max_tokens=4096, n=3, seed=10)),
        GenerationRequest(uid="b", prompt="Q: 1+1=", sampling=SamplingParams(temperature=0, max_tokens=7)),
    ]
    items = engine_requests(requests)
    assert [(i["uid"], i["sample_idx"], i["seed"]) for i in items] == [
        ("a", 0, 10),
        ("a", 1, 11),
        ("a", 2, 12),
        ("b", 0, 0),
    ]
    assert items[1]["messages"] == chat and "prompt" not in items[1]
    assert items[3]["prompt"] == "Q: 1+1=" and "messages" not in items[3]
    assert items[1]["sampling"] == {"n": 1, "temperature": 0.6, "top_p": 0.95, "max_tokens": 4096, "seed": 11}
    assert items[3]["sampling"] == {"n": 1, "temperature": 0.0, "top_p": 0.95, "max_tokens": 7, "seed": 0}

    c = to_completion(
        items[1], prompt_tokens=9, text="<think>x</think>4", token_ids=[5, 6, 7, 2], finish_reason="stop", model="m"
    )
    assert (c.uid, c.sample_idx, c.seed, c.prompt_tokens, c.completion_tokens, c.finish_reason) == (
        "a",
        1,
        11,
        9,
        4,
        "stop",
    )


def test_engine_args():
    config = VLLMBackendConfig(backend="vllm", model="Qwen/Qwen3-32B", tensor_parallel_size=4, max_model_len=16384)
    assert engine_args(config) == {
        "model": "Qwen/Qwen3-32B", "tensor_parallel_size": 4, "gpu_memory_utilization": 0.9, "dtype": "auto",
        "max_model_len": 16384,
    }  # fmt: skip
    assert "max_model_len" not in engine_args(VLLMBackendConfig(backend="vllm", model="m"))


class Holder(BaseModel):
    generation: GenerationBackendConfig


def test_backend_config_is_chosen_by_name_and_strict():
    assert isinstance(
        Holder.model_validate({"generation": {"backend": "hf", "model": "d"}}).generation, HFBackendConfig
    )
    openai = Holder.model_validate(
        {"generation": {"backend": "openai", "base_url": "http://h/v1", "model": "m"}}
    ).generation
    assert isinstance(openai, OpenAIBackendConfig) and openai.max_attempts == 6 and openai.api_key_env is None
    with pytest.raises(ValidationError, match="api_key"):  # a key itself has no place in config
        Holder.model_validate({"generation": {"backend": "openai", "base_url": "u", "model": "m", "api_key": "sk-1"}})
    with pytest.raises(ValidationError):
        Holder.model_validate({"generation": {"backend": "sglang", "model": "m"}})
    with pytest.raises(ValidationError, match="max_tokens"):
        SamplingParams()  # no default: vLLM's would be 16
    with pytest.raises(ValidationError):
        SamplingParams(max_tokens=8, top_p=0)


def test_importing_the_package_loads_no_heavy_library():
    heavy = "('torch', 'transformers', 'httpx', 'vllm')"
    code = f"import sys, bard_core.generation; print([m for m in {heavy} if m in sys.modules])"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_a_chat_template_that_opens_the_thinking_is_written_back_in_front_of_the_completion():
    # DeepSeek-R1-Distill's generation prompt ends with "<think>\n": vLLM returns only what follows it
    messages = [{"role": "user", "content": "2+2?"}]
    chat = GenerationRequest(uid="a", messages=messages, sampling=SamplingParams(max_tokens=9))
    plain = GenerationRequest(uid="b", prompt="<think>\n", sampling=SamplingParams(max_tokens=9))
    chat_item, plain_item = engine_requests([chat, plain])
    r1_prompt = "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n"
    args = dict(prompt_tokens=9, token_ids=[5, 6], finish_reason="stop", model="m")
    assert to_completion(chat_item, text="2+2 is 4.\n</think>\n\n4", templated_prompt=r1_prompt, **args).text == (
        "<think>\n2+2 is 4.\n</think>\n\n4"
    )
    # a template that leaves the thinking to the model, and a plain prompt (the caller's own text): as returned
    qwen_prompt = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert to_completion(chat_item, text="<think>x</think>4", templated_prompt=qwen_prompt, **args).text == (
        "<think>x</think>4"
    )
    assert to_completion(plain_item, text="x</think>4", templated_prompt="<think>\n", **args).text == "x</think>4"
