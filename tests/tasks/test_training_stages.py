"""Stages `sft` and `grpo` with TRL on a tiny Qwen3 student built from config: the model artifacts, their
metrics and logs, a run killed midway that resumes from its last checkpoint with the same loss curve, and
GRPO with the BARD reward, its logged components and the difficulty filter."""

import json
import shutil
from pathlib import Path

import pytest

from bard_core.config import load_config
from bard_core.training.checkpoints import read_progress
from tasks import graph
from tests.conftest import BARD, kill_9_when
from tests.tasks.synthetic_upstream import write_upstream


def write_config(tmp: Path, tokenizer: str) -> Path:
    source = tmp / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"one plus {i} is", "answer": str(i + 1)}) + "\n" for i in range(40)))
    path = tmp / "c.yaml"
    path.write_text(f"""
problems: {{sources: [{{kind: jsonl, path: '{source}'}}]}}
budget_sampling: {{mode: uniform, min_budget: 5, max_budget: 40}}
budget: {{tokenizer_mismatch_reason: "a test of the training stages: budgets stay counted in Qwen3 tokens"}}
assemble: {{validation_fraction: 0.1}}
student:
  tokenizer: '{tokenizer}'
  architecture: {{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
                  intermediate_size: 64, max_position_embeddings: 512}}
sft: {{learning_rate: 0.003, max_steps: 16, batch_size: 4, save_steps: 4, logging_steps: 1, max_length: 256,
       warmup_ratio: 0.0}}
grpo: {{max_steps: 2, num_generations: 4, prompts_per_step: 2, completion_factor: 1.0, answer_tokens: 8,
        save_steps: 1, learning_rate: 0.0001, report_to: []}}
ray: {{num_cpus: 1}}
""")
    return path


def upstream(config_path: Path, home: Path):
    config = load_config(config_path, home=str(home))
    graph.build("problems", config)
    write_upstream(config, samples=2, budgets=2, words=30)
    graph.build("assemble", config)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_local, tiny_model):
    tmp = tmp_path_factory.mktemp("sft")
    config_path = write_config(tmp, f"{tiny_model}/tokenizer.json")
    config = upstream(config_path, tmp / "uninterrupted")
    return config_path, graph.build("sft", config)


def test_the_model_artifact_loads_and_learned(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, manifest = trained
    out = Path(manifest.path)
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert model.config.hidden_size == 32 and tokenizer.chat_template and "<think>" in tokenizer.get_vocab()
    metrics = json.loads((out / "metrics.json").read_text())
    curve = [p["loss"] for p in metrics["loss_curve"]]
    assert metrics["steps"] == 16 and len(curve) == 16 and metrics["resumed_from"] is None
    assert sum(curve[-4:]) / 4 < 0.9 * sum(curve[:4]) / 4, "the loss falls"
    assert list((out / "tensorboard").rglob("events.out.tfevents.*")), "TensorBoard logs"
    assert not (out / "_parts").exists(), "checkpoints are scratch, removed once the model is committed"
    assert manifest.stats["steps"] == 16 and manifest.stats["last_loss"] == curve[-1]


def test_kill_9_midway_then_resume_gives_the_same_loss_curve(trained, tmp_path):
    config_path, uninterrupted = trained
    home = tmp_path / "killed"
    upstream(config_path, home)
    cmd = [BARD, "stage", "sft", "--config", str(config_path), "--home", str(home)]
    # 16 steps of this model take ~0.4 s: kill at the first checkpoint, so some are still to come
    kill_9_when(cmd, lambda: bool(list(home.glob("artifacts/sft/*/_parts/checkpoints/checkpoint-4/trainer_state.json"))))
    assert not list(home.glob("artifacts/sft/*/manifest.json"))
    (killed,) = home.glob("artifacts/sft/*")
    step, total = read_progress(killed)  # what the driver's progress bar and Prefect's progress artifact read
    assert 4 <= step <= 16 and total == 16

    progress = []
    rerun = graph.build("sft", load_config(config_path, home=str(home)), on_progress=lambda done, of: progress.append((done, of)))
    assert progress[-1] == (16, 16) and all(of == 16 and done >= 4 for done, of in progress), progress
    resumed = json.loads((Path(rerun.path) / "metrics.json").read_text())
    fresh = json.loads((Path(uninterrupted.path) / "metrics.json").read_text())
    assert resumed["resumed_from"] in ("checkpoint-4", "checkpoint-8", "checkpoint-12")
    assert [p["step"] for p in resumed["loss_curve"]] == [p["step"] for p in fresh["loss_curve"]] == list(range(1, 17))
    for a, b in zip(resumed["loss_curve"], fresh["loss_curve"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]


def test_a_checkpoint_cut_off_mid_save_is_not_resumed_from(tmp_path):
    from bard_core.training.checkpoints import last_complete_checkpoint

    root = tmp_path / "checkpoints"
    for step, state in ((4, "{}"), (8, '{"global_step": 8}'), (12, None), (16, '{"glob')):
        (root / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (root / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(root) == str(root / "checkpoint-8")
    assert sorted(d.name for d in root.iterdir()) == ["checkpoint-4", "checkpoint-8"]
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_grpo_from_the_sft_model_with_the_bard_reward(trained):
    from transformers import AutoModelForCausalLM

    config_path, sft_manifest = trained
    config = load_config(config_path, home=str(Path(sft_manifest.path).parents[2]))
    manifest = graph.build("grpo", config)
    assert manifest.inputs == {"sft": sft_manifest.key, "assemble": graph.key("assemble", config)}
    metrics = json.loads((Path(manifest.path) / "metrics.json").read_text())
    assert metrics["steps"] == 2 and len(metrics["per_step"]) == 2
    for step in metrics["per_step"]:  # the reward and its components, logged each step
        for key in ("reward", "bard/accuracy", "bard/budget_reward", "bard/thinking_tokens", "bard/over_budget",
                    "frac_reward_zero_std"):  # fmt: skip
            assert key in step, key
        assert 0.0 <= step["bard/over_budget"] <= 1.0
    assert AutoModelForCausalLM.from_pretrained(Path(manifest.path) / "model").config.hidden_size == 32

    # The difficulty filter: this barely trained student solves no prompt, so nothing is left to learn from,
    # and the stage says so instead of training on groups without signal.
    filtered = load_config(config_path, ["grpo.prefilter_samples=2", "grpo.max_steps=1"], home=config.home)
    with pytest.raises(Exception, match="difficulty filter left no prompt"):
        graph.build("grpo", filtered)


def test_grpo_early_stopping_on_the_validation_reward(trained):
    """With `early_stopping_patience`, the mean reward on validation prompts is measured at every checkpoint; the run
    stops at the first evaluation that does not improve on the best (patience 1) and keeps the best checkpoint."""
    config_path, sft_manifest = trained
    sets = ["grpo.max_steps=6", "grpo.save_steps=1", "grpo.early_stopping_patience=1", "grpo.validation_prompts=2"]
    manifest = graph.build("grpo", load_config(config_path, sets, home=str(Path(sft_manifest.path).parents[2])))
    metrics = json.loads((Path(manifest.path) / "metrics.json").read_text())
    rewards = [(h["step"], h["eval_reward"]) for h in metrics["validation"]]
    assert rewards and [s for s, _ in rewards] == list(range(1, len(rewards) + 1)), "evaluated at every checkpoint"
    best, expected_stop = rewards[0], None
    for step, reward in rewards[1:]:
        if reward > best[1]:
            best = (step, reward)
        else:
            expected_stop = step
            break
    assert metrics["steps"] == (expected_stop or 6) and metrics["best_step"] == best[0]


def test_grpo_killed_midway_resumes_to_the_same_steps(trained, tmp_path):
    """kill -9 during GRPO, then a rerun: it resumes from the last whole checkpoint and ends where an
    uninterrupted run ends, with the same per-step rewards (sampling is seeded and the RNG state is restored)."""
    config_path, sft_manifest = trained
    longer = ["grpo.max_steps=4"]
    fresh = graph.build("grpo", load_config(config_path, longer, home=str(Path(sft_manifest.path).parents[2])))

    home = tmp_path / "killed"
    upstream(config_path, home)
    sft_dir = home / "artifacts" / "sft" / sft_manifest.key
    sft_dir.parent.mkdir(parents=True)
    shutil.copytree(sft_manifest.path, sft_dir)  # the same SFT model, so the two GRPO runs start alike
    cmd = [BARD, "stage", "grpo", "--config", str(config_path), "--home", str(home), "--set", longer[0]]
    kill_9_when(cmd, lambda: bool(list(home.glob("artifacts/grpo/*/_parts/checkpoints/checkpoint-2/trainer_state.json"))))
    assert not list(home.glob("artifacts/grpo/*/manifest.json"))

    rerun = graph.build("grpo", load_config(config_path, longer, home=str(home)))
    resumed = json.loads((Path(rerun.path) / "metrics.json").read_text())
    uninterrupted = json.loads((Path(fresh.path) / "metrics.json").read_text())
    assert resumed["resumed_from"] in ("checkpoint-2", "checkpoint-3") and resumed["steps"] == 4
    assert [s["step"] for s in resumed["per_step"]] == [s["step"] for s in uninterrupted["per_step"]] == [1, 2, 3, 4]
    for a, b in zip(resumed["per_step"], uninterrupted["per_step"]):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6), a["step"]
        assert a["bard/thinking_tokens"] == pytest.approx(b["bard/thinking_tokens"], abs=1e-6), a["step"]


def test_sft_trains_on_the_kinds_asked_for(trained):
    """`sft.kinds: [standard]` makes the standard distilled model (the ablation's start): only full chains."""
    import duckdb

    from bard_core.training.sft_trl import TRLSFTRecipe

    config_path, manifest = trained
    config = load_config(config_path, ["sft.kinds=[standard]"], home=str(Path(manifest.path).parents[2]))
    files = assemble_files(config)
    recipe = TRLSFTRecipe(config, files, Path(manifest.path).parent / "kinds-probe")
    recipe.setup()
    counts = dict(duckdb.sql(f"select kind, count(*) from read_parquet({files!r}) where split = 'train' group by kind").fetchall())
    assert counts["budget"] > 0 and len(recipe.trainer.train_dataset) == counts["standard"]
    recipe.cleanup()


def assemble_files(config) -> list[str]:
    from storage.artifacts import ArtifactStore

    return ArtifactStore(config.home).manifest("assemble", graph.key("assemble", config)).files("sft_dataset")


def test_sft_with_lora_trains_adapters_and_saves_them_merged(trained):
    """`sft.lora`: only the adapters train (the base weights stay frozen), and the saved model is a plain model
    directory with the adapters merged in, which GRPO and the evaluation load like any other."""
    import torch
    from transformers import AutoModelForCausalLM

    from bard_core.student import load_model
    from bard_core.training.sft_trl import TRLSFTRecipe

    config_path, manifest = trained
    config = load_config(config_path, ["sft.lora={r: 4, alpha: 8}", "sft.max_steps=3", "sft.learning_rate=0.01"],
                         home=str(Path(manifest.path).parents[2]))  # fmt: skip
    recipe = TRLSFTRecipe(config, assemble_files(config), Path(manifest.path).parent / "lora-probe")
    recipe.setup()
    trainable = {n for n, p in recipe.trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    recipe.train()
    recipe.save()
    recipe.cleanup()
    model_dir = Path(manifest.path).parent / "lora-probe" / "model"
    assert not (model_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    base = load_model(config.student, recipe.tokenizer)  # the same seeded initial weights
    merged_weights, base_weights = merged.state_dict(), base.state_dict()
    assert set(merged_weights) == set(base_weights)
    changed = [n for n in base_weights if not torch.equal(merged_weights[n], base_weights[n])]
    assert changed and all(n.endswith("proj.weight") for n in changed)  # the adapted linear layers, merged in
