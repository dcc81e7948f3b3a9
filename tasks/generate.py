"""Generation stages over Ray: engine actors work through slices of an input table, committing each
chunk of output rows as soon as it is generated.

    <artifact>/_parts/<table>/<slice>/part-<chunk>.parquet    one file per chunk of `commit_rows` input rows

A slice is done when all its chunk files exist. A kill -9 loses only the chunks in flight; a rerun
skips committed chunks, so no row is generated twice. Chunks are cut from the input rows by position,
never by what is left to do, so a resumed chunk sends the engine the same batch as an uninterrupted
run would, and the same seeds give the same rows. When every slice is done, slice i becomes output
shard i.

Ray lives here: each actor holds one engine (`make_backend`), loaded once and reused for every slice
it is given; GPU engines ask Ray for their GPUs. Actors are killed when the stage ends, since vLLM does
not reliably free GPU memory in-process.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bard_core.errors import BardError
from bard_core.generation import GenerationBackendConfig, make_backend
from storage.artifacts import Shard, commit_shard, has_shard
from tasks.ray_runtime import driver_identity, exit_with_driver, plural, progress_bar

log = logging.getLogger("bard")
POLL_S = 1.0  # how often the driver counts committed chunks for the progress bar


@dataclass(frozen=True)
class Slice:
    """Rows [start, start + length) of one input Parquet file: one unit of work for an actor."""

    index: int
    file: str
    start: int
    length: int


def plan_slices(shards: Sequence[Shard], artifact_path: str, slice_rows: int) -> list[Slice]:
    """Cut the input artifact's shards into slices of at most `slice_rows` rows, in input order."""
    slices = []
    for shard in shards:
        for start in range(0, shard.rows, slice_rows):
            length = min(slice_rows, shard.rows - start)
            slices.append(Slice(len(slices), str(Path(artifact_path) / shard.path), start, length))
    return slices


def _part(table: str, index: int) -> str:
    return f"_parts/{table}/{index:05d}"


def chunk_count(spec: Slice, commit_rows: int) -> int:
    return max(1, math.ceil(spec.length / commit_rows))


def chunks_done(artifact_dir: Path, table: str, spec: Slice, commit_rows: int) -> int:
    return sum(has_shard(artifact_dir, _part(table, spec.index), c) for c in range(chunk_count(spec, commit_rows)))


class Engine:
    """Made a Ray actor by `run_generation`: one loaded backend, reused for every slice it runs."""

    def __init__(self, backend_config: GenerationBackendConfig, driver: tuple[int, str]):
        exit_with_driver(driver)
        self.backend = make_backend(backend_config)

    def run(self, spec: Slice, work: Callable, schema: pa.Schema, artifact_dir: str, table: str, commit_rows: int) -> int:
        """Generate and commit every missing chunk of one slice; return the rows written this time."""
        rows = pq.read_table(spec.file).slice(spec.start, spec.length).to_pylist()
        written = 0
        for c in range(chunk_count(spec, commit_rows)):
            if has_shard(artifact_dir, _part(table, spec.index), c):
                continue
            out = work(rows[c * commit_rows : (c + 1) * commit_rows], self.backend)
            commit_shard(artifact_dir, _part(table, spec.index), c, pa.Table.from_pylist(out, schema=schema))
            written += len(out)
        return written


def actor_resources(config: GenerationBackendConfig) -> dict:
    """What one engine actor asks Ray for: its GPUs (vLLM: the tensor-parallel size) and one CPU."""
    import ray

    if config.backend == "vllm":
        return {"num_cpus": 1, "num_gpus": config.tensor_parallel_size}
    if config.backend == "hf":
        wants_gpu = config.device.startswith("cuda") or (
            config.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
        )
        return {"num_cpus": 1, "num_gpus": 1 if wants_gpu else 0}
    return {"num_cpus": 1, "num_gpus": 0}  # openai: the engine is elsewhere


def engines_line(g: GenerationBackendConfig, workers: int, gpus: float | None) -> str:
    """--dry-run's line for a stage's engines and the GPUs they take, as `actor_resources` asks for them; `gpus`
    (`ray.resources.<stage>.num_gpus`, when set) replaces that."""
    if g.backend == "vllm":
        what, each = f"vllm {g.model}, tensor parallel {g.tensor_parallel_size}", g.tensor_parallel_size
    elif g.backend == "hf":
        what = f"hf {g.model} on {g.device}"
        each = 0 if g.device == "cpu" else 1 if g.device.startswith("cuda") else None  # auto: what the cluster has
    elif g.backend == "openai":
        what, each = f"openai {g.model} at {g.base_url}, {g.concurrency} requests in flight per actor", 0
    else:
        what, each = f"scripted {g.role}", 0
    each = gpus if gpus is not None else each
    actors = plural(workers, "engine actor")
    if each is None:
        return f"{what}: {actors}, 1 GPU each when the cluster has one, else CPU"
    if each == 0:
        return f"{what}: {actors}, no GPU"
    return f"{what}: {actors} x {plural(each, 'GPU')} = {plural(workers * each, 'GPU')}"


def run_generation(
    label: str,
    backend_config: GenerationBackendConfig,
    slices: Sequence[Slice],
    work: Callable,
    schema: pa.Schema,
    artifact_dir: Path,
    table: str,
    commit_rows: int,
    workers: int,
    resources: dict[str, float] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run every unfinished slice on up to `workers` engine actors (each asking Ray for `resources` over the
    backend's own needs), then commit slice i as output shard i.
    `work(rows, backend) -> output rows` must be picklable (a module function or a functools.partial).
    Returns counts for the stage's statistics."""
    import ray

    commit_rows = _chunking(Path(artifact_dir), table, commit_rows, label)
    total = sum(chunk_count(s, commit_rows) for s in slices)
    count_done = functools.partial(_count_done, artifact_dir, table, slices, commit_rows)
    done_per_slice = [chunks_done(artifact_dir, table, s, commit_rows) for s in slices]
    already = sum(done_per_slice)
    todo = [s for s, done in zip(slices, done_per_slice) if done < chunk_count(s, commit_rows)]
    if already:
        log.info("%s: resuming, %d of %d chunks already committed", label, already, total)

    if todo:
        actor_cls = ray.remote(**{**actor_resources(backend_config), **(resources or {})})(Engine)
        actors = [actor_cls.remote(backend_config, driver_identity()) for _ in range(min(workers, len(todo)))]
        shared = [ray.put(x) for x in (work, schema)]
        queue, running = list(todo), {}
        try:
            with progress_bar() as progress:
                # Starting at what is already done: the ETA is then measured on this run's speed only.
                bar = progress.add_task(f"{label} chunks", total=total, completed=already)
                for actor in actors:
                    _submit(actor, queue, running, shared, artifact_dir, table, commit_rows)
                while running:
                    done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                    for ref in done:
                        actor = running.pop(ref)
                        _result(ref)
                        _submit(actor, queue, running, shared, artifact_dir, table, commit_rows)
                    finished = count_done()
                    progress.update(bar, completed=finished)
                    if on_progress:
                        on_progress(finished, total)
        finally:
            for actor in actors:
                ray.kill(actor)

    for spec in slices:
        parts = [pq.read_table(Path(artifact_dir) / _part(table, spec.index) / f"part-{c:05d}.parquet")
                 for c in range(chunk_count(spec, commit_rows))]
        commit_shard(artifact_dir, table, spec.index, pa.concat_tables(parts).cast(schema))
    return {"slices": len(slices), "chunks": total, "chunks_resumed": already}


def _chunking(artifact_dir: Path, table: str, commit_rows: int, label: str) -> int:
    """The chunk size of this table's committed parts. `commit_rows` is not in the key, so a run resumed with
    another one keeps the first: parts cut 10 rows apart read as 100 would lose the rows between them."""
    record = artifact_dir / "_parts" / table / "commit_rows"
    if record.exists():
        first = int(record.read_text())
        if first != commit_rows:
            log.info("%s: resuming with the %d rows a chunk it started with (commit_rows is now %d)", label, first, commit_rows)
        return first
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(str(commit_rows))
    return commit_rows


def _count_done(artifact_dir: Path, table: str, slices: Sequence[Slice], commit_rows: int) -> int:
    return sum(chunks_done(artifact_dir, table, s, commit_rows) for s in slices)


def _submit(actor, queue: list, running: dict, shared: list, artifact_dir: Path, table: str, commit_rows: int) -> None:
    if queue:
        spec = queue.pop(0)
        running[actor.run.remote(spec, *shared, str(artifact_dir), table, commit_rows)] = actor


def _result(ref) -> None:
    """Wait for one slice; a BardError raised in an actor reaches the user as itself, message intact."""
    import ray

    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, BardError):
            raise BardError(str(err.cause)) from None
        raise
