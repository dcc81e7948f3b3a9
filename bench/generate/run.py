"""Throughput of the generation backends on a tiny Qwen3 model built from config (random weights).

    .venv/bin/python bench/generate/run.py [--requests 32] [--max-tokens 64] [--hidden 128] [--layers 4]

- hf: completion tokens/s, batched (`--batch-size`) vs one request at a time, greedy so every sample
  runs to `max_tokens`.
- openai: requests/s against `transformers serve` on 127.0.0.1 (started here) at several concurrency
  limits. That server runs one `model.generate` at a time, so concurrency only overlaps HTTP and
  tokenization with generation; a vLLM or SGLang server batches concurrent requests.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*

from bard_core.generation import GenerationRequest, HFBackendConfig, OpenAIBackendConfig, SamplingParams, make_backend
from tests.bard_core.generation.local_models import build_tiny_model, free_port, start_server, stop_server

WORDS = "one two three four five six seven eight nine ten plus minus".split()


def make_requests(count: int, max_tokens: int, chat: bool) -> list[GenerationRequest]:
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens)
    texts = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 8)) for i in range(count)]
    if chat:
        return [
            GenerationRequest(uid=f"q{i}", messages=[{"role": "user", "content": t}], sampling=sampling)
            for i, t in enumerate(texts)
        ]
    return [GenerationRequest(uid=f"q{i}", prompt=t, sampling=sampling) for i, t in enumerate(texts)]


def timed(backend, requests) -> tuple[float, int]:
    started = time.perf_counter()
    out = backend.generate(requests)
    return time.perf_counter() - started, sum(c.completion_tokens for c in out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--concurrency", default="1,4,16")
    opts = parser.parse_args()
    model = str(
        build_tiny_model(tempfile.mkdtemp(prefix="bard-bench-gen-"), hidden_size=opts.hidden, layers=opts.layers)
    )
    requests = make_requests(opts.requests, opts.max_tokens, chat=True)
    print(f"tiny Qwen3: hidden {opts.hidden}, {opts.layers} layers", end="; ")
    print(f"{opts.requests} chat requests x {opts.max_tokens} tokens, greedy")

    for batch_size in (opts.batch_size, 1):
        backend = make_backend(HFBackendConfig(backend="hf", model=model, batch_size=batch_size, device="cpu"))
        backend.generate(requests[:2])  # warm-up
        seconds, tokens = timed(backend, requests)
        print(
            f"hf     batch_size {batch_size:3d}: {tokens / seconds:8.0f} tokens/s  ({tokens} tokens in {seconds:.1f} s)"
        )

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bard-bench-serve-")) / "serve.log"
    started = time.perf_counter()
    server = start_server(port, log)
    print(f"transformers serve up in {time.perf_counter() - started:.1f} s")
    try:
        for concurrency in [int(c) for c in opts.concurrency.split(",")]:
            config = OpenAIBackendConfig(
                backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model=model, concurrency=concurrency
            )
            backend = make_backend(config)
            backend.generate(requests[:2])  # warm-up (the server loads the model on first use)
            seconds, tokens = timed(backend, requests)
            rate = len(requests) / seconds
            print(f"openai concurrency {concurrency:3d}: {rate:8.1f} requests/s ({tokens / seconds:.0f} tokens/s)")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
