"""A stage's version (its declaration in tasks/graph.py) is part of its artifact keys: when what a stage writes
changes, its version must change too,
or homes keep serving artifacts the old code wrote. Here every stage runs on a tiny fixed input (the demo's domain,
its scripted engines, real local Ray and DuckDB; no Prefect) and the hash of its output is pinned next to the
VERSIONs that output depends on: the stage's own and those of the stages before it, as in its key.

- Output changed, VERSIONs the same: bump the VERSION of the stage whose code changed, then pin the new values.
  (A changed config default changes the keys by itself: then pin the new values without a bump.)
- A VERSION bumped (output changed or not): pin the new values of that stage and of every stage after it.
The failure message prints the line to paste.

Hashes are of the rows of every table sorted as JSON (not Parquet bytes, which depend on the writer), so they are the
same on every machine and PYTHONHASHSEED. Training is not bit-reproducible across machines: for `sft` and `grpo`
what is pinned is what they hand TRL (the tokenized training rows, the prompts, the arguments bard sets) and, for
`grpo`, the reward of fixed completions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import bard_core.compress
import bard_core.evaluate
import bard_core.teacher
from bard_core import arithmetic
from bard_core.config import load_config
from bard_core.generation import make_backend
from storage.artifacts import ArtifactStore, Manifest
from tasks import eval, graph

ROOT = Path(__file__).resolve().parents[2]

# stage: (the VERSIONs its output depends on, sha256 of its output on the input below)
PINNED = {
    "problems": ("problems=2", "002d18a3c2754dc354e7a981d71a42b4fa0c604d8f5c5095e035156defd53f4b"),
    "teacher": ("problems=2 teacher=2", "9af476eb838de9c5f1720db297d689bb6a7ae16ddb359a7184d520d434b963b4"),
    "compress": ("compress=3 problems=2 teacher=2", "95c84faabd6488ea887a03a9e57e343f2b231f45d4872d637cf5e03b45e86c6b"),
    "assemble": ("assemble=1 compress=3 problems=2 teacher=2", "d37df47571a78f42128b70daf7d5b6acfab7dbff4543396b7cf395c7001e2181"),
    "eval": ("eval=3 problems=2", "706abb1bed152c9f21422babadb76a6d3d44443766e809f13aac6aac4bfbb87a"),
    "report": ("compress=3 eval=3 problems=2 report=2 teacher=2", "c8f05fc847eb38ec1564ad60c03a31b463745e27ed0298a4a72a0e33ea121e0c"),
    "sft": ("assemble=1 compress=3 problems=2 sft=1 teacher=2", "029f80cc424d60a95bfdaf9faf6065987173ce1977f948719b1f38dd78eb11a7"),
    "grpo": ("assemble=1 compress=3 grpo=1 problems=2 sft=1 teacher=2", "43750f863a23dd18dce8a2346ea95166489449c99b6f1dd7170ce0eb3d01a159"),
}


def depends_on(step: graph.Step) -> dict[str, int]:
    """The version of the stage and of every stage before it, as its key includes them through its inputs."""
    found = {step.name: step.stage.version}
    for upstream in step.inputs.values():
        found |= depends_on(upstream)
    return found


def rows_digest(tables: dict[str, list[dict]], tmp: Path) -> str:
    digest = hashlib.sha256()
    for table in sorted(tables):
        lines = sorted(json.dumps(r, sort_keys=True, default=str).replace(str(tmp), "<tmp>") for r in tables[table])
        digest.update(f"{table}\n".encode() + "\n".join(lines).encode() + b"\n\n")
    return digest.hexdigest()


def rows(manifest: Manifest, table: str) -> list[dict]:
    return [r for f in manifest.files(table) for r in pq.read_table(f).to_pylist()]


def artifact_digest(manifest: Manifest, tmp: Path, **more: list[dict]) -> str:
    return rows_digest({**{t: rows(manifest, t) for t in manifest.tables}, **more}, tmp)


class Recorded:
    """A real engine that keeps the requests it is sent. What a stage asks its engine is part of what it does, and
    the scripted engines read only the numbers of a prompt: its wording shows nowhere in their rows."""

    def __init__(self, config):
        self.engine, self.requests = make_backend(config), []

    def generate(self, requests):
        self.requests += [{"uid": r.uid, "messages": r.messages, "prompt": r.prompt, "sampling": r.sampling.model_dump(mode="json")}
                          for r in requests]  # fmt: skip
        return self.engine.generate(requests)


def requests(stage: str, config, manifest: Manifest) -> list[dict]:
    """The requests the stage's pure function sends its engine for the rows the artifact was built from (the
    artifact itself is built on engine actors, out of reach)."""
    store = ArtifactStore(config.home)
    upstream = {name: store.manifest(name, key) for name, key in manifest.inputs.items()}
    if stage == "teacher":
        engine = Recorded(config.teacher.generation)
        bard_core.teacher.sample(rows(upstream["problems"], "problems"), engine, config)
    elif stage == "compress":
        engine = Recorded(config.compress.generation)
        samples = upstream["teacher"]
        problems_by_uid = {p["uid"]: p for p in rows(store.manifest("problems", samples.inputs["problems"]), "problems")}
        coverage = bard_core.compress.coverage(samples.files("teacher_samples"), config)
        bard_core.compress.compress(rows(samples, "teacher_samples"), problems_by_uid, engine, config, coverage)
    else:
        (model,) = config.eval.models
        where = eval.model_dir(config, model, {})
        engine = Recorded(eval.engine_config(config, model, where))
        bard_core.evaluate.sample(rows(manifest, "eval_problems"), engine, config, model, where)
    return engine.requests


def trl_arguments(args) -> dict:
    """The arguments bard gives TRL: those that differ from TRL's defaults, less paths and the device's."""
    defaults = type(args)(output_dir=args.output_dir, use_cpu=args.use_cpu, bf16=args.bf16).to_dict()
    machine = {"output_dir", "logging_dir", "use_cpu", "bf16", "hub_token"}
    return {k: v for k, v in args.to_dict().items() if k not in machine and v != defaults.get(k)}


@pytest.fixture(scope="module")
def outputs(ray_local, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """stage -> (its VERSIONs as in PINNED, the digest of its output)."""
    tmp = tmp_path_factory.mktemp("versions")
    # A held-out file beside the demo's problems: golds to normalise, a quarantined row, a copy of a training question
    # (assemble decontaminates it) and a multiple-choice question (eval shuffles and letters its options).
    held_out = tmp / "held.jsonl"
    lines = [{"question": arithmetic.problems(24, 0)[0]["question"], "answer": "1,234"},
             {"question": "Compute 20 + 7 - 3 .", "answer": "#### 24"},
             {"question": "Compute 31 - 4 + 2 .", "choices": ["27", "29", "31", "33"], "answer": "B"},
             {"question": "No gold here."}]  # fmt: skip
    held_out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # The demo's settings, written out: tuning the demo profile changes nothing here.
    profile = tmp / "versions.yaml"
    profile.write_text(f"""
problems:
  sources:
    - {{kind: arithmetic, size: 24, seed: 0, split: train}}
    - {{kind: arithmetic, size: 3, seed: 1, split: test}}
    - {{kind: jsonl, path: '{held_out}', split: test}}
budget: {{tokenizer: configs/demo-tokenizer.json}}
budget_sampling: {{mode: uniform, min_budget: 6, max_budget: 130, per_chain: 1, holdout: [24, 48]}}
teacher:
  generation: {{backend: scripted, role: teacher, slip_rate: 0.05}}
  sampling: {{max_tokens: 400, n: 1}}
compress:
  generation: {{backend: scripted, role: compressor, tokenizer: configs/demo-tokenizer.json, overshoot_rate: 0.1}}
  above_length: true
  sampling: {{max_tokens: 400}}
assemble: {{standard_fraction: 0.15, rl_includes_holdout: true}}
student: {{tokenizer: configs/demo-tokenizer.json}}
sft: {{max_length: 256, report_to: []}}
grpo: {{report_to: []}}
reward: {{over_budget_value: -0.5}}
eval:
  models: [{{name: reference, generation: {{backend: scripted, role: reference, tokenizer: configs/demo-tokenizer.json}}}}]
  budgets: [8, 32, 96]
  samples: 1
  temperature: 0.0
""")
    config = load_config(profile, home=str(tmp / "home"))
    found = {}
    for name in ("problems", "teacher", "compress", "assemble", "eval"):
        made = graph.build(name, config)
        engine = {"requests": requests(name, config, made)} if name in ("teacher", "compress", "eval") else {}
        found[name] = artifact_digest(made, tmp, **engine)
    made = graph.build("report", config)
    # The header names the artifact's path and the time: the rest is what the report says.
    text = [line for line in Path(made.stats["report"]).read_text().splitlines() if not line.startswith("- **")]
    found["report"] = rows_digest({"report.md": [{"line": i, "text": t} for i, t in enumerate(text)]}, tmp)
    found["sft"], found["grpo"] = _training(config, tmp)
    return {name: (" ".join(f"{k}={v}" for k, v in sorted(depends_on(graph.Plan(config).step(name)).items())), found[name]) for name in found}


def _training(config, tmp: Path) -> tuple[str, str]:
    """What SFT and GRPO hand TRL, from their recipes' setup (no step is trained), and GRPO's rewards."""
    from bard_core.student import load_model, load_tokenizer
    from bard_core.training.grpo_trl import TRLGRPORecipe
    from bard_core.training.sft_trl import TRLSFTRecipe

    data = ArtifactStore(config.home).manifest("assemble", graph.key("assemble", config))
    supervised = TRLSFTRecipe(config, data.files("sft_dataset"), tmp / "sft")
    supervised.setup()
    trainer = supervised.trainer
    sft_digest = rows_digest({"train": trainer.train_dataset.to_list(), "args": [trl_arguments(trainer.args)]}, tmp)

    start = tmp / "student"  # the SFT model GRPO starts from: its weights do not matter here, its tokenizer does
    tokenizer = load_tokenizer(config.student)
    load_model(config.student, tokenizer).save_pretrained(start)
    tokenizer.save_pretrained(start)
    rl = TRLGRPORecipe(config, str(start), data.files("rl_prompts"), tmp / "grpo")
    rl.setup()
    prompts = rl.trainer.train_dataset.to_list()
    # Fixed completions: each prompt's problem solved at length (its longest SFT completion: over small budgets) and
    # its answer alone, right and wrong: the reward's accuracy, budget and over-budget parts all show.
    solved: dict[str, str] = {}
    for r in rows(data, "sft_dataset"):
        text = r["completion"][0]["content"]
        if len(text) > len(solved.get(r["problem_uid"], "")):
            solved[r["problem_uid"]] = text
    cases = []
    for r in (r for r in rows(data, "rl_prompts") if r["split"] == "train"):
        for text in (solved.get(r["problem_uid"]), f"<think>\n{r['answer']} .\n</think>\n\n\\boxed{{ {r['answer']} }}",
                     "<think>\n0 .\n</think>\n\n\\boxed{ -1 }"):  # fmt: skip
            if text is not None:
                cases.append((r, text))
    reward = rl.trainer.reward_funcs[0]
    ids = [rl.tokenizer(text, add_special_tokens=False)["input_ids"] for _, text in cases]
    values = reward(prompts=[r["prompt"] for r, _ in cases], completions=[[{"role": "assistant", "content": t}] for _, t in cases],
                    completion_ids=ids, answer=[r["answer"] for r, _ in cases], budget=[r["budget"] for r, _ in cases])  # fmt: skip
    rewards = [{"uid": r["uid"], "completion": t, "reward": v} for (r, t), v in zip(cases, values, strict=True)]
    grpo_digest = rows_digest({"train": prompts, "args": [trl_arguments(rl.trainer.args)], "rewards": rewards}, tmp)
    return sft_digest, grpo_digest


@pytest.mark.parametrize("stage", list(PINNED))
def test_a_stage_whose_output_changed_has_a_new_version(stage, outputs):
    versions, digest = outputs[stage]
    pinned_versions, pinned_digest = PINNED[stage]
    paste = f'pin in {Path(__file__).name}: "{stage}": ("{versions}", "{digest}"),'
    if versions == pinned_versions:
        version = graph.STAGES[stage].version
        assert digest == pinned_digest, (
            f"`{stage}` writes something else now, with the same versions: bump the version of the stage whose code "
            f"changed (this one: Stage(\"{stage}\", {version}, ...) in tasks/graph.py; or a stage before it), then {paste}"
        )
    else:
        assert (versions, digest) == (pinned_versions, pinned_digest), f"a VERSION changed: {paste}"
