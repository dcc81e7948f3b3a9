"""The student: a local Hugging Face model directory, or a Qwen3-architecture model built from config,
with its tokenizer and a ChatML chat template that keeps `<think>` blocks in assistant turns.
"""

from __future__ import annotations

from pathlib import Path

from bard_core.config import BudgetConfig, StudentConfig
from bard_core.errors import BardError

# ChatML, as Qwen3's, without its tool and thinking-toggle branches: assistant content is kept verbatim,
# `<think>...</think>` included, so a trained completion is exactly what the model learns to write.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def load_tokenizer(cfg: StudentConfig):
    """A fast transformers tokenizer: the model directory's own, the Qwen3 vocabulary, or a tokenizer.json."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if cfg.tokenizer is None and cfg.model is not None:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        if cfg.chat_template is not None:
            tokenizer.chat_template = cfg.chat_template
        return tokenizer
    if cfg.tokenizer in (None, "qwen3"):
        from bard_core.tokenizers import qwen3_tokenizers

        core = qwen3_tokenizers()
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
        )
    else:
        path = Path(cfg.tokenizer)
        if not path.is_file():
            raise FileNotFoundError(f"student.tokenizer: {path} is not a tokenizer.json file")
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
        for name, token in (("eos_token", "<|im_end|>"), ("pad_token", "<pad>")):
            if getattr(tokenizer, name) is None and token in tokenizer.get_vocab():
                setattr(tokenizer, name, token)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = cfg.chat_template or CHAT_TEMPLATE
    return tokenizer


def check_chat_template(tokenizer, row: dict, budget: BudgetConfig, model: str) -> None:
    """Render one SFT row (prompt + completion turns) through the chat template and stop if the completion's
    thinking is not in the text. Some templates (DeepSeek-R1-Distill's) cut everything before `</think>` from
    assistant turns, and SFT would then train on answers without their reasoning."""
    content = row["completion"][-1]["content"]
    if budget.think_close not in content:
        return  # nothing to lose: a row without thinking
    thinking = content.split(budget.think_close)[0].replace(budget.think_open, "").strip()
    if not thinking:
        return
    text = tokenizer.apply_chat_template(list(row["prompt"]) + list(row["completion"]), tokenize=False)
    if thinking not in text:
        raise BardError(
            f"student {model}: its chat template drops the thinking ({budget.think_open}...{budget.think_close}) "
            f"from assistant turns, so SFT would train on answers without their reasoning. Set "
            f"`student.chat_template` to a template that keeps assistant content as it is (for example bard's "
            f"ChatML, bard_core.student.CHAT_TEMPLATE)"
        )


def load_model(cfg: StudentConfig, tokenizer, dtype=None):
    """The model directory's weights, or a new Qwen3 model sized by `architecture` for this tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    if cfg.model is not None:
        return AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    arch = cfg.architecture
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
            num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
            num_key_value_heads=arch.num_key_value_heads, head_dim=arch.hidden_size // arch.num_attention_heads,
            max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=arch.tie_word_embeddings,
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model
