"""transformers 5 swaps a model's layers for kernels it downloads from the Hugging Face Hub whenever a model loads
(`use_kernels` on by default). On a GPU that is a download at run time: on an offline H200 node it failed GRPO's
reference model. Every model bard loads, and the reference model TRL loads for GRPO, has them off; a user who
sets USE_HUB_KERNELS keeps their choice."""

import pyarrow as pa
import pyarrow.parquet as pq

from bard_core.config import load_config
from bard_core.config.generation import HFBackendConfig
from bard_core.generation.hf_backend import HFBackend
from bard_core.training.grpo_trl import TRLGRPORecipe


def test_the_hf_engine_loads_without_hub_kernels(tiny_model, monkeypatch):
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    assert HFBackend(HFBackendConfig(backend="hf", model=tiny_model)).model.use_kernels is False


def test_a_users_own_setting_is_kept(tiny_model, monkeypatch):
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    assert HFBackend(HFBackendConfig(backend="hf", model=tiny_model)).model.use_kernels is True


def test_grpo_policy_and_reference_load_without_hub_kernels(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    rows = [{"prompt": [{"role": "user", "content": f"one plus {i} is"}], "answer": str(i + 1), "budget": 16, "split": "train"}
            for i in range(4)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rl.parquet")
    config = load_config(None, ["grpo={max_steps: 1, num_generations: 2, prompts_per_step: 1, beta: 0.04, report_to: []}",
                                "budget.tokenizer_mismatch_reason=a test, budgets stay counted in the demo words"],
                         home=str(tmp_path / "home"))  # fmt: skip
    recipe = TRLGRPORecipe(config, tiny_model, [str(tmp_path / "rl.parquet")], tmp_path / "out")
    recipe.setup()
    assert recipe.trainer.ref_model is not None  # beta > 0: TRL loads a reference model of its own
    assert recipe.trainer.model.use_kernels is False
    assert recipe.trainer.ref_model.use_kernels is False
    recipe.cleanup()
