"""The GPU profiles, configs/single-gpu.yaml and configs/paper.yaml: they load and validate, the paths a user must set
are marked, and `bard run --dry-run` prints the whole plan: every stage with its key, the engines and GPUs each
stage asks for, and (paper) the full OpenRLHF command lines, every flag accepted by OpenRLHF 0.11.2's own parser.
Nothing here needs a GPU: the models and data the profiles name are stood in for by temporary paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from bard_core.config import load_config
from bard_core.training import openrlhf
from tasks.graph import ORDER, Plan
from tests.bard_core.test_openrlhf import check_flags, entry_argv
from tests.conftest import BARD, DATA, ROOT

PROFILES = {"single-gpu": ROOT / "configs" / "single-gpu.yaml", "paper": ROOT / "configs" / "paper.yaml"}


def stand_ins(name: str, tmp_path: Path) -> list[str]:
    """`--set` overrides that put every path the user sets in `name` on a temporary stand-in: AIME on the repository's
    copy, other problem files on small files written here, model directories on empty directories."""
    data = yaml.safe_load(PROFILES[name].read_text())
    sources = []
    for source in data["problems"]["sources"]:
        if source["kind"] == "aime":
            source = {**source, "path": str(DATA / f"{source['source']}.jsonl")}
        elif "path" in source:
            path = tmp_path / f"{source['source']}.jsonl"
            row = {"question": f"What is 2 + {len(sources)}?", "answer": str(2 + len(sources))}
            if "choices" in source.get("fields", {}):
                row["choices"] = [row["answer"], "1", "5", "9"]
            path.write_text(json.dumps(row) + "\n")
            source = {**source, "path": str(path)}
        sources.append(source)
    overrides = [f"problems.sources={json.dumps(sources)}"]
    for key in ("student.model", "teacher.generation.model", "compress.generation.model"):
        section = data
        for part in key.split(".")[:-1]:
            section = section[part]
        if key == "student.model" or section.get("backend") in ("vllm", "hf"):  # a directory, not an endpoint's name
            folder = tmp_path / "models" / key.split(".")[0]
            folder.mkdir(parents=True)
            overrides.append(f"{key}={folder}")
    return overrides


def dry_run(name: str, tmp_path: Path) -> str:
    args = [a for o in stand_ins(name, tmp_path) for a in ("--set", o)]
    env = {**os.environ, "COLUMNS": "400"}  # the table unwrapped, each command on one line
    done = subprocess.run([BARD, "run", "--config", str(PROFILES[name]), "--home", str(tmp_path / "home"), "--dry-run",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def engines(out: str) -> dict[str, list[str]]:
    """The dry run's "Engines and GPUs per stage" lines, by stage label."""
    found: dict[str, list[str]] = {}
    for line in out.split("Engines and GPUs per stage:\n", 1)[1].split("\n\n", 1)[0].splitlines():
        label, text = line.split(None, 1)
        found.setdefault(label, []).append(text)
    return found


@pytest.mark.parametrize("name", list(PROFILES))
def test_each_profile_validates_as_shipped_and_with_the_user_paths_set(name, tmp_path):
    shipped = load_config(PROFILES[name])
    cfg = load_config(PROFILES[name], stand_ins(name, tmp_path))
    for c in (shipped, cfg):
        gen = c.compress.generation
        assert gen.chat_template_kwargs == {"enable_thinking": False}, "Qwen3 thinks by default: off for the compressor"
        assert c.compress.max_input_tokens + c.compress.sampling.max_tokens <= gen.max_model_len
        trained = range(c.budget_sampling.min_budget, c.budget_sampling.max_budget + 1)
        assert [b for b in c.eval.budgets if b not in trained], "some evaluation budgets are never trained on"
        assert c.teacher.sampling.max_tokens < c.sft.max_length, "a whole teacher chain fits an SFT sequence"
    benchmarks = {s.label for s in shipped.problems.sources if s.split == "test"}
    if name == "single-gpu":
        assert benchmarks == {"gsm8k", "math500", "aime24", "aime25"}
        assert (shipped.sft.backend, shipped.grpo.backend) == ("trl", "trl")
        assert shipped.student.model.endswith("Qwen3-0.6B")
    else:
        assert benchmarks == {"aime24", "aime25", "gpqa"}
        assert shipped.teacher.generation.backend == "openai" and "DeepSeek-R1" in shipped.teacher.generation.model
        gen = shipped.compress.generation
        assert (gen.backend, gen.tensor_parallel_size, Path(gen.model).name) == ("vllm", 4, "Qwen3-32B")
        assert shipped.student.model.endswith("Qwen3-8B-Base")
        assert (shipped.sft.backend, shipped.grpo.backend) == ("openrlhf", "openrlhf")
        assert shipped.assemble.standard_fraction == pytest.approx(350 / (350 + 390), abs=0.01)


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_paths_a_user_sets_are_marked(name):
    """Every model directory, endpoint and data file of the profile sits on a line that says `SET`."""
    text = PROFILES[name].read_text()
    cfg = load_config(PROFILES[name])
    values = [cfg.student.model, cfg.teacher.generation.model, cfg.compress.generation.model]
    values += [s.path for s in cfg.problems.sources if s.path]
    if cfg.teacher.generation.backend == "openai":
        values.append(cfg.teacher.generation.base_url)
    values += [v for v in (cfg.ray.address, cfg.ray.job_address) if v]
    for value in values:
        (line,) = [line for line in text.splitlines() if value in line.split("#")[0]]
        assert "# SET" in line, line


def test_single_gpu_dry_run_prints_every_stage_its_engine_and_its_gpu(tmp_path):
    out = dry_run("single-gpu", tmp_path)
    keys = dict(re.findall(r"│ (\S+) +│ ([0-9a-f]{20}) │ to run", out))
    assert list(keys) == ORDER
    lines = engines(out)
    assert list(lines) == ORDER
    models = tmp_path / "models"
    assert lines["teacher"] == [f"vllm {models / 'teacher'}, tensor parallel 1: 1 engine actor x 1 GPU = 1 GPU"]
    assert lines["compress"] == [f"vllm {models / 'compress'}, tensor parallel 1: 1 engine actor x 1 GPU = 1 GPU"]
    assert lines["sft"] == [f"trl on {models / 'student'}: one Ray task, 1 GPU when the cluster has one, else CPU"]
    sft_model = tmp_path / "home" / "artifacts" / "sft" / keys["sft"] / "model"
    assert f"sft: vllm {sft_model}, tensor parallel 1: 1 engine actor x 1 GPU = 1 GPU" in lines["eval"]
    assert not re.search(r"^(deepspeed|python3) ", out, re.M), "no cluster job on one GPU box"


def test_paper_dry_run_prints_the_cluster_plan_and_commands_openrlhf_accepts(tmp_path):
    out = dry_run("paper", tmp_path)
    keys = dict(re.findall(r"│ (\S+) +│ ([0-9a-f]{20}) │ to run", out))
    assert list(keys) == ORDER
    lines = engines(out)
    assert list(lines) == ORDER
    assert lines["teacher"] == ["openai deepseek-ai/DeepSeek-R1 at http://teacher-host:8000/v1, 32 requests in flight "
                                "per actor: 8 engine actors, no GPU"]  # fmt: skip
    models = tmp_path / "models"
    assert lines["compress"] == [f"vllm {models / 'compress'}, tensor parallel 4: 2 engine actors x 4 GPUs = 8 GPUs"]
    assert lines["sft"] == [f"openrlhf Ray job from {models / 'student'}: deepspeed (ZeRO-3) on 8 GPUs of one node"]
    assert lines["grpo"] == ["openrlhf Ray job from the sft model: actor and reference on 1 node x 8 GPUs, 8 vLLM engines "
                             "x tensor parallel 1, all colocated on the same 8 GPUs"]  # fmt: skip
    assert [line.split(":")[0] for line in lines["eval"]] == ["sft", "grpo"]

    commands = {line.split()[0]: line for line in out.splitlines() if line.startswith(("deepspeed ", "python3 "))}
    assert set(commands) == {"deepspeed", "python3"}, out
    sft = check_flags(openrlhf.SFT_MODULE, entry_argv(commands["deepspeed"], openrlhf.SFT_MODULE))
    # the student as the job loads it: prepared from student.model under the artifact (links or a copy, at run time)
    student = tmp_path / "home" / "artifacts" / "sft" / keys["sft"] / "_parts" / "student"
    assert sft.model.model_name_or_path == str(student) and sft.train.batch_size == 128
    grpo = check_flags(openrlhf.GRPO_MODULE, entry_argv(commands["python3"], openrlhf.GRPO_MODULE))
    assert grpo.rollout.max_new_tokens == 12064 and grpo.vllm.num_engines == 8 and grpo.train.colocate_all


def test_the_gpus_follow_the_settings(tmp_path):
    """Separate actor, reference and vLLM GPUs add up; no reference without KL; ray.resources replaces an engine's
    own GPU count; an hf engine on the CPU asks for none."""

    overrides = stand_ins("paper", tmp_path) + [
        "grpo.openrlhf.colocate_all=false", "grpo.openrlhf.vllm_engines=4", "grpo.openrlhf.vllm_tensor_parallel_size=2",
        "ray.resources={compress: {num_gpus: 2}}", "eval.generation={backend: hf, device: cpu}",
    ]  # fmt: skip
    plan = Plan(load_config(PROFILES["paper"], overrides, home=str(tmp_path / "home")))
    (grpo,) = plan.step("grpo").runs_on()
    assert grpo.endswith("4 vLLM engines x tensor parallel 2, each on its own: 24 GPUs")  # 8 actor + 8 reference + 8
    assert plan.step("compress").runs_on()[0].endswith("tensor parallel 4: 2 engine actors x 2 GPUs = 4 GPUs")
    assert all(line.endswith("on cpu: 8 engine actors, no GPU") for line in plan.step("eval").runs_on())
    no_kl = Plan(load_config(PROFILES["paper"], overrides + ["grpo.beta=0"], home=str(tmp_path / "home")))
    assert no_kl.step("grpo").runs_on()[0].endswith("each on its own: 16 GPUs")
