"""Stages `teacher` and `compress` end to end on a real local Ray, the hf backend and a tiny model built from
config: artifacts, statistics, catalog views, caching and invalidation, and kill -9 then resume."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bard_core.config import load_config
from storage.query import run_query
from tasks import graph
from tests.conftest import BARD, kill_9_when


def write_config(tmp_path: Path, model: str, n_problems: int, **extra: str) -> Path:
    source = tmp_path / "toy.jsonl"
    words = "one two three four five six seven eight nine".split()
    with open(source, "w") as f:
        for i in range(n_problems):
            f.write(json.dumps({"question": f"{words[i % 9]} plus {words[(i // 9) % 9]}", "answer": str(i)}) + "\n")
    gen = f"{{backend: hf, model: '{model}', batch_size: 4}}"
    text = f"""
problems: {{sources: [{{kind: jsonl, path: '{source}'}}]}}
budget: {{tokenizer: '{model}/tokenizer.json'}}
budget_sampling: {{mode: uniform, min_budget: 1, max_budget: 12, per_chain: 2}}
teacher:
  generation: {gen}
  sampling: {{temperature: 1.0, max_tokens: {extra.pop('max_tokens', 16)}, n: 2, seed: 3}}
  shard_rows: {extra.pop('shard_rows', 8)}
  commit_rows: 2
compress:
  generation: {gen}
  sampling: {{max_tokens: 12}}
  only_correct: false
  shard_rows: 16
  commit_rows: {extra.pop('compress_commit_rows', 8)}
ray: {{num_cpus: 1}}
"""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def files(manifest, table):
    return [pq.read_table(f) for f in manifest.files(table)]


def test_teacher_then_compress_with_statistics_views_and_caching(tmp_path, ray_local, tiny_model):
    # The random model rarely closes a thinking block: budgets count whole completions here, so chains have length.
    config = write_config(tmp_path, tiny_model, 20, max_tokens=24)
    cfg = load_config(config, ["budget.count=completion"], home=str(tmp_path / "home"))
    graph.build("problems", cfg)
    samples = graph.build("teacher", cfg)
    rows = [r for t in files(samples, "teacher_samples") for r in t.to_pylist()]
    assert len(rows) == samples.rows("teacher_samples") == 40 and len(samples.tables["teacher_samples"]) == 3
    assert len({r["uid"] for r in rows}) == 40 and {r["sample_idx"] for r in rows} == {0, 1}
    assert samples.stats["chunks"] == 10 and samples.stats["chunks_resumed"] == 0
    overall = samples.stats["per_source"][-1]
    assert overall["source"] == "all" and overall["samples"] == 40 and overall["problems"] == 20
    assert overall["finish_stop"] + overall["finish_length"] == 40 and overall["accuracy"] == 0.0
    assert not (Path(samples.path) / "_parts").exists()
    assert run_query(cfg.home, "select count(*) from teacher_samples").column(0)[0].as_py() == 40
    assert run_query(cfg.home, "select samples from teacher_stats where source = 'all'").column(0)[0].as_py() == 40

    rewrites = graph.build("compress", cfg)
    out = [r for t in files(rewrites, "compressions") for r in t.to_pylist()]
    eligible = [r for r in rows if not r["truncated"] and r["thinking_tokens"] >= 2]
    assert len(eligible) >= 5, "about half the samples stop (EOS) before max_tokens"
    assert {r["sample_uid"] for r in out} == {r["uid"] for r in eligible}
    assert all(r["budget"] < r["teacher_thinking_tokens"] for r in out)
    assert all(r["reject_reason"] in ("format", "answer_changed", "over_budget") for r in out if not r["accepted"])
    assert rewrites.stats["per_tier"][-1]["rewrites"] == len(out)
    assert run_query(cfg.home, "select sum(rewrites) from compress_stats where tier <> 'all'").column(0)[0].as_py() == len(out)

    assert graph.build("teacher", cfg) == samples and graph.build("compress", cfg) == rewrites, "finished artifacts are reused"
    tighter = cfg.model_copy(update={"compress": cfg.compress.model_copy(update={"tau": 0.5})})
    assert graph.key("teacher", tighter) == samples.key, "a compressor change leaves the teacher alone"
    assert graph.key("compress", tighter) != rewrites.key
    more = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"workers": 2})})
    assert graph.key("teacher", more) == samples.key, "how many engines run is not part of the key"

    # The tiny compressor is a Qwen3 model (its config.json) left thinking: the stage says so in its statistics.
    assert [n for n in rewrites.stats["notes"] if "is a Qwen3 model with thinking on" in n]
    # Prompts over compress.max_input_tokens are never sent and never fail the stage: every row is too_long.
    unreadable = cfg.model_copy(update={"compress": cfg.compress.model_copy(update={"max_input_tokens": 5})})
    skipped = graph.build("compress", unreadable)
    rows_skipped = [r for t in files(skipped, "compressions") for r in t.to_pylist()]
    assert len(rows_skipped) == len(out) and {r["reject_reason"] for r in rows_skipped} == {"too_long"}
    assert skipped.stats["per_tier"][-1]["too_long"] == len(out) and skipped.stats["prompt_tokenizer"] == tiny_model


# compress resumes with the same code as teacher (tasks/generate.py) and takes 70 s: `make test-slow` runs it
@pytest.mark.parametrize("name", ["teacher", pytest.param("compress", marks=pytest.mark.slow)])
def test_kill_9_midway_then_resume_gives_the_same_artifact(tmp_path, ray_local, tiny_model, name):
    config = write_config(tmp_path, tiny_model, 60, max_tokens=48, shard_rows=20, compress_commit_rows=2)
    before = {"teacher": ["problems"], "compress": ["problems", "teacher"]}[name]
    table = {"teacher": "teacher_samples", "compress": "compressions"}[name]
    home = tmp_path / "killed"
    for upstream in before:
        graph.build(upstream, load_config(config, ["budget.count=completion"], home=str(home)))
    cmd = [BARD, "stage", name, "--config", str(config), "--home", str(home), "--set", "budget.count=completion"]
    parts = home / "artifacts" / name

    kill_9_when(cmd, lambda: len(list(parts.glob(f"*/_parts/{table}/*/part-*.parquet"))) >= 3)
    assert not list(parts.glob("*/manifest.json"))
    committed = len(list(parts.glob(f"*/_parts/{table}/*/part-*.parquet")))

    resumed = graph.build(name, load_config(config, ["budget.count=completion"], home=str(home))).model_dump()  # the rerun
    fresh_cfg = load_config(config, ["budget.count=completion"], home=str(tmp_path / "fresh"))
    for stage in before + [name]:
        fresh = graph.build(stage, fresh_cfg).model_dump()
    assert 3 <= committed <= resumed["stats"]["chunks_resumed"] < resumed["stats"]["chunks"]
    assert resumed["content_hash"] == fresh["content_hash"] and resumed["tables"] == fresh["tables"]
    uids = [u for f in sorted(Path(resumed["path"]).glob(f"{table}/*.parquet"))
            for u in pq.read_table(f, columns=["uid"]).column("uid").to_pylist()]  # fmt: skip
    assert len(uids) == len(set(uids)) == sum(s["rows"] for s in resumed["tables"][table]) > 0


def test_engine_actors_ask_ray_for_the_gpus_their_backend_needs(ray_local):
    from bard_core.generation import HFBackendConfig, OpenAIBackendConfig, VLLMBackendConfig
    from tasks.generate import actor_resources

    assert actor_resources(VLLMBackendConfig(backend="vllm", model="m", tensor_parallel_size=4)) == {"num_cpus": 1, "num_gpus": 4}
    assert actor_resources(HFBackendConfig(backend="hf", model="m", device="cuda:1"))["num_gpus"] == 1
    assert actor_resources(HFBackendConfig(backend="hf", model="m"))["num_gpus"] == 0, "auto on a Ray without GPUs"
    assert actor_resources(OpenAIBackendConfig(backend="openai", base_url="http://x/v1", model="m"))["num_gpus"] == 0
