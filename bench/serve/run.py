"""bard's OpenAI-compatible server (`bard serve-model`) against `transformers serve` on the same model, and what the
hard cap costs per token.

    .venv/bin/python bench/serve/run.py [--model DIR] [--requests 32] [--max-tokens 64] [--concurrency 1,8,32]

- serving: requests/s and latency (median, 95th percentile) at each concurrency, both servers on 127.0.0.1,
  the same chat requests, `max_tokens` each, temperature 1. Without `--model`, a tiny Qwen3 with random weights
  (hidden 128, 4 layers) is built; `--model` takes any model directory (e.g. a demo student's `<artifact>/model`).
- the cap: `BudgetedModel.generate` in-process on the same requests, soft (no cap) vs soft+hard with a budget
  the rows reach, as seconds per generated token; and `BudgetCap` alone, microseconds per decoding step.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root, for tests.*

from tests.bard_core.generation.local_models import build_tiny_model, free_port, start_server, stop_server  # noqa: E402

WORDS = "one two three four five six seven eight nine ten plus minus".split()
TEMPLATE = "Think for at most {budget} tokens."


def questions(count: int) -> list[str]:
    return [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 8)) for i in range(count)]


def post(url: str, body: dict) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        json.loads(reply.read())
    return time.perf_counter() - started


def load(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda b: post(url, b), bodies))
    return len(bodies) / (time.perf_counter() - started), latencies


def start_bard(model: str, port: int, log: Path, batch_size: int) -> subprocess.Popen:
    bard = str(Path(sys.executable).with_name("bard"))
    with open(log, "ab") as out:
        proc = subprocess.Popen([bard, "serve-model", model, "--port", str(port), "--name", "m", "--device", "cpu",
                                 "--batch-size", str(batch_size), "--budget-template", TEMPLATE],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"bard serve-model exited; see {log}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"bard serve-model did not start; see {log}")


def serving(opts, model: str, texts: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bard-bench-serve-"))
    servers = []
    try:
        bard_port, hf_port = free_port(), free_port()
        servers.append(start_bard(model, bard_port, tmp / "bard.log", max(opts.concurrency)))
        servers.append(start_server(hf_port, tmp / "transformers.log"))
        for label, port, name, extra in (("bard serve-model", bard_port, "m", {}),
                                         ("transformers serve", hf_port, model, {})):  # fmt: skip
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            bodies = [{"model": name, "messages": [{"role": "user", "content": t}], "max_tokens": opts.max_tokens,
                       "temperature": 1.0, "seed": i, **extra} for i, t in enumerate(texts)]  # fmt: skip
            post(url, bodies[0])  # warm up (transformers serve loads the model on its first request)
            for concurrency in opts.concurrency:
                rate, latencies = load(url, bodies, concurrency)
                p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
                print(f"{label:20s} concurrency {concurrency:3d}: {rate:6.2f} requests/s, latency median "
                      f"{statistics.median(latencies):6.2f} s, p95 {p95:6.2f} s")  # fmt: skip
    finally:
        for proc in servers:
            stop_server(proc)


def cap_cost(opts, model_dir: str, texts: list[str]) -> None:
    import torch

    from bard_core.inference import BudgetCap, BudgetedModel, Request, _Limits, _Sequence

    model = BudgetedModel.load(model_dir, template=TEMPLATE, device="cpu", batch_size=max(opts.concurrency))
    budget = max(opts.max_tokens // 2, 1)
    for mode in ("soft", "soft+hard"):
        requests = [Request(t, budget=budget, mode=mode, max_tokens=opts.max_tokens, temperature=1.0, seed=i)
                    for i, t in enumerate(texts)]  # fmt: skip
        started = time.perf_counter()
        results = model.generate(requests)
        seconds = time.perf_counter() - started
        tokens = sum(r.completion_tokens for r in results)
        print(f"in-process generate, {mode:9s} budget {budget}: {tokens} tokens in {seconds:.2f} s = "
              f"{1e3 * seconds / tokens:.3f} ms/token")  # fmt: skip
    vocab = len(model.tokenizer)
    for rows in opts.concurrency:
        seqs = [_Sequence(model.tags, _Limits(budget=10**6, answer_tokens=64, max_tokens=10**6)) for _ in range(rows)]
        cap = BudgetCap(seqs, prompt_width=1)
        ids = torch.zeros(rows, 1, dtype=torch.long)
        scores = torch.zeros(rows, vocab)
        steps = 200
        started = time.perf_counter()
        for _ in range(steps):
            ids = torch.cat([ids, torch.full((rows, 1), 7)], dim=1)
            cap(ids, scores)
        per_step = (time.perf_counter() - started) / steps
        print(f"BudgetCap alone, batch {rows:3d}: {1e6 * per_step:.0f} us/step = {1e6 * per_step / rows:.1f} us per row token")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a model directory (default: a tiny random Qwen3)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--skip-serving", action="store_true")
    opts = parser.parse_args()
    opts.concurrency = [int(c) for c in opts.concurrency.split(",")]
    model = opts.model or str(build_tiny_model(tempfile.mkdtemp(prefix="bard-bench-serve-model-"), hidden_size=128, layers=4))
    texts = questions(opts.requests)
    print(f"model {model}; {opts.requests} chat requests x max {opts.max_tokens} tokens, temperature 1")
    if not opts.skip_serving:
        serving(opts, model, texts)
    cap_cost(opts, model, texts)


if __name__ == "__main__":
    main()
