"""Ray for every stage: attach or start, then fan shards out as tasks and wait with a progress bar."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

from bard_core.config import RayConfig
from bard_core.errors import BardError

log = logging.getLogger("bard")


def ensure_ray(config: RayConfig) -> None:
    """Attach to `config.address` (or RAY_ADDRESS) if set, else start a local Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, loopback-only Ray needs no token
    # "local": never attach by surprise to another Ray running on this machine (ray.init's own default does)
    address = config.address or os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address or "local",
        num_cpus=None if address else config.num_cpus,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=True,
    )


def progress_bar():
    """The terminal progress bar of long work (shards, chunks, training steps): done of total, with an ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, transient=True)


def run_shards(fn: Callable[..., Any], specs: Sequence[Any], *args: Any, label: str,
               resources: dict[str, float] | None = None) -> tuple[list[Any], int]:
    """Run `fn(spec, *args)` for every spec as a Ray task (each commits its own shard), spread over the cluster's
    nodes; return the results in spec order and how many nodes ran them. A task's BardError reaches the caller
    as itself, with its message intact."""
    import ray

    if not specs:
        return [], 0
    options = {"num_cpus": 1, **(resources or {})}
    remote = ray.remote(**options, max_retries=2, retry_exceptions=False, scheduling_strategy="SPREAD")(_on_node)
    shared = [ray.put(a) for a in args]
    pending = {remote.remote(fn, spec, *shared): i for i, spec in enumerate(specs)}
    results: list[Any] = [None] * len(specs)
    nodes = set()
    with progress_bar() as progress:
        bar = progress.add_task(f"{label} shards", total=len(specs))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                results[index], node = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                for ref in pending:
                    ray.cancel(ref)
                if isinstance(err.cause, BardError):
                    raise BardError(str(err.cause)) from None
                raise
            nodes.add(node)
            progress.advance(bar)
    log.info("%s: %d shard(s) ran on %d node(s)", label, len(specs), len(nodes))
    return results, len(nodes)


def _on_node(fn: Callable[..., Any], spec: Any, *args: Any) -> tuple[Any, str]:
    import ray

    return fn(spec, *args), ray.get_runtime_context().get_node_id()


def driver_identity() -> tuple[int, str]:
    """Who started the work: passed to Ray workers so that they can stop when it dies (see `exit_with_driver`)."""
    import socket

    return os.getpid(), socket.gethostname()


def exit_with_driver(driver: tuple[int, str], poll_s: float = 0.5) -> None:
    """In a Ray worker: exit as soon as the driver process is gone (a kill -9 of `bard` can take the local
    Ray's own processes with it, leaving workers that would go on writing checkpoints beside a rerun).
    Only on the driver's machine, where its pid means something; elsewhere Ray's job cleanup applies."""
    import socket
    import threading
    import time

    pid, host = driver
    if host != socket.gethostname():
        return

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            time.sleep(poll_s)

    threading.Thread(target=watch, daemon=True, name="exit-with-driver").start()


def run_recipe_task(config: RayConfig, stage: str, recipe_cls, *args: Any, out: str,
                    on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a training recipe (setup, train, save, cleanup; `out` is its output directory, the last of `args`) in a
    Ray task, on one GPU when the cluster has one (or what `ray.resources.<stage>` asks for), with a progress bar
    fed by the recipe's progress file; return what `save` returns. The worker process exits afterwards, taking
    the model's memory with it."""
    import ray

    from bard_core.training.checkpoints import read_progress

    ensure_ray(config)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    remote = ray.remote(**config.for_stage(stage, num_cpus=1, num_gpus=gpus), max_retries=0)(_recipe_in_worker)
    ref = remote.remote(recipe_cls, (*args, out), driver_identity())
    with progress_bar() as progress:
        bar, seen = progress.add_task(f"{stage} steps", total=None), False
        while not ray.wait([ref], timeout=2.0)[0]:
            step = read_progress(out)
            if step is None:
                continue
            if not seen:  # a resumed run starts midway: measure the ETA on this run's steps only
                progress.reset(bar, total=step[1], completed=step[0])
                seen = True
            progress.update(bar, completed=step[0], total=step[1])
            if on_progress:
                on_progress(*step)
    result = ray.get(ref)
    if on_progress and (step := read_progress(out)):
        on_progress(step[1], step[1])
    return result


def _recipe_in_worker(recipe_cls, args: tuple, driver: tuple[int, str]) -> dict:
    from bard_core.training import run_recipe

    exit_with_driver(driver)
    return run_recipe(recipe_cls(*args))
