"""The Prefect UI as users see it, in headless Chromium (Debian's package: `make chromium`), against a real `bard ui` on
a free port that is not 4200 and a real `bard serve`: the Deployments page lists every deployment with the schedule of
`pipeline`, and a run started from a deployment shows its stage subflows and the `bard-report` artifact, also when
every stage is reused. The page's rendered text is asserted. BARD_UI_SCREENSHOTS=DIR keeps two screenshots there
(bench/ui/screenshots.sh makes the README's)."""

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from websockets.sync.client import connect

from tests.conftest import BARD, ROOT, free_port
from tests.flows.test_prefect_server import stop, wait_for

DEPLOYMENTS = ["pipeline", "problems", "teacher", "compress", "assemble", "sft", "grpo", "eval", "report"]
# The pipeline on a few problems, evaluated with the scripted reference alone: a run with a report in about a minute.
SMALL = ["problems.sources=[{kind: arithmetic, size: 20, seed: 0, split: train}, {kind: arithmetic, size: 4, seed: 1, split: test}]",
         "compress.generation=null", "eval.limit=4",
         "eval.models=[{name: reference, generation: {backend: scripted, role: reference, tokenizer: configs/demo-tokenizer.json}}]"]
STAGES = ["problems", "eval", "report"]


class Chromium:
    """Headless Chromium driven over the DevTools protocol (the websockets package Prefect already brings)."""

    def __init__(self, profile: Path):
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1400,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for line in self.proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
            if found := re.search(r"DevTools listening on ws://([\d.:]+)/", line):
                break
        else:
            raise AssertionError(f"chromium exited ({self.proc.wait()}) without a DevTools address")
        pages = json.load(urllib.request.urlopen(f"http://{found.group(1)}/json/list", timeout=10))
        self.ws = connect(next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page"), max_size=None)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        id = next(self.ids)
        self.ws.send(json.dumps({"id": id, "method": method, "params": params}))
        while (reply := json.loads(self.ws.recv(timeout=60))).get("id") != id:
            pass  # an event
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for_text(self, *texts: str, timeout_s: float = 60) -> str:
        """The page's rendered text once it holds every one of `texts` (the UI fills in as its API calls return)."""
        deadline = time.monotonic() + timeout_s
        while not all(t in (page := self.js("document.body.innerText") or "") for t in texts):
            assert time.monotonic() < deadline, f"{[t for t in texts if t not in page]} not on the page:\n{page}"
            time.sleep(0.5)
        return page

    def open(self, url: str, *texts: str) -> str:
        self.call("Page.navigate", url=url)
        return self.wait_for_text(*texts)

    def tab(self, name: str, *texts: str) -> str:
        assert self.js(f"(t => t && (t.click(), true))([...document.querySelectorAll('.p-tab')]"
                       f".find(t => t.innerText.trim() === {name!r}))"), f"no tab {name}"  # fmt: skip
        return self.wait_for_text(*texts)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_the_prefect_ui_in_a_browser_shows_deployments_runs_and_the_report(tmp_path):
    assert shutil.which("chromium"), "no chromium: `make chromium` installs Debian's package"
    shots = Path(os.environ.get("BARD_UI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    assert port != 4200
    url, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("PREFECT_API_URL", None)
    ui_log, serve_log = tmp_path / "ui.log", tmp_path / "serve.log"
    ui = subprocess.Popen([BARD, "ui", "--port", str(port)], cwd=ROOT, env=env, stdout=ui_log.open("w"),
                          stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    serve = browser = None
    try:
        wait_for(lambda: f"Prefect UI: {url}" in ui_log.read_text(), 240, "bard ui", ui, ui_log)
        serve = subprocess.Popen([BARD, "serve"], cwd=ROOT, env={**env, "PREFECT_API_URL": api},
                                 stdout=serve_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        browser = Chromium(tmp_path / "chromium-profile")
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            wait_for(lambda: len(client.read_deployments()) == len(DEPLOYMENTS), 180, "the deployments", serve, serve_log)
            page = browser.open(f"{url}/deployments", f"{len(DEPLOYMENTS)} Deployments", "At 03:00 AM every day")
            assert all(re.search(rf"^{name}$", page, re.M) for name in DEPLOYMENTS), page
            browser.screenshot(shots / "deployments.png")

            # A custom run of the `pipeline` deployment (the form's parameters as the UI passes them), then the same
            # again, as last night's scheduled run would be: every stage reused, and the run still shows the report.
            pipeline = client.read_deployment_by_name("pipeline/pipeline")
            params = {"overrides": SMALL, "stages": STAGES, "home": str(tmp_path / "home")}
            for attempt in ("built", "reused"):
                run = client.create_flow_run_from_deployment(pipeline.id, parameters=params)
                wait_for(lambda: (s := client.read_flow_run(run.id).state) and s.is_final(), 300, attempt, serve, serve_log)
                assert client.read_flow_run(run.id).state.is_completed(), client.read_flow_run(run.id).state.message
                page = browser.open(f"{url}/flow-runs/flow-run/{run.id}", run.name, "Completed", "Deployment")
                browser.tab("Logs", "reused" if attempt == "reused" else "artifacts under")
                if attempt == "built":  # the stages' subflows, listed once the UI's query returns
                    # the count comes before the rows: wait for each stage's row too
                    page = browser.tab("Subflow Runs", f"{len(STAGES)} Flow runs", *(f"\n{name}\n" for name in STAGES))
                    assert all(re.search(rf"^{name}$", page, re.M) for name in STAGES), page
                page = browser.tab("Artifacts", "bard-report")
                if attempt == "reused":  # the `bard-stages` table says so
                    assert f"reused: {', '.join(STAGES)}" in page, page
            browser.screenshot(shots / "run-report.png")
    finally:
        if browser:
            browser.close()
        for proc in (serve, ui):
            if proc:
                stop(proc)
