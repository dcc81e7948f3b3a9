"""Run a shell command as a Ray job on a cluster (the `openrlhf` backend): submit it, or reattach to the job
a killed `bard` left running, copy its logs as they grow, and wait for it to end.

Each attempt is recorded in `<out>/_parts/jobs.json` before it is submitted, so a rerun of the stage finds the
job of the last attempt: still running, it is followed again; finished, it is used; failed or stopped, a new
attempt is submitted (OpenRLHF resumes from its last checkpoint under `_parts/checkpoints`). Every request to
the job server has a timeout and is retried with backoff when the server cannot be reached.

Secrets go by name: `ray.secret_env` names the variables a job gets, and their values are read from this
process's environment only for the submission call; what is written, logged or returned has none of them
(a job that prints one has it masked in its copied log).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

from bard_core.config import RayConfig
from bard_core.errors import BardError

log = logging.getLogger("bard")

REQUEST_TIMEOUT_S = 60.0
RETRIES = 6  # ~1 minute of backoff before a dead job server is reported
LOG_TAIL_LINES = 30  # of a failed job's log, in the error


def job_server_address(config: RayConfig) -> str | None:
    """`ray.job_address`, else what Ray's own tools read (RAY_API_SERVER_ADDRESS, then RAY_ADDRESS)."""
    return config.job_address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")


def secret_env_values(config: RayConfig) -> dict[str, str]:
    """The values of the `ray.secret_env` variables, read from this process's environment now; a missing (or
    empty) one is an error naming it, raised by the stages' `check` before any work starts."""
    missing = [name for name in config.secret_env if not os.environ.get(name)]
    if missing:
        raise BardError(
            f"ray.secret_env: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in the environment "
            "of bard; export it before running (its value goes to the Ray job only) or remove it from ray.secret_env"
        )  # fmt: skip
    return {name: os.environ[name] for name in config.secret_env}


def _mask(text: str, secrets: dict[str, str]) -> str:
    for name, value in secrets.items():
        text = text.replace(value, f"***{name}***")
    return text


def _client(config: RayConfig):
    from ray.job_submission import JobSubmissionClient

    class TimedClient(JobSubmissionClient):
        """Ray's client sends requests without a timeout: a hung server would hang the stage."""

        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
            return super()._do_request(method, endpoint, **kwargs)

    address = job_server_address(config)
    return _retry(lambda: TimedClient(address), f"connect to the Ray job server {address or '(local)'}")


def _retry(call: Callable[[], Any], what: str) -> Any:
    """`call()`, retried with full-jitter exponential backoff while the server is unreachable (OSError covers
    requests' connection errors and timeouts); other errors (a rejected request) are not retried."""
    for attempt in range(RETRIES):
        try:
            return call()
        except (OSError, ConnectionError) as err:
            if attempt == RETRIES - 1:
                raise BardError(f"could not {what} after {RETRIES} tries: {err}") from None
            delay = random.uniform(0, min(30.0, 2.0**attempt))
            log.warning("could not %s (%s); retrying in %.1fs", what, err, delay)
            time.sleep(delay)


def run_job(
    config: RayConfig,
    name: str,
    entrypoint: str,
    out: Path,
    runtime_env: dict | None = None,
    entrypoint_num_gpus: float = 0,
) -> dict:
    """Run `entrypoint` as a Ray job for the artifact being built in `out` (see the module docstring);
    return {"job_id", "attempt", "status"}. Its log is kept in `out/logs/<job_id>.log`. The `ray.secret_env`
    variables are added to the job's `env_vars` in the submission call only."""
    from ray.job_submission import JobStatus

    secrets = secret_env_values(config)
    client = _client(config)
    record = out / "_parts" / "jobs.json"
    attempts: list[str] = json.loads(record.read_text()) if record.exists() else []
    known = {j.submission_id: j.status for j in _retry(client.list_jobs, "list the cluster's jobs") if j.submission_id}
    job_id = attempts[-1] if attempts else None
    if job_id is not None and known.get(job_id) not in (None, JobStatus.FAILED, JobStatus.STOPPED):
        log.info("%s: following Ray job %s (%s), submitted by an earlier run", name, job_id, known[job_id])
    else:
        prefix = f"bard-{name}-{out.name[:12]}-"
        number = 1 + max((int(j.rsplit("-", 1)[1]) for j in known if j.startswith(prefix) and j.rsplit("-", 1)[1].isdigit()), default=0)
        job_id = f"{prefix}{number}"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(attempts + [job_id]))  # before submitting: a kill in between loses nothing
        submitted = dict(runtime_env or {})
        if secrets:
            submitted["env_vars"] = {**submitted.get("env_vars", {}), **secrets}
        try:
            _retry(
                lambda: client.submit_job(
                    entrypoint=entrypoint, submission_id=job_id, runtime_env=submitted or None,
                    entrypoint_num_cpus=1, entrypoint_num_gpus=entrypoint_num_gpus, metadata={"bard_stage": name},
                ),
                f"submit {job_id}",
            )  # fmt: skip
        except BardError:
            raise  # the server could not be reached: no answer to quote
        except Exception as err:  # a refusal; the server's answer may quote the runtime env it was sent
            raise BardError(_mask(f"{name}: the Ray job server refused {job_id}: {err}", secrets)) from None
        log.info("%s: submitted Ray job %s: %s", name, job_id, entrypoint[:200])
    status = _follow(client, job_id, out / "logs" / f"{job_id}.log", config.job_poll_s, name, secrets)
    if status != JobStatus.SUCCEEDED:
        text = (out / "logs" / f"{job_id}.log").read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
        raise BardError(
            f"{name}: Ray job {job_id} {status.value}; rerun the stage to submit it again (it resumes from its "
            f"last checkpoint). Log: {out / 'logs' / f'{job_id}.log'}; its end:\n{tail}"
        )
    return {"job_id": job_id, "attempt": len(json.loads(record.read_text())), "status": status.value}


def _follow(client, job_id: str, log_file: Path, poll_s: float, name: str, secrets: dict[str, str]):
    """Poll the job until it ends, writing its log to `log_file` and passing new lines to the logger, with the
    secrets' values masked. While the job runs only whole lines are taken, so that no value cut off at the end
    of a read slips past the mask."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shown, last_status = 0, None
    while True:
        status = _retry(lambda: client.get_job_status(job_id), f"read the status of {job_id}")
        if status != last_status:  # PENDING for long usually means the cluster lacks the GPUs it asks for
            log.info("%s: Ray job %s is %s", name, job_id, status.value)
            last_status = status
        text = _mask(_retry(lambda: client.get_job_logs(job_id), f"read the logs of {job_id}"), secrets)
        end = len(text) if status.is_terminal() else text.rfind("\n") + 1
        if end > shown:
            log_file.write_text(text[:end])
            for line in text[shown:end].splitlines():
                log.info("[%s] %s", name, line)
            shown = end
        if status.is_terminal():
            return status
        time.sleep(poll_s)


def run_openrlhf(config: RayConfig, name: str, entrypoint: str, out: Path, num_gpus: int, env_vars: dict) -> dict:
    """Submit (or follow) an OpenRLHF command for the artifact in `out`; check that it left a model there.
    What is submitted is kept beside the result: `openrlhf/command.sh` and `openrlhf/runtime_env.json` (less the
    `ray.secret_env` values: the job's stats name those variables)."""
    runtime_env = dict(config.runtime_env)
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
    (out / "openrlhf").mkdir(parents=True, exist_ok=True)
    (out / "openrlhf" / "command.sh").write_text(f"#!/bin/sh\n{entrypoint}\n")
    (out / "openrlhf" / "runtime_env.json").write_text(json.dumps(runtime_env, indent=2))
    job = run_job(config, name, entrypoint, out, runtime_env, entrypoint_num_gpus=num_gpus)
    if not (out / "model" / "config.json").exists():
        raise BardError(f"{name}: Ray job {job['job_id']} succeeded but left no model in {out / 'model'}")
    return {**job, "secret_env": list(config.secret_env)}
