"""Submitting training as a Ray job (the openrlhf backend's path), for real: a Ray head with its job server
is started on 127.0.0.1 by these tests, and the TRL SFT recipe itself is submitted to it as a job.
Also: a failed job and its resubmission, following a job a killed `bard` left running, and stages `sft` and
`grpo` with `backend: openrlhf` up to the OpenRLHF command (which cannot run here), then with stand-ins for the
trainers at the point where they need GPUs."""

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
from tasks import graph, grpo, sft
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


# OpenRLHF's GRPO trainer where it needs GPUs, as `python3 -m openrlhf.cli.train_ppo_ray` finds it on the job's
# PYTHONPATH. Like OpenRLHF 0.11.2 (trainer/ray/ppo_actor.py) it resumes from `--ckpt.path`/_actor when
# `--ckpt.load_enable` is given and that directory exists; an attempt that finds none saves a first checkpoint and
# dies, as a job on a GPU box can. The resuming attempt scores one answer per prompt with the reward file, loaded
# and called as OpenRLHF's SingleTurnAgentExecutor does (utils/agent.py): the gold answer for even rows, a wrong
# one for odd rows; then it saves the model at --ckpt.output_dir.
GRPO_TRAINER = """
import asyncio, importlib.util, json, os, shutil, sys

argv = sys.argv[1:]
flag = lambda name: argv[argv.index(name) + 1]
ckpt = os.path.join(flag("--ckpt.path"), "_actor")
if not ("--ckpt.load_enable" in argv and os.path.isdir(ckpt)):
    os.makedirs(os.path.join(ckpt, "global_step1"))
    print("saved checkpoint", ckpt, flush=True)
    sys.exit("torch.OutOfMemoryError: CUDA out of memory (stand-in)")
print("Loading the checkpoint:", ckpt, sorted(os.listdir(ckpt)), flush=True)
import pyarrow.parquet as pq
from transformers import AutoTokenizer

spec = importlib.util.spec_from_file_location("reward_func", flag("--reward.remote_url"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
tokenizer = AutoTokenizer.from_pretrained(flag("--actor.model_name_or_path"))
for i, row in enumerate(pq.read_table(flag("--data.prompt_dataset")).to_pylist()):
    prompt = tokenizer.apply_chat_template(row[flag("--data.input_key")], tokenize=False, add_generation_prompt=True)
    label = row[flag("--data.label_key")]
    answer = json.loads(label)["answer"] if i % 2 == 0 else "-1"
    response = "<think>\\nstep\\n</think>\\n\\\\boxed{%s}" % answer + tokenizer.eos_token
    ids = tokenizer(text=prompt + response, add_special_tokens=False)["input_ids"]
    query = tokenizer.decode(ids, skip_special_tokens=False)

    async def score():
        return await asyncio.gather(asyncio.to_thread(module.reward_func, [query], [prompt], [label]))

    print("reward", json.dumps(asyncio.run(score())[0]), flush=True)
shutil.copytree(flag("--actor.model_name_or_path"), flag("--ckpt.output_dir"))
"""


def test_grpo_with_the_openrlhf_backend_fails_then_resumes_from_its_checkpoint(job_server, tmp_path):
    """Stage `grpo` with backend openrlhf against the local job server, from an `sft` artifact made the same way
    (a `deepspeed` stand-in copies the student). The prompt file and the reward file are written and the command
    submitted; the first attempt dies after a checkpoint and the stage says so with the job's log; the rerun
    submits the same command, whose `--ckpt.load_enable` and `--ckpt.path` resume from that checkpoint, and the
    stage commits the model the trainer left at `--ckpt.output_dir`."""
    bin_dir, site = tmp_path / "bin", tmp_path / "site" / "openrlhf" / "cli"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text(f"""#!{PY}
import shutil, sys
args = sys.argv[1:]
shutil.copytree(args[args.index("--model.model_name_or_path") + 1], args[args.index("--ckpt.output_dir") + 1])
""")
    (bin_dir / "deepspeed").chmod(0o755)
    site.mkdir(parents=True)
    for package in (site.parent, site):
        (package / "__init__.py").write_text("")
    (site / "train_ppo_ray.py").write_text(GRPO_TRAINER)
    config_path = write_config(tmp_path, "qwen3")  # a student that can write digits and \boxed{}: Qwen3's tokenizer
    path = f"{bin_dir}:{Path(PY).parent}:${{PATH}}"  # `python3`: this interpreter, which has pyarrow and transformers
    config = load_config(config_path, [
        "sft.backend=openrlhf", "sft.openrlhf.gpus=1", "grpo.backend=openrlhf", f"ray.job_address={job_server}",
        "ray.job_poll_s=0.5", f"ray.runtime_env={{env_vars: {{PATH: '{path}', PYTHONPATH: '{tmp_path / 'site'}'}}}}",
    ], home=str(tmp_path / "home"))  # fmt: skip
    upstream(config_path, tmp_path / "home")
    sft_dir = Path(graph.build("sft", config).path)

    with pytest.raises(BardError) as err:
        graph.build("grpo", config)
    message = str(err.value)
    assert "FAILED" in message and "CUDA out of memory" in message and "rerun the stage" in message
    out = ArtifactStore(config.home).artifact_dir("grpo", graph.key("grpo", config))
    assert f"Ray job bard-grpo-{out.name[:12]}-1 FAILED" in message
    command = (out / "openrlhf" / "command.sh").read_text().splitlines()[1]
    assert command == grpo.command(config, out, {"sft": sft_dir})
    assert f"--ckpt.path {out / '_parts' / 'checkpoints'} " in command and "--ckpt.load_enable" in command.split()
    prompts = pq.read_table(out / "openrlhf" / "rl_prompts.parquet")
    assert prompts.column_names == ["prompt", "label"] and prompts.num_rows == 4, "max_steps x prompts_per_step"
    assert (out / "openrlhf" / "reward_func.py").exists()
    assert json.loads((out / "openrlhf" / "runtime_env.json").read_text())["env_vars"]["BARD_REWARD_TOKENIZER"] == str(sft_dir / "model")

    manifest = graph.build("grpo", config)
    job_id = f"bard-grpo-{out.name[:12]}-2"
    assert manifest.stats["job_id"] == job_id and manifest.stats["attempt"] == 2 and manifest.stats["status"] == "SUCCEEDED"
    assert manifest.stats["backend"] == "openrlhf" and manifest.stats["prompt_rows"] == 4
    log = (Path(manifest.path) / "logs" / f"{job_id}.log").read_text()
    assert f"Loading the checkpoint: {out / '_parts' / 'checkpoints' / '_actor'} ['global_step1']" in log
    rewards = [json.loads(line.split(" ", 1)[1]) for line in log.splitlines() if line.startswith("reward ")]
    assert len(rewards) == 4, log
    assert [(r["rewards"], r["scores"]) for r in rewards] == [(1.0, 1.0), (0.0, 0.0)] * 2, "right, wrong, right, wrong"
    assert all(r["extra_logs"]["reward_errors"] == 0.0 and r["extra_logs"]["over_budget"] == 0.0 for r in rewards)
    assert all(r["extra_logs"]["thinking_tokens"] > 0 for r in rewards), "counted with the SFT model's tokenizer"
    assert (Path(manifest.path) / "model" / "config.json").exists()
    assert not (Path(manifest.path) / "_parts").exists()
