"""Ray for every stage: attach or start, then fan shards out as tasks and wait with a progress bar."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bard_core.config import RayConfig
from bard_core.errors import BardError
from bard_core.watchdog import when_this_process_ends

log = logging.getLogger("bard")

# What Ray's workers print (their stdout and stderr: datasets' and TRL's progress bars, warnings, library logging) is
# forwarded to this process and appended to the log file of the stage that runs (`send_worker_output_to`), not
# shown on the terminal, unless `show_worker_output(True)` (`bard run --verbose`).
_worker_output: dict = {"verbose": False, "log": None}
PROGRESS_LINE_S = 10.0  # without a terminal (a log file, a pipe): a progress line at most this often, never a bar


def show_worker_output(verbose: bool) -> None:
    """Print the workers' output on the terminal as Ray does (prefixed with their pid), instead of the stage logs.
    Takes effect when this process starts or attaches to Ray."""
    _worker_output["verbose"] = verbose


def send_worker_output_to(path: Path) -> None:
    """Append what the workers print from now on to `path`. Ray forwards their lines a moment late: what arrives
    after a stage ends still goes to its file, until the next stage calls this."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # there, even when the workers print nothing
    _worker_output["log"] = path


def _stage_log_dispatcher():
    """Ray's dispatcher of the workers' forwarded output in this process (Ray's own handler prints it), or None where
    this Ray has none: there is no public way to route it, and without one the output stays in Ray's session logs."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher
    except ImportError:
        return None
    return global_worker_stdstream_dispatcher if hasattr(global_worker_stdstream_dispatcher, "add_handler") else None


def _init_ray(**options: Any):
    """ray.init, with the workers' output forwarded to the terminal (--verbose), to the stage logs, or nowhere (kept
    in Ray's session logs under /tmp/ray) where this Ray cannot route it."""
    import ray

    dispatcher = None if _worker_output["verbose"] else _stage_log_dispatcher()
    context = ray.init(**options, configure_logging=False,
                       log_to_driver=_worker_output["verbose"] or dispatcher is not None)  # fmt: skip
    if dispatcher is not None:
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("bard_stage_log", _to_stage_log)
    return context


def _to_stage_log(data: dict) -> None:
    """Ray's batch of lines from one worker: appended to the current stage's log, each prefixed as Ray does on a
    terminal. Before any stage has run (a test driving Ray directly) they are dropped, as is the autoscaler's status
    every few seconds (Ray prints neither): Ray's session logs keep them."""
    path = _worker_output["log"]
    if path is None or data.get("pid") == "autoscaler":
        return
    name = data.get("actor_name") or data.get("task_name")
    who = "(raylet)" if data.get("pid") == "raylet" else f"({name + ' ' if name else ''}pid={data.get('pid')})"
    with open(path, "a", encoding="utf-8", errors="replace") as file:
        file.writelines(f"{who} {line}\n" for line in data.get("lines", []))


def ensure_ray(config: RayConfig) -> None:
    """Attach to `config.address` (or RAY_ADDRESS) if set, else start a local Ray once per process."""
    address = config.address or os.environ.get("RAY_ADDRESS")
    if not address:
        _start_local_ray(config.num_cpus)
        return
    # Ray sends its token to an explicit address only with RAY_AUTH_MODE=token (read when `ray` is first imported):
    # turn it on when the user configured a token
    if "RAY_AUTH_MODE" not in os.environ and _configured_token():
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    if ray.is_initialized():
        return
    try:
        _init_ray(address=address, include_dashboard=False)
    except ConnectionError as err:
        # Ray's AuthenticationError reaches us as text only, inside the error that ray.init's one is raised from
        if "Authentication token is missing or incorrect" in str(err.__cause__):
            raise BardError(f"the Ray cluster at {address} refused bard: it wants its token, missing or different here "
                            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; see README, 'On a Ray "
                            "cluster')") from None  # fmt: skip
        raise


def _configured_token() -> bool:
    """Whether the user gave Ray a token, in any of the places Ray reads it from."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())  # fmt: skip


@functools.cache
def _local_token() -> str:
    """This process's token for the Ray it starts: random, made once (Ray's client keeps the first token it reads)."""
    return secrets.token_hex(32)


def _start_local_ray(num_cpus: int | None) -> None:
    """Start a Ray that only this process can use: every server on 127.0.0.1, token authentication on with a fresh
    token, and a watchdog that ends all of its processes when this process ends, even by kill -9."""
    # Ray's own switches, in the environment only while Ray starts: its processes inherit them, later children of
    # bard (a `bard` attached to a cluster, a server) do not. The token is never printed nor written to disk.
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray take 127.0.0.1 as the node's address (read when `ray` is
    # imported) and then its servers listen there only; a `_node_ip_address` of 127.0.0.1 is turned into the
    # machine's address by ray.init.
    settings = {"RAY_AUTH_TOKEN": _local_token(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    saved = {name: os.environ.get(name) for name in (*settings, "RAY_AUTH_MODE")}
    os.environ.update(settings)
    os.environ.pop("RAY_AUTH_MODE", None)  # unset: ray.init then turns token authentication on for the Ray it starts
    constants = sys.modules.get("ray._private.ray_constants")  # `ray` imported before the switch was set
    cluster_switch = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if cluster_switch is not None:
        constants.ENABLE_RAY_CLUSTER = False  # what the switch sets at import; ray.init reads it when it starts
    try:
        import ray

        if ray.is_initialized():
            return
        # Ray would then suggest RAY_AUTH_MODE=disabled "to opt out", which bard does not offer for its local Ray
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # "local": never attach by surprise to another Ray running on this machine (ray.init's own default does)
        context = _init_ray(address="local", num_cpus=num_cpus, include_dashboard=False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if cluster_switch is not None:
            constants.ENABLE_RAY_CLUSTER = cluster_switch
    if context.address_info["node_ip_address"] != "127.0.0.1":  # a Ray that no longer reads the switch that way
        log.warning("the local Ray listens on %s, not only on 127.0.0.1 (token authentication still applies)",
                    context.address_info["node_ip_address"])  # fmt: skip
    when_this_process_ends(_END_RAY_SESSION, context.address_info["session_dir"], str(os.getpid()))


# Run once the driver (pid argv[2]) has ended, however it ended (bard_core.watchdog): kills every other process that
# holds a file open in the Ray's session directory (argv[1]): each of its processes keeps its logs there. Ray ends its GCS
# and raylet with the driver, but its agents outlived a kill -9 by a minute or more. (Their command line and
# environment are no help: Ray overwrites both with the process title.) After a normal exit the watchdog wakes while
# the driver finishes exiting, its Ray already shut down: hence the driver is spared.
_END_RAY_SESSION = """
import os, signal, time
session, driver = os.path.realpath(sys.argv[1]) + "/", sys.argv[2]
for _ in range(3):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if pid == driver:
                continue
            fds = os.listdir("/proc/%s/fd" % pid)
            if any(os.readlink("/proc/%s/fd/%s" % (pid, fd)).startswith(session) for fd in fds):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.5)
"""


def progress_bar():
    """The progress of long work (shards, chunks, training steps): done of total, with an ETA. On a terminal, a bar
    that disappears when done; otherwise (a log file, a pipe) plain lines, at most one every PROGRESS_LINE_S."""
    from rich import get_console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not get_console().is_terminal:
        return ProgressLines()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, transient=True)


class ProgressLines:
    """`progress_bar` without a terminal: the calls of rich's Progress that bard makes, printed as lines such as
    "sft steps: 120/1161, about 0:05:10 left" (no carriage returns), the time left measured on this run's work."""

    def __init__(self, interval_s: float = PROGRESS_LINE_S):
        self.interval_s, self.tasks = interval_s, []

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0) -> int:
        now = time.monotonic()
        self.tasks.append({"description": description, "total": total, "completed": completed, "since": (now, completed),
                           "shown": now})  # fmt: skip
        return len(self.tasks) - 1

    def reset(self, task: int, total: float | None = None, completed: float = 0) -> None:
        self.tasks[task].update(total=total, completed=completed, since=(time.monotonic(), completed))

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["completed"] + advance)

    def update(self, task: int, completed: float | None = None, total: float | None = None) -> None:
        t, now = self.tasks[task], time.monotonic()
        t["completed"] = t["completed"] if completed is None else completed
        t["total"] = t["total"] if total is None else total
        if now - t["shown"] < self.interval_s:
            return
        t["shown"] = now
        line = f"{t['description']}: {t['completed']:g}/{t['total']:g}" if t["total"] else f"{t['description']}: {t['completed']:g}"
        start, done_then = t["since"]
        if t["total"] and t["completed"] > done_then:
            left = (t["total"] - t["completed"]) * (now - start) / (t["completed"] - done_then)
            line += f", about {time.strftime('%H:%M:%S', time.gmtime(left))} left"
        print(line, flush=True)


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


def plural(n: float, thing: str) -> str:
    return f"{n:g} {thing}" + ("" if n == 1 else "s")


def recipe_task_line(config: RayConfig, stage: str, start: str) -> str:
    """--dry-run's line for a stage `run_recipe_task` trains: the GPU it asks for."""
    gpus = config.for_stage(stage).get("num_gpus")
    return f"trl on {start}: one Ray task, " + (plural(gpus, "GPU") if gpus is not None else "1 GPU when the cluster has one, else CPU")


def run_recipe_task(config: RayConfig, stage: str, recipe_cls, *args: Any, out: str,
                    on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a training recipe (setup, train, save, cleanup; `out` is its output directory, the last of `args`) in a
    Ray task, on one GPU when the cluster has one (or what `ray.resources.<stage>` asks for), with a progress bar
    fed by the recipe's progress file; return what `save` returns. The worker process exits afterwards, taking
    the model's memory with it."""
    from bard_core.training.checkpoints import read_progress

    ensure_ray(config)  # before `import ray`: see _start_local_ray
    import ray

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
