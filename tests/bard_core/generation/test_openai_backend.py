"""The openai backend against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1 serving the
tiny model, and for faults a small reverse proxy (below) in front of it that answers 500/429/503/401 or stalls
past the client's timeout for chosen attempts. All traffic stays on 127.0.0.1; every retry loop is bounded
by `max_attempts`.
"""

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bard_core.generation import (
    GenerationError,
    GenerationRequest,
    HFBackendConfig,
    OpenAIBackendConfig,
    SamplingParams,
    make_backend,
)
from tests.bard_core.generation.local_models import free_port, start_server, stop_server

WORDS = "one two three four five six seven eight nine ten".split()


def prompts(count: int) -> list[str]:
    """Prompts of different lengths, so `prompt_tokens` tells which prompt a completion answers."""
    return [" ".join(WORDS[i % 10] for i in range(k + 1)) for k in range(count)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    proc = start_server(port, log)
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


def openai_config(base_url: str, model: str, **kw) -> OpenAIBackendConfig:
    fast = dict(
        concurrency=4, timeout_s=20, connect_timeout_s=2, max_attempts=4, backoff_base_s=0.05, backoff_cap_s=0.5
    )
    return OpenAIBackendConfig(backend="openai", base_url=f"{base_url}/v1", model=model, **{**fast, **kw})


class FaultProxy:
    """A reverse proxy on 127.0.0.1 that, per request, asks `plan(key, attempt)` what to do: "forward" to the
    real server, an HTTP status to answer itself, or "stall" (wait `stall_s`, then close without a reply).
    `key` identifies a sample by its prompt and seed; `attempt` counts from 1 per key."""

    def __init__(self, target: str, plan, stall_s: float = 3.0):
        self.target, self.plan, self.stall_s = target, plan, stall_s
        self.attempts: dict[str, list[str]] = {}  # key -> the action taken on each attempt
        self.auth_headers: set[str] = set()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                key = json.dumps([request.get("prompt") or request.get("messages"), request.get("seed")])
                with proxy.lock:
                    proxy.auth_headers.add(self.headers.get("Authorization", ""))
                    attempt = len(proxy.attempts.setdefault(key, [])) + 1
                    action = proxy.plan(key, attempt)
                    proxy.attempts[key].append(str(action))
                if action == "stall":
                    time.sleep(proxy.stall_s)  # the client has given up by now; just close
                    return
                if action == "forward":
                    status, reply = proxy.forward(self.path, body)
                else:
                    status, reply = action, json.dumps({"error": {"message": f"injected {action}"}}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(self.target + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 502, b'{"error": "upstream unreachable"}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_greedy_completions_match_the_hf_backend(server, tiny_model):
    """Same model, same greedy decoding: the server's text and token counts equal the hf backend's."""
    sampling = SamplingParams(temperature=0, max_tokens=10)
    requests = [GenerationRequest(uid=f"p{i}", prompt=p, sampling=sampling) for i, p in enumerate(prompts(6))]
    remote = make_backend(openai_config(server, tiny_model)).generate(requests)
    local = make_backend(HFBackendConfig(backend="hf", model=tiny_model, batch_size=1)).generate(requests)
    assert [(c.uid, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in remote] == [
        (c.uid, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in local
    ]


def test_chat_samples_in_order_with_reasoning_joined(server, tiny_think_model):
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=30, n=3, seed=40)
    requests = [GenerationRequest(uid=f"q{i}", messages=[{"role": "user", "content": p}], sampling=sampling)
                for i, p in enumerate(prompts(4))]  # fmt: skip
    out = make_backend(openai_config(server, tiny_think_model)).generate(requests)
    assert [(c.uid, c.sample_idx, c.seed) for c in out] == [(r.uid, i, 40 + i) for r in requests for i in range(3)]
    for c in out:
        assert c.finish_reason in ("stop", "length") and 1 <= c.completion_tokens <= 30
    # The template prefills "<think>\n", so the server returns what the model wrote as reasoning_content
    # (and no reasoning field when the model ended at once): the backend writes it back as thinking.
    joined = [c for c in out if c.text.startswith("<think>\n")]
    assert len(joined) >= len(out) // 2 and all("\n</think>\n\n" in c.text for c in joined)

    # One sample alone, compared with the server's raw reply to the same request (the server seeds
    # torch per request, so one request at a time is deterministic).
    one = GenerationRequest(
        uid="one", messages=[{"role": "user", "content": "one two"}], sampling=sampling.model_copy(update={"n": 1})
    )
    body = {
        "model": tiny_think_model,
        "messages": one.messages,
        "max_tokens": 30,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 40,
    }
    message = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=30).json()["choices"][0]["message"]
    assert message["reasoning_content"]
    [c] = make_backend(openai_config(server, tiny_think_model, concurrency=1)).generate([one])
    assert (
        c.text
        == f"<think>\n{message['reasoning_content'].strip()}\n</think>\n\n{(message.get('content') or '').strip()}"
    )


def test_chat_template_kwargs_are_sent_and_the_server_renders_with_them(server, tiny_model, tmp_path):
    """`chat_template_kwargs` travels in the request as vLLM and SGLang servers (and `transformers serve`) take it:
    the server renders Qwen3's own template with thinking off, 6 prompt tokens longer (an empty thinking block)."""
    from tests.bard_core.generation.local_models import with_qwen3_chat_template

    model = str(with_qwen3_chat_template(tiny_model, tmp_path / "qwen3-template"))
    messages = [{"role": "user", "content": "one plus two"}]
    request = GenerationRequest(uid="q", messages=messages, sampling=SamplingParams(max_tokens=2, temperature=0))
    (on,) = make_backend(openai_config(server, model)).generate([request])
    off_backend = make_backend(openai_config(server, model, chat_template_kwargs={"enable_thinking": False}))
    (off,) = off_backend.generate([request])
    assert off.prompt_tokens == on.prompt_tokens + 6
    assert off_backend._body(request, 0)[1]["chat_template_kwargs"] == {"enable_thinking": False}
    plain = GenerationRequest(uid="p", prompt="one plus two", sampling=request.sampling)
    assert "chat_template_kwargs" not in off_backend._body(plain, 0)[1], "a raw prompt has no chat template"


def test_retries_500_429_503_and_stalls_without_losing_or_duplicating(server, tiny_model):
    faults = [500, 429, "stall", 503, "forward"]

    def plan(key, attempt):
        # Each sample meets at most two faults (chosen by a hash of its key), then is forwarded.
        h = zlib.crc32(key.encode())
        first, second = faults[h % 5], faults[(h // 5) % 5]
        return {1: first, 2: second}.get(attempt, "forward")

    proxy = FaultProxy(server, plan, stall_s=4.0)
    try:
        sampling = SamplingParams(temperature=0, max_tokens=6, n=3, seed=0)
        requests = [GenerationRequest(uid=f"p{i}", prompt=p, sampling=sampling) for i, p in enumerate(prompts(8))]
        out = make_backend(openai_config(proxy.url, tiny_model, timeout_s=2.0)).generate(requests)
        direct = make_backend(openai_config(server, tiny_model)).generate(requests)
    finally:
        proxy.close()
    assert [(c.uid, c.sample_idx, c.seed) for c in out] == [(r.uid, i, i) for r in requests for i in range(3)]
    assert out == direct  # same greedy texts and counts as without faults: nothing mixed up
    actions = [a for tried in proxy.attempts.values() for a in tried]
    assert {"500", "429", "stall", "503"} <= set(actions)  # every fault was met
    assert len(proxy.attempts) == 24 and all(a[-1] == "forward" for a in proxy.attempts.values())


def test_gives_up_after_max_attempts(server, tiny_model):
    proxy = FaultProxy(server, lambda key, attempt: 503)
    try:
        backend = make_backend(openai_config(proxy.url, tiny_model, max_attempts=3))
        request = GenerationRequest(uid="p", prompt="one", sampling=SamplingParams(max_tokens=4))
        with pytest.raises(
            GenerationError, match=r"/v1/completions: request 'p' sample 0 failed 3 times, last: status 503"
        ):
            backend.generate([request])
    finally:
        proxy.close()
    assert [len(a) for a in proxy.attempts.values()] == [3]


def test_client_error_fails_fast_naming_endpoint_and_status_never_the_key(server, tiny_model, monkeypatch):
    secret = "sk-test-0123456789"
    monkeypatch.setenv("BARD_TEST_API_KEY", secret)
    proxy = FaultProxy(server, lambda key, attempt: 401)
    try:
        config = openai_config(
            proxy.url, tiny_model, api_key_env="BARD_TEST_API_KEY", backoff_base_s=5, backoff_cap_s=5
        )
        backend = make_backend(config)
        requests = [
            GenerationRequest(uid=f"p{i}", prompt=p, sampling=SamplingParams(max_tokens=4, n=2))
            for i, p in enumerate(prompts(3))
        ]
        started = time.monotonic()
        with pytest.raises(GenerationError) as err:
            backend.generate(requests)
    finally:
        proxy.close()
    assert time.monotonic() - started < 3  # no 5 s backoff: a 401 is not retried
    message = str(err.value)
    assert f"{proxy.url}/v1/completions answered 401" in message and secret not in message
    assert proxy.auth_headers == {f"Bearer {secret}"}  # the key was sent, in the header only
    assert all(len(a) == 1 for a in proxy.attempts.values())
    for shown in (repr(config), config.model_dump_json(), repr(backend.__dict__)):
        assert secret not in shown

    monkeypatch.delenv("BARD_TEST_API_KEY")
    with pytest.raises(GenerationError, match="BARD_TEST_API_KEY is not set"):
        backend.generate(requests)


def test_server_killed_and_restarted_mid_run(tmp_path, tiny_model):
    """SIGKILL the server while requests are in flight, start it again on the same port: every sample
    comes back exactly once, with the same greedy text as from an undisturbed hf backend."""
    port, log = free_port(), tmp_path / "serve.log"
    proc = start_server(port, log)
    sampling = SamplingParams(temperature=0, max_tokens=24)
    requests = [GenerationRequest(uid=f"p{i}", prompt=p, sampling=sampling) for i, p in enumerate(prompts(40))]
    # Retries span about 20 s at least, enough for a restart (about 6 s here).
    backend = make_backend(
        openai_config(
            f"http://127.0.0.1:{port}",
            tiny_model,
            concurrency=2,
            max_attempts=40,
            backoff_base_s=0.2,
            backoff_cap_s=1.0,
        )
    )
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(out=backend.generate(requests)))
    try:
        runner.start()
        deadline = time.monotonic() + 60
        while Path(log).read_text().count('"POST /v1/completions HTTP/1.1" 200') < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        served_before = Path(log).read_text().count('"POST /v1/completions HTTP/1.1" 200')
        assert runner.is_alive() and 5 <= served_before < 40  # killed mid-run
        proc = start_server(port, log)
        runner.join(timeout=90)
        assert not runner.is_alive()
    finally:
        stop_server(proc)
    out = result["out"]
    local = make_backend(HFBackendConfig(backend="hf", model=tiny_model, batch_size=8)).generate(requests)
    assert [(c.uid, c.text, c.prompt_tokens, c.completion_tokens) for c in out] == [
        (c.uid, c.text, c.prompt_tokens, c.completion_tokens) for c in local
    ]
