"""The pipeline as its users run it from the Prefect UI: `bard ui` starts a real Prefect server on a free loopback
port, `bard serve` serves deployments/prefect.yaml, a run is triggered through the API with parameters (as the
UI's custom run does), a stage fails, the user fixes its input and presses Retry (the same API call the UI makes),
and only the failed stage and those after it run again. A service manager stops `bard serve` with SIGTERM: the run in
flight is cancelled, not left running."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, LogFilter
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import State

from tests.conftest import BARD, ROOT, free_port

DATA_STAGES = ["problems", "teacher", "compress", "assemble"]


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended ({proc.returncode}): {log.read_text()[-3000:] if log else ''}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s: {log.read_text()[-3000:] if log else ''}"
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`bard ui` on a free port, with a Prefect home of its own; yields the API URL and the env to reach it."""
    tmp = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("PREFECT_API_URL", None)
    log = tmp / "ui.log"
    ui = subprocess.Popen([BARD, "ui", "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                          start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: f"Prefect UI: http://127.0.0.1:{port}" in log.read_text(), 180, "bard ui", ui, log)
        api = f"http://127.0.0.1:{port}/api"
        assert f"export PREFECT_API_URL={api}" in log.read_text()
        yield api, {**env, "PREFECT_API_URL": api}, tmp
    finally:
        stop(ui)


def test_served_deployment_runs_from_the_api_and_a_retry_reruns_only_the_failed_stage(server, tiny_model, tmp_path):
    api, env, _ = server
    home, model_dir = tmp_path / "home", tmp_path / "my-model"
    model_dir.mkdir()  # the model the user evaluates: not copied there yet, so stage eval fails
    params = {
        "overrides": [
            "problems.sources=[{kind: arithmetic, size: 40, seed: 0, split: train}, {kind: arithmetic, size: 6, seed: 1, split: test}]",
            "eval.models=[{name: reference, generation: {backend: scripted, role: reference, tokenizer: configs/demo-tokenizer.json}}, "
            f"{{name: mine, model: {model_dir}}}]",
            "eval.budgets=[16, 64]", "eval.generation={backend: hf, num_threads: 1, batch_size: 8}",
            "orchestration.retries=0",
        ],
        "stages": [*DATA_STAGES, "eval", "report"],
        "home": str(home),
    }  # fmt: skip
    log = tmp_path / "serve.log"
    serve = subprocess.Popen([BARD, "serve"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deployments = wait_for(lambda: len(client.read_deployments()) == 9 and client.read_deployments(), 120,
                                   "the served deployments", serve, log)  # fmt: skip
            by_name = {d.name: d for d in deployments}
            assert set(by_name) == {"pipeline", *DATA_STAGES, "sft", "grpo", "eval", "report"}
            pipeline = by_name["pipeline"]
            assert [s.schedule.cron for s in pipeline.schedules] == ["0 3 * * *"]
            form = pipeline.parameter_openapi_schema["properties"]
            assert set(form) == {"config", "overrides", "stages", "start", "refresh", "home"}
            assert "eval" in form["start"]["anyOf"][0]["enum"], "stage names are choices in the UI's form"
            assert by_name["eval"].parameters == {"stages": ["eval"]}

            # A custom run from the UI: the deployment's flow with the form's parameters.
            run = client.create_flow_run_from_deployment(pipeline.id, parameters=params)
            failed = wait_for(lambda: _final(client, run.id), 300, "the first run", serve, log)
            assert failed.state.type == StateType.FAILED
            assert "stage eval failed" in failed.state.message
            first = _subflows(client, run.id)
            assert [(r.name, r.state.type) for r in first] == [
                *((s, StateType.COMPLETED) for s in DATA_STAGES), ("eval", StateType.FAILED)
            ]
            finished = {s: next(home.glob(f"artifacts/{s}/*/manifest.json")).stat().st_mtime_ns for s in DATA_STAGES}

            # The user copies the model in and presses Retry: the call the UI makes.
            shutil.copytree(tiny_model, model_dir, dirs_exist_ok=True)
            client.set_flow_run_state(
                run.id, State(type=StateType.SCHEDULED, name="AwaitingRetry", message="Retry from the UI"), force=True
            )
            done = wait_for(lambda: (r := _final(client, run.id)) and r.run_count == 2 and r, 300, "the retry", serve, log)
            assert done.state.type == StateType.COMPLETED, done.state.message
            again = [r for r in _subflows(client, run.id) if r.id not in {f.id for f in first}]
            assert [(r.name, r.state.type) for r in again] == [("eval", StateType.COMPLETED), ("report", StateType.COMPLETED)]
            assert {s: next(home.glob(f"artifacts/{s}/*/manifest.json")).stat().st_mtime_ns for s in DATA_STAGES} == finished
            # bard's own log lines reach the run's logs in the UI (sent in batches: they may come after the state)
            def logs() -> list[str]:
                return [x.message for x in client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [run.id]}))]

            wait_for(lambda: any(m.startswith("the report: ") for m in logs()), 60, "the report's path in the logs")
            assert any(m.startswith("assemble: finished artifact") and m.endswith("reused") for m in logs())

            # The stages' artifacts, read back through the API.
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id={"any_": [run.id] + [r.id for r in first + again]})
            )
            kinds = {(a.key, a.type) for a in artifacts if a.key}
            for stage in DATA_STAGES + ["eval"]:
                assert (f"{stage}-summary", "table") in kinds, stage
            for stage in ("teacher", "compress", "eval"):
                assert (f"{stage}-progress", "progress") in kinds, stage
            (report,) = [a for a in artifacts if a.key == "bard-report"]
            assert "## arithmetic" in report.data and "mine" in report.data
            progress = [a for a in artifacts if a.key == "eval-progress"]
            assert max(a.data for a in progress) == 100.0
    finally:
        stop(serve)


def _final(client, run_id):
    run = client.read_flow_run(run_id)
    return run if run.state and run.state.is_final() else None


def _subflows(client, run_id):
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [run_id]}))
    return sorted(runs, key=lambda r: r.created)


def test_sigterm_stops_bard_serve_and_cancels_the_run_in_flight(server, tmp_path):
    api, env, _ = server
    log = tmp_path / "serve.log"
    serve = subprocess.Popen([BARD, "serve"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            problems = wait_for(lambda: _deployment(client, "pipeline/problems"), 120, "the served deployments", serve, log)
            run = client.create_flow_run_from_deployment(problems.id, parameters={"home": str(tmp_path / "home")})
            wait_for(lambda: client.read_flow_run(run.id).state.type == StateType.RUNNING, 120, "the run", serve, log)
            workers = psutil.Process(serve.pid).children(recursive=True)

            os.kill(serve.pid, signal.SIGTERM)  # bard only, as a service manager does
            assert serve.wait(timeout=60) == 0, log.read_text()[-3000:]
            _, alive = psutil.wait_procs(workers, timeout=30)
            assert alive == [], "the run's process outlived `bard serve`"
            assert client.read_flow_run(run.id).state.type == StateType.CANCELLED, "left in flight, not cancelled"
    finally:
        stop(serve)


def _deployment(client, name):
    try:
        return client.read_deployment_by_name(name)
    except Exception:  # not registered yet
        return None
