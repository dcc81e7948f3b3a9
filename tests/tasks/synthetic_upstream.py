"""Synthetic `teacher` and `compress` artifacts, written with the real artifact store at the keys a config
gives them, so `assemble` can be tested (and benchmarked at 1.3M rows) without running generation engines.
Used by tests/tasks/test_assemble_stage.py and bench/assemble/run.py.

Per training problem: `samples` teacher chains (sample 0 correct, the others alternate wrong/correct, every
fifth correct one truncated), and for each correct, complete chain `budgets` compressions, the last of
which is rejected as over budget. Thinking text is words of about `words` per chain.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from bard_core import contracts
from bard_core.config import BardConfig
from storage.artifacts import ArtifactStore, Manifest, commit_shard
from tasks import graph

VOCAB = "so the sum is then we add carry check again next total step value first wait".split()


def _corpus(rng: random.Random, words: int = 200_000) -> tuple[str, list[int]]:
    """Random words, and where each word starts: a chain of n words is a slice of it (fast at 1.3M rows)."""
    chosen = [rng.choice(VOCAB) for _ in range(words)]
    starts, at = [], 0
    for w in chosen:
        starts.append(at)
        at += len(w) + 1
    return " ".join(chosen), starts


def write_upstream(
    config: BardConfig, samples: int = 2, budgets: int = 3, words: int = 60, shard_rows: int = 50_000, seed: int = 0
) -> tuple[Manifest, Manifest]:
    store = ArtifactStore(config.home)
    source = store.manifest("problems", graph.key("problems", config))
    rows = [r for f in source.files("problems") for r in pq.read_table(f, columns=["uid", "source", "answer", "split"]).to_pylist()]
    train = [r for r in rows if r["split"] not in config.assemble.eval_splits]
    rng = random.Random(seed)
    corpus, starts = _corpus(rng, max(200_000, 4 * words))

    def text(n: int) -> str:
        first = rng.randrange(0, len(starts) - n - 1)
        return corpus[starts[first] : starts[first + n] - 1]

    def teacher_rows() -> Iterator[dict]:
        for p in train:
            for i in range(samples):
                correct = i % 2 == 0
                n = max(1, int(rng.gauss(words, words / 4)))
                thinking = text(n)
                answer = p["answer"] if correct else p["answer"] + "1"
                yield {
                    "uid": f"{p['uid']}/s{i}", "problem_uid": p["uid"], "source": p["source"], "sample_idx": i,
                    "model": "synthetic-teacher", "prompt": "q", "completion": f"<think>{thinking}</think>\\boxed{{{answer}}}",
                    "thinking": thinking, "answer_pred": answer, "correct": correct, "thinking_tokens": n,
                    "completion_tokens": n + 8, "finish_reason": "stop", "truncated": correct and rng.random() < 0.2,
                    "seed": i,
                }  # fmt: skip

    def compression_rows(chains: Iterator[dict]) -> Iterator[dict]:
        for s in chains:
            if not s["correct"] or s["truncated"]:
                continue
            for j in range(budgets):
                budget = max(1, s["thinking_tokens"] * (j + 1) // (budgets + 1))
                accepted = j < budgets - 1
                n = budget - rng.randrange(0, max(1, budget // 5)) if accepted else budget + 5
                thinking = text(n)
                yield {
                    "uid": f"{s['uid']}/b{budget}", "sample_uid": s["uid"], "problem_uid": s["problem_uid"],
                    "source": s["source"], "budget": budget, "target": budget, "attempts": 1,
                    "model": "synthetic-compressor", "completion": f"<think>{thinking}</think>\\boxed{{{s['answer_pred']}}}",
                    "thinking": thinking, "thinking_tokens": n, "teacher_thinking_tokens": s["thinking_tokens"],
                    "answer_pred": s["answer_pred"], "within_budget": accepted, "answer_preserved": True,
                    "accepted": accepted, "reject_reason": None if accepted else "over_budget", "seed": j,
                }  # fmt: skip

    chains: list[dict] = []

    def keep(it: Iterator[dict]) -> Iterator[dict]:
        for row in it:
            chains.append({k: row[k] for k in ("uid", "problem_uid", "source", "correct", "truncated", "thinking_tokens", "answer_pred")})
            yield row

    made = _write(store, "teacher", graph.key("teacher", config), config, "teacher_samples", contracts.TEACHER_SAMPLES,
                  keep(teacher_rows()), shard_rows, {"problems": source.key})  # fmt: skip
    rewrites = _write(store, "compress", graph.key("compress", config), config, "compressions", contracts.COMPRESSIONS,
                      compression_rows(iter(chains)), shard_rows, {"teacher": made.key})  # fmt: skip
    return made, rewrites


def _write(store, stage, key, config, table, schema, rows, shard_rows, inputs) -> Manifest:
    path = store.begin(stage, key, {"synthetic": True}, inputs)
    count, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == shard_rows:
            commit_shard(path, table, count, pa.Table.from_pylist(batch, schema=schema))
            count, batch = count + 1, []
    if batch or count == 0:
        commit_shard(path, table, count, pa.Table.from_pylist(batch, schema=schema))
        count += 1
    return store.finish(stage, key, 1, inputs, {table: count})
