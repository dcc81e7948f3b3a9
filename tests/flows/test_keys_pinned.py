"""Existing homes keep their cache across refactors: the artifact keys `bard run --dry-run` shows for the shipped
profiles (variants and the cluster backends included), and the OpenRLHF command lines, were pinned here as the code
computed them before the stage graph was declared once (issue 22), and that refactor left them as they were. A change
of a stage's output bumps its version (tasks/graph.py) and re-pins them on purpose, as compress 3 and eval 3 did
(tests/tasks/test_stage_versions.py says how); a refactor must leave them alone."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BARD = str(Path(sys.executable).with_name("bard"))
# (a cosine schedule: OpenRLHF cannot be given the demo's warmup_stable_decay, whose num_decay_steps it would drop)
CLUSTER = ["--set", "sft.backend=openrlhf", "--set", "grpo.backend=openrlhf", "--set", "reward.tau=0.1",
           "--set", "eval.models=[{name: grpo, model: grpo}]", "--set", "sft.lr_scheduler=cosine",
           "--set", "sft.lr_scheduler_kwargs={}"]  # fmt: skip

DEMO = {"problems": "e2e6fd2c926279973666", "teacher": "49ba375815be0111f958", "compress": "b8661737046532aa4807",
        "assemble": "bd394dda9ac87fb2211a", "sft": "89809d0aef8d589089b9", "grpo": "31f55c2ca012a8f478fa",
        "eval": "a438dc09edacd4e1837f", "report": "00e32c02601c7c3ff481"}  # fmt: skip
PINNED = {
    "demo": ([], DEMO),
    "ablations": (["--config", "configs/demo-ablations.yaml"], {
        **{k: DEMO[k] for k in ("problems", "teacher", "compress", "assemble", "sft")},
        "assemble@rl_only": "d78b7088d44376725725", "sft@rl_only": "e5bf2c597d365dab4bfc",
        "grpo": "4dc66fc6caee66052d8e", "grpo@additive": "764272b438c8761333e4",
        "grpo@multiplicative": "7220e554b5650ecf88d8", "grpo@rl_only": "8adc19a0387147f25534",
        "eval": "d018f630c934bba8df09", "report": "58a009e2eae31be0b2d8"}),
    "cluster": (CLUSTER, {
        **{k: DEMO[k] for k in ("problems", "teacher", "compress", "assemble")},
        "sft": "29c8322aca886f6500eb", "grpo": "122dd8356401e851a459", "eval": "384b4f060d5d6cb18251",
        "report": "91ab8782fc1393edf713"}),
}  # fmt: skip
# sha256 of the two OpenRLHF command lines of the "cluster" run, the home replaced by <home>.
COMMANDS = "aa11040f067f03fd0f6f61daa3b113678e0d2835f8a1f307caf388f61397bfa2"


def dry_run(args: list[str], home: Path) -> str:
    env = {**os.environ, "COLUMNS": "400"}  # the table unwrapped, the commands on one line each
    done = subprocess.run([BARD, "run", "--dry-run", "--home", str(home), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("name", list(PINNED))
def test_keys_of_the_shipped_profiles_are_the_ones_existing_homes_hold(name, tmp_path):
    args, expected = PINNED[name]
    out = dry_run(args, tmp_path)
    keys = dict(re.findall(r"│ (\S+) +│ ([0-9a-f]{20}) │", out))
    assert keys == expected
    if name == "cluster":
        commands = "\n".join(line for line in out.splitlines() if line.startswith(("deepspeed ", "python3 ")))
        assert commands.count("\n") == 1, out
        digest = hashlib.sha256((commands.replace(str(tmp_path), "<home>") + "\n").encode()).hexdigest()
        assert digest == COMMANDS, commands


def test_a_home_the_old_code_filled_is_found_finished(tmp_path):
    """A home holding finished artifacts under the pinned keys (as an earlier version of the code wrote them):
    every stage of the ablation profile is found cached, nothing is to run."""
    from storage.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path)
    for stage_label, key in PINNED["ablations"][1].items():
        stage = stage_label.partition("@")[0]
        store.begin(stage, key, {}, {})
        store.finish(stage, key, 1, {}, {}, {"report": str(tmp_path / "report.md")} if stage == "report" else {})
    out = dry_run(PINNED["ablations"][0], tmp_path)
    statuses = re.findall(r"│ (\S+) +│ [0-9a-f]{20} │ (\S+)", out)
    assert len(statuses) == len(PINNED["ablations"][1]) and {s for _, s in statuses} == {"cached"}, out
