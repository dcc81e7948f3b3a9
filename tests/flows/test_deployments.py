"""deployments/prefect.yaml as `bard serve` reads it: the shipped file is valid, and mistakes in a deployments
file name the file, the deployment and the field before anything is served."""

import os
import subprocess

import pytest

from bard_core.errors import BardError
from flows.serve import DEPLOYMENTS_FILE, load_deployments, runner_deployments
from tasks.graph import ORDER
from tests.conftest import BARD, ROOT, free_port


def test_the_shipped_deployments_are_the_pipeline_on_a_schedule_and_one_per_stage():
    specs = {s.name: s for s in load_deployments()}
    assert list(specs) == ["pipeline", *ORDER], "the file's, then one per stage of the graph"
    assert [s.cron for s in specs["pipeline"].schedules] == ["0 3 * * *"]
    assert specs["sft"].parameters == {"stages": ["sft"]} and not specs["sft"].schedules
    (pipeline,) = [d for d in runner_deployments([specs["pipeline"]])]
    assert pipeline.entrypoint == "flows.pipeline.pipeline_flow", "a module path: served from anywhere"
    assert pipeline.parameters == {"config": "configs/demo.yaml"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("deployments: []\n", "deployments"),
        ("deployments:\n  - {name: a, entrypoint: flows/pipeline.py:pipeline_flow, schedule: daily}\n", "schedule"),
        ("deployments:\n  - {name: a, entrypoint: flows/pipeline.py:pipeline_flow, parameters: {stages: [sfft]}}\n",
         "deployment a: parameters"),
        ("deployments:\n  - {name: a, entrypoint: flows/pipeline.py:pipeline_flow}\n"
         "  - {name: a, entrypoint: flows/pipeline.py:pipeline_flow}\n", "unique"),
        ("deployments: [\n", "deployments"),
    ],
)
def test_a_bad_deployments_file_is_named_with_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "prefect.yaml"
    path.write_text(text)
    with pytest.raises(BardError) as err:
        load_deployments(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_serve_without_a_server_says_how_to_get_one(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(tmp_path), "HOME": str(tmp_path)}
    run = subprocess.run([BARD, "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "bard ui" in run.stderr and "PREFECT_API_URL" in run.stderr
    assert DEPLOYMENTS_FILE.is_file()


def test_a_prefect_server_that_does_not_answer_is_named_before_anything_runs(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_API_URL": dead}
    for command in (["stage", "problems", "--home", str(tmp_path / "home")], ["serve"]):
        run = subprocess.run([BARD, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and dead in run.stderr and "bard ui" in run.stderr, run.stderr
    assert not (tmp_path / "home" / "artifacts").exists()
