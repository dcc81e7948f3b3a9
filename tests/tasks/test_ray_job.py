"""Submitting training as a Ray job (the openrlhf backend's path), for real: a Ray head with its job server
is started on 127.0.0.1 by these tests, and the TRL SFT recipe itself is submitted to it as a job.
Also: a failed job and its resubmission, following a job a killed `bard` left running, and stage `sft` with
`backend: openrlhf` up to the OpenRLHF command (which cannot run here)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bard_core.config import RayConfig, dump_config, load_config
from bard_core.errors import BardError
from storage.artifacts import ArtifactStore
from tasks import graph, sft
from tasks.ray_job import run_job
from tests.bard_core.generation.local_models import free_port
from tests.tasks.test_training_stages import upstream, write_config

PY = sys.executable


@pytest.fixture(scope="module")
def job_server(tmp_path_factory):
    """A Ray head with its dashboard's job server on a free loopback port; stopped afterwards. It declares one
    GPU (Ray only counts it) so that a job asking for a GPU, as OpenRLHF's SFT job does, gets scheduled."""
    from ray.job_submission import JobSubmissionClient

    ports: set[int] = set()
    while len(ports) < 4:  # four different ones: a port freed by one call can come back from the next
        ports.add(free_port())
    port, dashboard, client, agent = ports
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    cmd = [
        str(Path(PY).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--include-dashboard", "true", "--num-cpus", "2", "--num-gpus", "1", "--disable-usage-stats",
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
    ]  # fmt: skip
    env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # else SIGTERM drains for 30 s
    with open(log, "w") as out:
        head = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            break
        except Exception:
            if head.poll() is not None or time.monotonic() > deadline:
                os.killpg(head.pid, signal.SIGKILL)
                pytest.fail(f"the Ray head did not start: {log.read_text()[-2000:]}")
            time.sleep(1)
    yield address
    # `ray start --block` stops the head's processes on SIGTERM (to it alone: they must outlive its GCS calls);
    # whatever is left of its process group then goes
    os.kill(head.pid, signal.SIGTERM)
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def ray_config(address: str) -> RayConfig:
    return RayConfig(job_address=address, job_poll_s=0.5)


def py(code: str) -> str:
    return shlex.join([PY, "-c", code])


def test_the_trl_recipe_runs_as_a_ray_job(job_server, tmp_path, tiny_model):
    from ray.job_submission import JobSubmissionClient

    config_path = write_config(tmp_path, f"{tiny_model}/tokenizer.json")
    config = upstream(config_path, tmp_path / "home")
    data = ArtifactStore(config.home).manifest("assemble", graph.key("assemble", config)).files("sft_dataset")
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump_config(config))
    out = tmp_path / "artifact-0123456789ab"
    entrypoint = shlex.join([PY, "-m", "bard_core.training", "sft", str(resolved), str(out), *data])

    job = run_job(ray_config(job_server), "sft", entrypoint, out)

    job_id = f"bard-sft-{out.name[:12]}-1"
    assert job == {"job_id": job_id, "attempt": 1, "status": "SUCCEEDED"}
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 16 and len(metrics["loss_curve"]) == 16
    log = (out / "logs" / f"{job_id}.log").read_text()
    assert '"steps": 16' in log, "the job's output is copied to its log file"

    # A rerun finds the finished job of its last attempt and submits nothing.
    before = len(JobSubmissionClient(job_server).list_jobs())
    assert run_job(ray_config(job_server), "sft", entrypoint, out)["job_id"] == job_id
    assert len(JobSubmissionClient(job_server).list_jobs()) == before


def test_a_failed_job_is_reported_with_its_log_then_resubmitted(job_server, tmp_path):
    out = tmp_path / "failing-artifact"
    with pytest.raises(BardError) as err:
        run_job(ray_config(job_server), "grpo", py("import sys; print('CUDA out of memory'); sys.exit(3)"), out)
    message = str(err.value)
    assert "Ray job bard-grpo-failing-arti-1 FAILED" in message and "CUDA out of memory" in message
    assert "rerun the stage" in message

    job = run_job(ray_config(job_server), "grpo", py("print('second try')"), out)
    assert job["job_id"] == "bard-grpo-failing-arti-2" and job["attempt"] == 2
    assert json.loads((out / "_parts" / "jobs.json").read_text()) == ["bard-grpo-failing-arti-1", "bard-grpo-failing-arti-2"]


def test_a_rerun_follows_the_job_a_killed_bard_left_running(job_server, tmp_path):
    """kill -9 of the submitting process leaves the job running on the cluster; the rerun attaches to it
    instead of starting a second one, and still gets its whole log."""
    from ray.job_submission import JobSubmissionClient

    out = tmp_path / "long-artifact"
    marker = tmp_path / "started"
    entrypoint = py(f"import pathlib, time; print('begin', flush=True); pathlib.Path({str(marker)!r}).touch(); time.sleep(4); print('end')")
    submitter = subprocess.Popen(
        [PY, "-c", f"from pathlib import Path; from bard_core.config import RayConfig; from tasks.ray_job import run_job; "
                   f"run_job(RayConfig(job_address={job_server!r}, job_poll_s=0.2), 'sft', {entrypoint!r}, Path({str(out)!r}))"],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert submitter.poll() is None and time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait()
    client = JobSubmissionClient(job_server)
    assert client.get_job_status(f"bard-sft-{out.name[:12]}-1").value == "RUNNING"
    before = len(client.list_jobs())

    job = run_job(ray_config(job_server), "sft", entrypoint, out)

    assert job["job_id"] == f"bard-sft-{out.name[:12]}-1" and job["status"] == "SUCCEEDED"
    assert len(client.list_jobs()) == before
    lines = (out / "logs" / f"bard-sft-{out.name[:12]}-1.log").read_text().splitlines()
    assert [line for line in lines if line in ("begin", "end")] == ["begin", "end"]


def test_a_secret_env_variable_reaches_the_job_by_name_only(job_server, tmp_path, monkeypatch, caplog):
    """`ray.secret_env` names a variable; its value, read from this process's environment, is in the job's
    environment and nowhere bard writes or logs (the job printing it is masked). Missing, it is an error naming
    it before anything is submitted."""
    import hashlib
    import logging

    secret = "BARD_TEST_SECRET_7f3a9c"
    config = RayConfig(job_address=job_server, job_poll_s=0.5, secret_env=["BARD_TEST_TOKEN"])
    entrypoint = py(f"import hashlib, os; got = os.environ['BARD_TEST_TOKEN']; "
                    f"assert hashlib.sha256(got.encode()).hexdigest() == {hashlib.sha256(secret.encode()).hexdigest()!r}; "
                    f"print('got', got)")  # fmt: skip
    with pytest.raises(BardError, match="ray.secret_env: BARD_TEST_TOKEN is not set in the environment of bard"):
        run_job(config, "sft", entrypoint, tmp_path / "missing")
    assert not (tmp_path / "missing").exists(), "nothing was submitted"

    monkeypatch.setenv("BARD_TEST_TOKEN", secret)
    out = tmp_path / "secret-artifact"
    with caplog.at_level(logging.INFO, logger="bard"):
        job = run_job(config, "sft", entrypoint, out)
    assert job["status"] == "SUCCEEDED", "the job's own check of the value passed"
    assert "got ***BARD_TEST_TOKEN***" in (out / "logs" / f"{job['job_id']}.log").read_text()
    assert "[sft] got ***BARD_TEST_TOKEN***" in caplog.text and secret not in caplog.text
    assert [p for p in out.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []


def test_an_unreachable_job_server_is_retried_then_named(tmp_path, monkeypatch):
    monkeypatch.setattr("tasks.ray_job.RETRIES", 2)
    address = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BardError, match=f"could not connect to the Ray job server {address} after 2 tries"):
        run_job(ray_config(address), "sft", py("pass"), tmp_path / "x")


def test_sft_with_the_openrlhf_backend_submits_its_command(job_server, tmp_path, tiny_model):
    """Stage `sft` with backend openrlhf against the local job server: the dataset, the built student and the
    command are written and submitted; OpenRLHF is not installed here, so the job fails at `deepspeed`,
    and the stage says so with the job's log. With a `deepspeed` on the job's PATH that leaves a model where
    `--ckpt.output_dir` says (a stand-in for OpenRLHF, which this machine cannot run), the rerun commits it."""
    config_path = write_config(tmp_path, f"{tiny_model}/tokenizer.json")
    overrides = ["sft.backend=openrlhf", "sft.openrlhf.gpus=1", f"ray.job_address={job_server}", "ray.job_poll_s=0.5"]
    config = load_config(config_path, overrides, home=str(tmp_path / "home"))
    upstream(config_path, tmp_path / "home")

    with pytest.raises(BardError, match=r"Ray job bard-sft-\w+-1 FAILED(.|\n)*deepspeed"):
        graph.build("sft", config)
    out = ArtifactStore(config.home).artifact_dir("sft", graph.key("sft", config))
    command = (out / "openrlhf" / "command.sh").read_text().splitlines()[1]
    assert command == sft.command(config, out)
    assert "--data.dataset " + str(out / "openrlhf" / "sft.parquet") in command
    train_rows = pq.read_table(out / "openrlhf" / "sft.parquet")
    assert train_rows.column_names == ["prompt", "completion"] and train_rows.num_rows > 0
    assert (out / "_parts" / "student" / "config.json").exists(), "the built student, for OpenRLHF to start from"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text(f"""#!{PY}
import shutil, sys
args = sys.argv[1:]
shutil.copytree(args[args.index("--model.model_name_or_path") + 1], args[args.index("--ckpt.output_dir") + 1])
print("stand-in trained", len(args), "arguments")
""")
    (bin_dir / "deepspeed").chmod(0o755)
    config = load_config(config_path, overrides + [f"ray.runtime_env={{env_vars: {{PATH: '{bin_dir}:${{PATH}}'}}}}"],
                         home=str(tmp_path / "home"))  # fmt: skip
    manifest = graph.build("sft", config)
    assert manifest.stats["job_id"].endswith("-2") and manifest.stats["status"] == "SUCCEEDED"
    assert manifest.stats["backend"] == "openrlhf" and manifest.stats["train_rows"] == train_rows.num_rows
    assert (Path(manifest.path) / "model" / "config.json").exists()
    assert json.loads((Path(manifest.path) / "openrlhf" / "runtime_env.json").read_text())["env_vars"]["PATH"].startswith(str(bin_dir))
    assert not (Path(manifest.path) / "_parts").exists()
