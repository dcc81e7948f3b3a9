"""`sft.group_by_length`: batches of rows of similar length, so the trainer pads less (bench/train/sft_vs_loop.py
measures the speed). Off by default, and keyed only when on: the shipped profiles keep their keys."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bard_core.config import load_config
from bard_core.training.sft_trl import TRLSFTRecipe
from tasks import graph

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_group_by_length_is_off_by_default_and_keyed_when_on():
    demo = load_config(DEMO)
    assert demo.sft.group_by_length is False
    grouped = load_config(DEMO, ["sft.group_by_length=true"])
    assert graph.key("sft", grouped) != graph.key("sft", demo), "another data order trains another model"
    assert graph.key("assemble", grouped) == graph.key("assemble", demo)


def rows_of_every_length(tmp_path) -> Path:
    """An sft_dataset file of 32 rows whose thinking runs from 1 to 32 words, in a shuffled order."""
    rows = [{
        "prompt": [{"role": "user", "content": f"what is {n} plus 1\nThink for at most 40 tokens."}],
        "completion": [{"role": "assistant", "content": "<think>\n" + " ".join(["1"] * n) + "\n</think>\n\n\\boxed{2}"}],
        "split": "train", "kind": "budget",
    } for n in (7 * i % 32 + 1 for i in range(32))]  # fmt: skip
    data = tmp_path / "sft.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    return data


def _padding(recipe: TRLSFTRecipe) -> int:
    """Pad positions over one epoch of the trainer's own batches."""
    return sum(int((batch["attention_mask"] == 0).sum()) for batch in recipe.trainer.get_train_dataloader())


def test_group_by_length_batches_rows_of_similar_length(tmp_path):
    data = rows_of_every_length(tmp_path)
    padding = {}
    for grouped in (False, True):
        config = load_config(DEMO, ["sft.batch_size=4", "sft.packing=false", f"sft.group_by_length={grouped}"], home=str(tmp_path))
        recipe = TRLSFTRecipe(config, [str(data)], tmp_path / f"out-{grouped}")
        recipe.setup()
        padding[grouped] = _padding(recipe)
        recipe.cleanup()
    # transformers sorts within "megabatches": 2 batches here (a quarter of a tiny set), 50 batches on the demo's rows
    assert padding[True] < 0.75 * padding[False], padding


def test_packed_rows_train_as_if_each_sequence_were_alone(tmp_path):
    """`sft.packing`: several sequences share a row, and the loss is the one each sequence would have alone, so
    packing changes the speed, not what a batch teaches."""
    import torch

    data = rows_of_every_length(tmp_path)
    config = load_config(DEMO, ["sft.batch_size=4", "sft.packing=true", "sft.max_length=128"], home=str(tmp_path))
    recipe = TRLSFTRecipe(config, [str(data)], tmp_path / "out")
    recipe.setup()
    batch = next(iter(recipe.trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape == batch["position_ids"].shape
    starts = (batch["position_ids"] == 0).sum(dim=1)
    assert batch["input_ids"].shape[0] == 4 and bool((starts >= 2).all()), "rows stay apart, several sequences each"

    model = recipe.model.eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"]).loss
        total, tokens = 0.0, 0
        for ids, positions, labels in zip(batch["input_ids"], batch["position_ids"], batch["labels"]):
            bounds = (positions == 0).nonzero().flatten().tolist() + [len(ids)]
            for a, b in zip(bounds, bounds[1:]):
                if (labels[a:b] != -100).sum() == 0:
                    continue  # padding at the row's end
                alone = model(input_ids=ids[None, a:b], labels=labels[None, a:b])
                n = int((labels[a + 1 : b] != -100).sum())  # the model predicts each label from the tokens before it
                total, tokens = total + float(alone.loss) * n, tokens + n
    assert tokens == int((batch["labels"][:, 1:] != -100).sum())
    assert abs(float(packed) - total / tokens) < 1e-4, (float(packed), total / tokens)
    recipe.cleanup()
