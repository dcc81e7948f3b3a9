"""Secrets go to a Ray job by name (`ray.secret_env`), never by value: a fake secret in the environment of
real `bard` runs (the plan, the refusal of a missing one, stage `sft` with the openrlhf backend through Prefect,
submitted to a real local Ray job server) reaches the job and appears in no file under the bard home or
PREFECT_HOME (Prefect's SQLite database included, read as bytes) and in nothing bard prints. A value put in
`ray.runtime_env.env_vars`, as before `secret_env` existed, is refused without being shown."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bard_core.config import load_config
from storage.artifacts import ArtifactStore
from tasks import graph
from tests.conftest import BARD
from tests.tasks.test_ray_job import job_server  # noqa: F401  (the fixture: a Ray head with its job server)
from tests.tasks.test_training_stages import upstream, write_config

SECRET = "BARD_TEST_SECRET_7f3a9c"
NAME = "BARD_TEST_TOKEN"


def bard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([BARD, *args], capture_output=True, text=True, timeout=600, env=env)


def files_holding(secret: str, *roots: Path) -> list[Path]:
    """Every file under `roots` whose bytes hold `secret` (SQLite databases and their WAL files included)."""
    return [p for root in roots for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_secret_value_in_env_vars_is_refused_without_being_shown(tmp_path):
    """The old way (the value in `ray.runtime_env.env_vars`) was printed by `bard config show` and `--dry-run`;
    now it is refused, naming the variable and `ray.secret_env`, from a profile or from --set. Plain values stay."""
    env = {**os.environ, NAME: SECRET}
    config = tmp_path / "old.yaml"
    config.write_text(f"ray: {{runtime_env: {{env_vars: {{WANDB_API_KEY: {SECRET}, NCCL_DEBUG: INFO}}}}}}\n")
    shown = bard("config", "show", "--config", str(config), env=env)
    planned = bard("run", "--dry-run", "--config", str(config), "--home", str(tmp_path / "home"), env=env)
    typed = bard("config", "show", "--set", f"ray.runtime_env.env_vars.HF_TOKEN={SECRET}", env=env)
    for result, name in ((shown, "WANDB_API_KEY"), (planned, "WANDB_API_KEY"), (typed, "HF_TOKEN")):
        assert result.returncode == 1, result.stdout
        message = " ".join(result.stderr.split())  # rich wraps long lines
        assert message.startswith("error:") and f"ray: runtime_env.env_vars: {name} looks like a secret" in message
        assert f"secret_env: [{name}]" in message and "Traceback" not in message
        assert SECRET not in result.stdout + result.stderr

    plain = bard("config", "show", "--set", "ray.runtime_env={env_vars: {NCCL_DEBUG: INFO, TOKENIZERS_PARALLELISM: 'false'}}",
                 "--set", f"ray.secret_env=[{NAME}]", env=env)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "NCCL_DEBUG: INFO" in plain.stdout and f"- {NAME}" in plain.stdout and SECRET not in plain.stdout


def test_a_secret_named_in_secret_env_reaches_the_job_and_nothing_else(job_server, tmp_path, tiny_model):  # noqa: F811
    config_path = write_config(tmp_path, f"{tiny_model}/tokenizer.json")
    home = tmp_path / "home"
    upstream(config_path, home)  # problems and assemble, in this process: the run below is stage sft alone
    # A stand-in for OpenRLHF's `deepspeed` on the job's PATH: it fails unless the job got the secret's value
    # (compared by hash), prints that value (bard masks it in the log it copies), and leaves a model.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text(f"""#!{sys.executable}
import hashlib, os, shutil, sys
got = os.environ.get({NAME!r}, "")
assert hashlib.sha256(got.encode()).hexdigest() == {hashlib.sha256(SECRET.encode()).hexdigest()!r}, "wrong or no secret"
print("the job got", got, flush=True)
args = sys.argv[1:]
shutil.copytree(args[args.index("--model.model_name_or_path") + 1], args[args.index("--ckpt.output_dir") + 1])
""")
    (bin_dir / "deepspeed").chmod(0o755)
    overrides = [
        "sft.backend=openrlhf", "sft.openrlhf.gpus=1", f"ray.job_address={job_server}", "ray.job_poll_s=0.5",
        f"ray.secret_env=[{NAME}]", f"ray.runtime_env={{env_vars: {{PATH: '{bin_dir}:${{PATH}}', NCCL_DEBUG: INFO}}}}",
    ]  # fmt: skip
    args = ["--stages", "sft", "--config", str(config_path), "--home", str(home), *[a for o in overrides for a in ("--set", o)]]
    prefect_home = tmp_path / "prefect"  # Prefect's own, so that everything it stored is looked at
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), NAME: SECRET}

    plan = bard("run", "--dry-run", *args, env=env)
    assert plan.returncode == 0, plan.stderr
    assert f"secret env {NAME} (read from the environment" in " ".join(plan.stdout.split())

    missing = bard("run", *args, env={k: v for k, v in env.items() if k != NAME})
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"error: ray.secret_env: {NAME} is not set in the environment of bard" in " ".join(missing.stderr.split())
    store = ArtifactStore(str(home))
    out = store.artifact_dir("sft", graph.key("sft", load_config(config_path, overrides, home=str(home))))
    assert not out.exists(), "a missing secret stops the run before any work"

    run = bard("run", *args, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    manifest = store.manifest("sft", out.name)
    assert manifest.stats["status"] == "SUCCEEDED" and manifest.stats["secret_env"] == [NAME]
    job_log = (out / "logs" / f"{manifest.stats['job_id']}.log").read_text()
    assert f"the job got ***{NAME}***" in job_log, "the job had the value (its check passed); its log masks it"
    runtime_env = json.loads((out / "openrlhf" / "runtime_env.json").read_text())
    assert NAME not in runtime_env["env_vars"] and runtime_env["env_vars"]["NCCL_DEBUG"] == "INFO"

    # What was looked at holds what it should: the sft subflow's config (a parameter) and the job's log lines
    assert any(p.name.startswith("prefect.db") for p in files_holding(f'"secret_env": ["{NAME}"], "job_poll_s"', prefect_home))
    assert any(p.name.startswith("prefect.db") for p in files_holding(f"the job got ***{NAME}***", prefect_home))
    assert files_holding(SECRET, home, prefect_home) == []
    assert SECRET not in plan.stdout + plan.stderr + missing.stdout + missing.stderr + run.stdout + run.stderr
