"""The README's numbers are generated, never typed: its results block must match the metrics files."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_readme_results_match_metrics_files():
    result = subprocess.run([sys.executable, "scripts/update_readme.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_readme_quick_start_is_the_two_make_commands():
    text = (REPO / "README.md").read_text()
    assert "make run" in text and "make test" in text
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
