"""The student: a local Hugging Face model directory, or a Qwen3-architecture model built from config,
with its tokenizer and a ChatML chat template that keeps `<think>` blocks in assistant turns.

What a real chat checkpoint needs before SFT, all decided here by looking at its tokenizer and template:
- think tags that are several tokens of its vocabulary (SmolLM2: `<`, `think`, `>`) become one added token each,
  and the embeddings grow to match (`load_model`), so a tag is one token in SFT, in GRPO's id count and in
  eval's and inference's cap, as in Qwen3;
- the token its template ends an assistant turn with (`<|im_end|>`) is the EOS generation stops at, even where
  the checkpoint's own EOS is another (a base model's `<|endoftext|>`);
- a template whose generation prompt opens the thinking itself (DeepSeek-R1-Distill) must not get a second
  opening tag from the row (`check_chat_template`).
"""

from __future__ import annotations

import os
from pathlib import Path

from bard_core.config import BudgetConfig, StudentConfig
from bard_core.errors import BardError
from bard_core.scoring.thinking import prompt_opens_thinking

# ChatML, as Qwen3's, without its tool and thinking-toggle branches: assistant content is kept verbatim,
# `<think>...</think>` included, so a trained completion is exactly what the model learns to write.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def no_hub_kernels() -> None:
    """transformers 5 swaps a model's layers for kernels downloaded from the Hugging Face Hub whenever it loads one
    onto a GPU (`use_kernels` is on by default): a download at run time, which on an offline GPU node fails (an H200
    here: GRPO's reference model, "kernels-community/rotary is not available in the local cache") and which ties
    the numerics to what the Hub serves that day. Off in this process, unless USE_HUB_KERNELS is set already."""
    os.environ.setdefault("USE_HUB_KERNELS", "NO")


def load_tokenizer(cfg: StudentConfig, budget: BudgetConfig | None = None):
    """A fast transformers tokenizer: the model directory's own, the Qwen3 vocabulary, or a tokenizer.json; its think
    tags one token each and its EOS the template's end of turn (see the module's note). `budget` names the tags."""
    tokenizer = _base_tokenizer(cfg)
    tags = budget or BudgetConfig()
    missing = [t for t in (tags.think_open, tags.think_close) if len(_ids(tokenizer, t)) != 1]
    if missing:
        from tokenizers import AddedToken

        # Not special: decoding with skip_special_tokens (the hf backend, TRL) must keep the tags in the text.
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    turn_end = end_of_turn(tokenizer)
    if turn_end is not None and turn_end != tokenizer.eos_token:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # the checkpoint's EOS pads; it no longer ends a turn
        tokenizer.eos_token = turn_end
    return tokenizer


def changes_checkpoint(cfg: StudentConfig, ours) -> bool:
    """Whether `ours` (what `load_tokenizer` made of `student.model`) differs from the checkpoint's own tokenizer
    (think tags added, another chat template, EOS or pad), so that a trainer which loads the checkpoint by path
    (OpenRLHF) must be given a prepared copy."""
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(cfg.model)
    return (len(ours), ours.chat_template, ours.eos_token, ours.pad_token) != (
        len(own), own.chat_template, own.eos_token, own.pad_token)  # fmt: skip


def _base_tokenizer(cfg: StudentConfig):
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


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def end_of_turn(tokenizer) -> str | None:
    """The token the chat template closes an assistant turn with (`<|im_end|>` for ChatML), read by rendering one
    turn: the first token after its content, when that is one of the tokenizer's special or added tokens. None
    without a template, or when the template writes no such token there."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    mark = "bard-end-of-turn-probe"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "?"}, {"role": "assistant", "content": mark}], tokenize=False
    )
    after = text[text.rfind(mark) + len(mark) :].lstrip()
    ids = _ids(tokenizer, after) if after else []
    if not ids or ids[0] not in tokenizer.added_tokens_decoder:
        return None
    return tokenizer.convert_ids_to_tokens(ids[0])


def template_opens_thinking(tokenizer, budget: BudgetConfig, **template_kwargs) -> bool:
    """Whether the chat template's generation prompt ends inside an opened thinking block (DeepSeek-R1-Distill's
    and Qwen3-Thinking's end with `<think>\\n`): the model's completion then starts inside its thinking."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "?"}], tokenize=False, add_generation_prompt=True, **template_kwargs
    )
    return prompt_opens_thinking(prompt, budget)


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
    fix = ("Set `student.chat_template` to a template that keeps assistant content as it is (for example bard's "
           "ChatML, bard_core.student.CHAT_TEMPLATE)")
    text = tokenizer.apply_chat_template(list(row["prompt"]) + list(row["completion"]), tokenize=False)
    if thinking not in text:
        raise BardError(
            f"student {model}: its chat template drops the thinking ({budget.think_open}...{budget.think_close}) "
            f"from assistant turns, so SFT would train on answers without their reasoning. {fix}"
        )
    # SFT trains on what follows the generation prompt (TRL cuts the rendered row where the prompt alone ends). A
    # template that opens the thinking in its generation prompt and again writes the row's own opening tag would
    # teach a second `<think>`, which the model would then write after the one its prompt gives it.
    prompt = tokenizer.apply_chat_template(list(row["prompt"]), tokenize=False, add_generation_prompt=True)
    if prompt_opens_thinking(prompt, budget) and text.startswith(prompt):
        trained = text[len(prompt) :]
        if trained[: trained.find(thinking)].count(budget.think_open):
            raise BardError(
                f"student {model}: its chat template opens the thinking in the generation prompt and writes the "
                f"row's own {budget.think_open} again, so SFT would teach the model a second {budget.think_open} "
                f"after the one its prompt gives it. {fix}"
            )


def load_model(cfg: StudentConfig, tokenizer, dtype=None):
    """The model directory's weights, or a new Qwen3 model sized by `architecture` for this tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    if cfg.model is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # think tags added by load_tokenizer
            model.resize_token_embeddings(len(tokenizer))
        # Generation (the hf backend, TRL's GRPO rollouts, eval) stops at the tokenizer's EOS, the template's end of
        # turn, and at whatever the checkpoint stopped at before.
        old = model.generation_config.eos_token_id
        old = [] if old is None else [old] if isinstance(old, int) else list(old)
        eos = [tokenizer.eos_token_id] + [i for i in old if i != tokenizer.eos_token_id]
        model.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model
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
