"""Existing homes keep their cache across refactors: the artifact keys `bard run --dry-run` shows for the shipped
profiles (variants and the cluster backends included), and the OpenRLHF command lines, are pinned here as the code
computed them before the stage graph was declared once (issue 22). A change of a stage's output bumps its VERSION
and re-pins them on purpose (tests/tasks/test_stage_versions.py says how); a refactor must leave them alone."""

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
CLUSTER = ["--set", "sft.backend=openrlhf", "--set", "grpo.backend=openrlhf", "--set", "reward.tau=0.1",
           "--set", "eval.models=[{name: grpo, model: grpo}]"]  # fmt: skip

DEMO = {"problems": "e2e6fd2c926279973666", "teacher": "49ba375815be0111f958", "compress": "bc53166cfd6b903e8054",
        "assemble": "9ba1bde2314c56d6f177", "sft": "f09dc91a668b5de95857", "grpo": "f65228067bf758a4c6c1",
        "eval": "a2f444be01c9cb5bdae3", "report": "c0f3be5f0ebb21b8e440"}  # fmt: skip
PINNED = {
    "demo": ([], DEMO),
    "ablations": (["--config", "configs/demo-ablations.yaml"], {
        **{k: DEMO[k] for k in ("problems", "teacher", "compress", "assemble", "sft")},
        "assemble@rl_only": "a277f4e7c3ba1e829408", "sft@rl_only": "307b8eb11f5ac1b3be14",
        "grpo": "8c477aec8146a1470a1e", "grpo@additive": "797755013880d18b28a5",
        "grpo@multiplicative": "a693bda22d8324812dbf", "grpo@rl_only": "a64c2682360c6be5069a",
        "eval": "29af16a59628dd24105a", "report": "369886ad1a3c8a42f0a9"}),
    "cluster": (CLUSTER, {
        **{k: DEMO[k] for k in ("problems", "teacher", "compress", "assemble")},
        "sft": "42a051e618140dd78a85", "grpo": "15a1e72794b7d4720764", "eval": "467a3120c949e2e3fcfb",
        "report": "158d2bd82848d89dcad2"}),
}  # fmt: skip
# sha256 of the two OpenRLHF command lines of the "cluster" run, the home replaced by <home>.
COMMANDS = "59cba22a3e081379c200c0b8259c921826ad0fa31e4150ff9379351395ac7fda"


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
    """A home holding finished artifacts under the pinned keys (as the code before the refactor wrote them):
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
