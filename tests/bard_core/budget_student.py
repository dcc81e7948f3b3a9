"""A tiny model trained here, in about 15 s on one CPU thread, to follow a thinking budget written in its prompt:
for "what is\\nThink for at most B tokens." it writes `<think>`, B thinking tokens ("step " B/2 times), `</think>`,
"done". Small enough for tests, real enough that soft mode's lengths follow the budget (exactly at the trained
budgets, roughly between them)."""

from __future__ import annotations

import random
from pathlib import Path

TEMPLATE = "Think for at most {budget} tokens."
QUESTION = "what is"
TRAINED_BUDGETS = (2, 4, 8, 12, 16, 24)
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = ["<think>", "</think>", " ", "\n", "user", "assistant", "Think", "for", "at", "most", "tokens.", "step", "done",
         "what", "is", *"0123456789"]  # fmt: skip
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_budget_student(out_dir: str | Path, steps: int = 300, seed: int = 0) -> Path:
    import torch

    out_dir = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine ran 10x slower
    try:
        return _train(out_dir, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, steps: int, seed: int) -> Path:
    import torch
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    rng = random.Random(seed)
    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s|\d"), behavior="isolated")  # every digit a token
    core.decoder = decoders.Fuse()
    core.add_tokens([AddedToken("<think>", normalized=False), AddedToken("</think>", normalized=False)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    config = Qwen3Config(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"],
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)

    def example(budget: int) -> tuple[list[int], list[int]]:
        user = f"{QUESTION}\n{TEMPLATE.format(budget=budget)}"  # bard's add_budget with the default separator
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        completion = "<think>" + "step " * (budget // 2) + "</think>done<|im_end|>"
        return (tokenizer(prompt, add_special_tokens=False)["input_ids"],
                tokenizer(completion, add_special_tokens=False)["input_ids"])  # fmt: skip

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pad = vocab["<pad>"]
    for _ in range(steps):
        batch = [example(rng.choice(TRAINED_BUDGETS)) for _ in range(32)]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (p, c) in enumerate(batch):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)  # loss on the completion only, as bard's SFT
            mask[i, : len(p) + len(c)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.generation_config = GenerationConfig(eos_token_id=vocab["<|im_end|>"], pad_token_id=pad)
    model.save_pretrained(out_dir)
    return out_dir
