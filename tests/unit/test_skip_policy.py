"""The suite's skip policy (tests/skip_policy.py), run on small test files in a pytest of their own: a skip
for a missing set-up step fails the run, one on the allow-list does not, and the opt-out still lists it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

FILE = '''
import pytest

def test_passes():
    pass

def test_skipped():
    pytest.skip("{reason}")
'''


def _pytest(tmp_path, reason: str, *, module_skip: bool = False, **env) -> subprocess.CompletedProcess:
    body = 'import pytest\npytest.importorskip("no_such_module_xyz")\n' if module_skip else FILE.format(reason=reason)
    (tmp_path / "test_x.py").write_text(body + "\ndef test_other():\n    pass\n")
    env = {**{k: v for k, v in os.environ.items() if k != "TREX_RAY_ALLOW_SKIPS"}, **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_policy", "-p", "no:randomly",
                           "-p", "no:cacheprovider", "-q", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_skip_for_a_missing_set_up_step_fails_the_run_and_names_it(tmp_path):
    out = _pytest(tmp_path, "Debian's chromium is not installed")
    assert out.returncode == 1, out.stdout
    assert "skips that hide a missing set-up step" in out.stdout
    assert "test_x.py::test_skipped: Debian's chromium is not installed" in out.stdout
    assert "scripts/setup.sh dev" in out.stdout


def test_a_module_that_skips_itself_fails_the_run_too(tmp_path):
    out = _pytest(tmp_path, "", module_skip=True)
    assert out.returncode == 1, out.stdout
    assert "no_such_module_xyz" in out.stdout


def test_an_allowed_reason_passes(tmp_path):
    out = _pytest(tmp_path, "no GPU on this machine")
    assert out.returncode == 0, out.stdout
    assert "missing set-up" not in out.stdout


def test_the_opt_out_passes_but_still_lists_the_skip(tmp_path):
    out = _pytest(tmp_path, "no FT-Bench data directory", TREX_RAY_ALLOW_SKIPS="1")
    assert out.returncode == 0, out.stdout
    assert "test_x.py::test_skipped: no FT-Bench data directory" in out.stdout
