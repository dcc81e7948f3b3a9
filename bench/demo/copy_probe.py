"""Which part of the demo's arithmetic a student has learned: operator, operand, or sum.

    .venv/bin/python bench/demo/copy_probe.py SFT_DATASET_DIR MODEL_DIR [MODEL_DIR ...]

For each model (a model directory, or a checkpoints directory whose checkpoint-N are probed in order of N),
the teacher-forced accuracy on the dataset's validation rows of the tokens of every step line "43 + 9 = 52 .":
the operator (copied from the question), the operand's digit (copied from the question), the first digit of the
result ("sum", computed) and a two-digit result's last digit (computed, and the one an unfinished student misses).
A student that has not learned to copy an operand sits at chance (0.5 for the operator, about 0.1 for the digit). SFT_DATASET_DIR: <home>/artifacts/assemble/<key>/sft_dataset. SFT keeps its
checkpoints under <home>/artifacts/sft/<key>/_parts/checkpoints while it trains (they go when it finishes).
"""

import re
import sys
from pathlib import Path

import duckdb
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

STEP_LINE = re.compile(r"(?m)^\d+ ([+-]) (\d) = (\d)(\d)? \.$")


def probe(model_dir: Path, texts: list[str], targets: list[list[tuple[str, int]]]) -> dict[str, float]:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    enc = tokenizer(texts, return_offsets_mapping=True, padding=True, return_tensors="pt")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        predicted = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.argmax(-1)
    right, seen = {}, {}
    for i, row_targets in enumerate(targets):
        starts = {start: j for j, (start, end) in enumerate(enc["offset_mapping"][i].tolist()) if end > start}
        for part, char in row_targets:
            j = starts[char]
            right[part] = right.get(part, 0) + int(predicted[i, j - 1] == enc["input_ids"][i, j])
            seen[part] = seen.get(part, 0) + 1
    return {part: right[part] / seen[part] for part in seen}


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dataset, models = sys.argv[1], [Path(p) for p in sys.argv[2:]]
    torch.set_num_threads(1)
    rows = duckdb.sql(
        f"select prompt, completion from '{dataset}/*.parquet' where split = 'validation' and thinking_tokens > 20 limit 150"
    ).fetchall()
    dirs = []
    for m in models:
        found = sorted(m.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        dirs += found or [m]
    template = PreTrainedTokenizerFast.from_pretrained(dirs[0])
    texts, targets = [], []
    for prompt, completion in rows:
        text = template.apply_chat_template(list(prompt) + list(completion), tokenize=False)
        think = text.index("<think>")
        row_targets = []
        for m in STEP_LINE.finditer(text, think):
            # the operator's token is " +" (it starts at the space); digits are tokens of their own
            row_targets += [("operator", m.start(1) - 1), ("operand", m.start(2)), ("sum", m.start(3))]
            if m.group(4):  # a two-digit result's last digit: a student can copy well and still add badly
                row_targets.append(("last digit", m.start(4)))
        targets.append(row_targets)
        texts.append(text)
    print(f"{len(rows)} validation rows, {sum(p == 'operator' for t in targets for p, _ in t)} step lines")
    for d in dirs:
        acc = probe(d, texts, targets)
        print(f"{d}  " + "  ".join(f"{part} {value:.2f}" for part, value in acc.items()), flush=True)


if __name__ == "__main__":
    main()
