"""Stage `eval`: the budget sweep of every configured model on the benchmark problems, on
engine actors, then the metrics per budget; commit the artifact, return its manifest.

Tables: `eval_problems` (what was evaluated), `eval_samples` (one row per sample, model after model),
`eval_metrics` (per model, benchmark and budget) and `eval_correlation` (Spearman of length with budget).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from bard_core import contracts, tokenizers
from bard_core import evaluate as stage
from bard_core.config import BardConfig, EvalModel
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from bard_core.generation import GenerationBackendConfig
from bard_core.metrics import budget_metrics, length_correlation
from storage.artifacts import Manifest, shard_paths, write_table
from tasks.build import StageRun
from tasks.generate import Slice, engines_line, run_generation
from tasks.ray_runtime import ensure_ray

NAME = "eval"
TRAINED = ("sft", "grpo")  # the stages whose models eval.models can name


def key_config(config: BardConfig) -> dict:
    """The sweep, and what grading and length counting depend on; not how many engines run it."""
    found = {
        "eval": config.eval.model_dump(mode="json", exclude={"workers", "shard_rows", "commit_rows"}),
        "budget": config.budget.keyed(),
        "verify": config.verify.model_dump(mode="json"),
        "tau": config.reward.tau,
        "tokenizer": tokenizers.fingerprint(config.budget.tokenizer),
    }
    # Models given as local directories (not this config's sft/grpo, keyed by their artifacts): weights replaced in
    # place are not the ones evaluated before.
    files = {}
    for m in config.eval.models:
        path = m.generation.get("model") if m.generation is not None else m.model
        if path and not trained(path) and (fingerprint := model_dir_fingerprint(path)):
            files[m.name] = fingerprint
    if files:
        found["model_files"] = files
    return found


def inputs(config: BardConfig) -> dict[str, str]:
    """The problems, and each model this config trains (`sft`, `grpo`, `grpo@V`), named as in `eval.models`."""
    return {"problems": "problems", **{m.model: m.model for m in config.eval.models if trained(m.model)}}


def trained(spec: str | None) -> bool:
    """Whether a model spec names a model this config trains: `sft`, `grpo`, `sft@V`, `grpo@V`."""
    return (spec or "").partition("@")[0] in TRAINED


def check(config: BardConfig) -> None:
    for m in config.eval.models:
        if m.model and not trained(m.model) and not Path(m.model).is_dir():
            raise BardError(f"eval.models[{m.name}].model: {m.model} is neither sft, grpo nor a model directory")


def engine_config(config: BardConfig, model: EvalModel, model_dir: str) -> GenerationBackendConfig:
    spec = model.generation if model.generation is not None else {**config.eval.generation, "model": model_dir}
    return TypeAdapter(GenerationBackendConfig).validate_python(spec)


def model_dir(config: BardConfig, model: EvalModel, inputs: dict[str, Manifest]) -> str:
    """Where the model's weights are (for an engine of its own: the engine's model name)."""
    if model.generation is not None:
        return engine_config(config, model, "").model
    if trained(model.model):
        return str(Path(inputs[model.model].path) / "model")
    return model.model


def select_problems(files: list[str], config: BardConfig) -> pa.Table:
    """The problems of `eval.splits` (and `eval.benchmarks`), at most `eval.limit` per benchmark: a sample
    seeded by `eval.seed` and the uid, in uid order."""
    cfg = config.eval
    table = duckdb.sql(f"select * from read_parquet({files!r}) where split in {tuple(cfg.splits)!r} order by source, uid").to_arrow_table()
    if cfg.benchmarks is not None:
        missing = set(cfg.benchmarks) - set(table["source"].to_pylist())
        if missing:
            raise BardError(f"eval.benchmarks: no problems of {sorted(missing)} in splits {cfg.splits}")
    rows = [r for r in table.to_pylist() if cfg.benchmarks is None or r["source"] in cfg.benchmarks]
    if cfg.limit:
        rank = lambda r: hashlib.sha256(f"{cfg.seed}:{r['uid']}".encode()).hexdigest()  # noqa: E731
        kept = []
        for source in sorted({r["source"] for r in rows}):
            kept += sorted(sorted((r for r in rows if r["source"] == source), key=rank)[: cfg.limit], key=lambda r: r["uid"])
        rows = kept
    if not rows:
        raise BardError(f"eval: no problems in splits {cfg.splits}: add a test source to problems.sources")
    return pa.Table.from_pylist(rows, schema=contracts.PROBLEMS)


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Sample every model at every budget on engine actors (resuming from the rows committed), then the metrics."""
    config, path, source = job.config, job.path, job.inputs["problems"]
    dirs = {m.name: model_dir(config, m, job.inputs) for m in config.eval.models}
    cfg = config.eval
    chosen = select_problems(source.files("problems"), config)
    shards = write_table(path, "eval_problems", chosen, cfg.shard_rows)
    files = shard_paths(path, "eval_problems", shards)
    base = [Slice(i, f, 0, pq.read_metadata(f).num_rows) for i, f in enumerate(files)]
    ensure_ray(config.ray)
    counts = {}
    for m, model in enumerate(cfg.models):  # model m writes shards m*S .. m*S + S-1 of eval_samples
        slices = [dataclasses.replace(s, index=s.index + m * shards) for s in base]
        engine = engine_config(config, model, dirs[model.name])
        work = functools.partial(stage.sample, config=config, model=model, model_dir=dirs[model.name])
        counts[model.name] = run_generation(
            f"{NAME} {model.name}", engine, slices, work, contracts.EVAL_SAMPLES, path, "eval_samples",
            cfg.commit_rows, cfg.workers, config.ray.for_stage(NAME), job.on_progress,
        )  # fmt: skip
    samples = pq.read_table(shard_paths(path, "eval_samples", shards * len(cfg.models)))
    rows = samples.drop_columns(["completion"]).to_pylist()
    metrics, correlation = budget_metrics(rows, config.reward.tau), length_correlation(rows)
    tables = {
        "eval_problems": shards,
        "eval_samples": shards * len(cfg.models),
        "eval_metrics": write_table(path, "eval_metrics", pa.Table.from_pylist(metrics), 100_000),
        "eval_correlation": write_table(path, "eval_correlation", pa.Table.from_pylist(correlation), 100_000),
    }
    variants = {}  # what each variant's model is, for the report
    for m in cfg.models:
        if m.model and "@" in m.model:
            overrides = config.variants[m.model.split("@")[1]]
            variants[m.name] = f"{m.model} = this config with " + ", ".join(f"{k}: {v}" for k, v in overrides.items())
    return tables, {"models": dirs, "variants": variants, "problems": chosen.num_rows, "samples": samples.num_rows,
                    "correlation": correlation, "generation": counts}  # fmt: skip


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    """One line per model: its engines (a trained model is its artifact's model directory) and their GPUs."""
    lines = []
    for m in config.eval.models:
        where = str(inputs[m.model] / "model") if trained(m.model) else m.model or ""
        engine = engines_line(engine_config(config, m, where), config.eval.workers, config.ray.for_stage(NAME).get("num_gpus"))
        lines.append(f"{m.name}: {engine}")
    return lines


def summary(manifest: Manifest) -> list[dict]:
    return manifest.stats["correlation"]

