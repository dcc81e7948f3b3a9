#!/usr/bin/env bash
# Regenerate the README's Prefect UI screenshots (docs/ui/deployments.png, docs/ui/run-report.png): the browser test
# takes them from a real `bard ui` and `bard serve` and keeps them where BARD_UI_SCREENSHOTS says.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s chromium
BARD_UI_SCREENSHOTS=docs/ui .venv/bin/python -m pytest -q -m slow tests/flows/test_ui_browser.py
