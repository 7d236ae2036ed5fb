"""Every shell command written in README.md and docs/*.md works as written, or says why it is not run here.

A newcomer copies these commands. Each one either runs in this test (it needs no dataset, training or Docker)
or is listed in NOT_RUN with the reason; a new command in the docs that is neither fails the test. For the
commands not run, what can be checked without running them is: the make target exists, the script or module
exists, and every --flag it is written with is one its --help lists.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)

# Commands run by test_the_commands_that_need_nothing_run_as_written (a prefix is enough).
RUN = (
    "curl ",  # against the app on a free port: the README's API examples
    ".venv/bin/python -m models predict ",
    ".venv/bin/python -m models list",
    "make lint",
)
# Commands not run here, each with its reason: (prefix, reason).
NOT_RUN = (
    ("make run", "serves until stopped: the server tests start the same command"),
    ("make test", "the suite itself (make test-fast is a subset)"),
    ("make readme", "rewrites committed docs: test_generated_blocks_match_the_files_they_come_from checks them"),
    ("make report", "rewrites the committed report from the CIFAR-10 test split"),
    ("make calibrate", "needs the CIFAR-10 validation split and rewrites committed files"),
    ("make train-", "trains a model (26-60 minutes)"),
    ("make evaluate-", "reads the CIFAR-10 test split and rewrites committed metrics"),
    ("make export-mobilenetv2", "needs model.keras, which is not committed (it is the training output)"),
    ("make bench-", "benchmarks: minutes of machine time, their outputs are committed in docs/measurements/"),
    ("make simulate-image", "installs the serving image's packages into a fresh folder (minutes, ~1 GB)"),
    (".venv/bin/python -m models.custom_cnn.train", "trains (even the smoke run needs CIFAR-10)"),
    (".venv/bin/python -m models.mobilenetv2.train", "trains on CIFAR-10 with TensorFlow"),
    (".venv/bin/python -m models.uncertainty", "fits on the CIFAR-10 validation split"),
    (".venv/bin/python -m models.scope.faces", "chooses its line on the CIFAR-10 validation split"),
    (".venv/bin/python scripts/fetch_face_detector.py", "downloads a 35 MB wheel from PyPI (the tests check the file)"),
    (".venv/bin/python -m models.holdout_corruptions", "scores trained model folders on the validation split"),
    (".venv/bin/python -m reports.robustness", "the CIFAR-10-C suite: 20 minutes on the test split"),
    (".venv/bin/python bench/", "benchmarks: minutes of machine time, their outputs are committed"),
    (".venv/bin/python scripts/build_ood_benchmark.py",
     "renders 871 images (minutes; downloads three npm packages once); its test builds it"),
    (".venv/bin/python scripts/build_photo_benchmark.py",
     "clones eight GitHub repositories (CI has no network but the package registries); its manifest is tested"),
    (".venv/bin/python scripts/build_imagenet_map.py",
     "downloads the timm wheel for ImageNet's synset ids; test_the_committed_map_is_what_wordnet_gives rebuilds the "
     "map from WordNet"),
    (".venv/bin/python scripts/make_examples.py", "rewrites the committed examples from the CIFAR-10 test split"),
    ("docker run", "needs a Docker daemon and the tensorflow/serving image"),
    ("curl -d '{\"instances\"", "talks to the TensorFlow Serving container above"),
)


def documented_commands() -> list[tuple[str, str]]:
    """(page name, command) for every command in a shell block: continuation lines joined, comments dropped."""
    found = []
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append((page.name, command))
    return found


COMMANDS = documented_commands()


def reason_not_run(command: str) -> str | None:
    return next((reason for prefix, reason in NOT_RUN if command.startswith(prefix)), None)


RUNNABLE = [(page, command) for page, command in COMMANDS
            if command.startswith(RUN) and reason_not_run(command) is None]


def test_the_docs_hold_commands_and_each_is_run_or_has_a_reason():
    assert len(COMMANDS) >= 30, "the shell blocks were not found: did the docs change their fences?"
    unclassified = [(page, command) for page, command in COMMANDS
                    if not command.startswith(RUN) and reason_not_run(command) is None]
    assert not unclassified, f"add these to RUN or NOT_RUN (with the reason): {unclassified}"
    bare = [command for _, command in COMMANDS if command.startswith(("python ", "python3 ", "pip "))]
    assert not bare, f"the python on PATH has none of the dependencies; write .venv/bin/python: {bare}"


def python_target(words: list[str]) -> tuple[Path | None, str | None]:
    """(script path, module name) of a `.venv/bin/python ...` command."""
    if words[1] == "-m":
        return None, words[2]
    return REPO / words[1], None


MAKE_TARGETS = {target for rule in re.findall(r"^([\w -]+):", (REPO / "Makefile").read_text(), re.M)
                for target in rule.split()}


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if not c[1].startswith(("curl", "docker"))],
                         ids=[c[1][:60] for c in COMMANDS if not c[1].startswith(("curl", "docker"))])
def test_each_command_names_what_exists(page, command):
    words = shlex.split(command)
    if words[0] == "make":
        assert words[1] in MAKE_TARGETS, f"{page}: no make target {words[1]!r}"
        return
    assert words[0] == ".venv/bin/python", f"{page}: {command}"
    script, module = python_target(words)
    if module is not None:
        assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"
    else:
        assert script.is_file(), f"{page}: no script {script.relative_to(REPO)}"


def flagged_targets() -> dict[str, list[tuple[str, str]]]:
    """The commands that are written with --flags, by the script or module they run (one --help each)."""
    targets: dict[str, list[tuple[str, str]]] = {}
    for page, command in COMMANDS:
        if command.startswith(".venv/bin/python") and " --" in command and (page, command) not in RUNNABLE:
            script, module = python_target(shlex.split(command))
            targets.setdefault(module or str(script.relative_to(REPO)), []).append((page, command))
    return targets


@pytest.mark.slow  # imports torch / TensorFlow once per script or module
@pytest.mark.parametrize("target", sorted(flagged_targets()))
def test_every_flag_a_command_is_written_with_is_in_its_help(target):
    """For commands too long to run: the options the docs use are the options the command takes."""
    import sys

    commands = flagged_targets()[target]
    script, module = python_target(shlex.split(commands[0][1]))
    source = (script if script is not None else Path(importlib.util.find_spec(module).origin)).read_text()
    assert "argparse" in source or "parse_args" in source, f"{commands[0]} takes flags but parses none"
    invocation = ["-m", module] if module is not None else [str(script)]
    result = subprocess.run([sys.executable, *invocation, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    for page, command in commands:
        for flag in (word.split("=", 1)[0] for word in shlex.split(command) if word.startswith("--")):
            assert flag in result.stdout, f"{page}: {command}: {flag} is not an option of the command"


@pytest.fixture(scope="module")
def live_app_url():
    """The app with the committed models, on a free loopback port (the docs' 127.0.0.1:8000)."""
    from werkzeug.serving import make_server

    from webapp import create_app

    server = make_server("127.0.0.1", 0, create_app({"SECRET_KEY": "tests"}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.slow  # the real models
@pytest.mark.parametrize("page,command", RUNNABLE, ids=[c[1][:60] for c in RUNNABLE])
def test_the_commands_that_need_nothing_run_as_written(page, command, live_app_url):
    """Run from the repository root, as a reader would after `make run` / `make test`."""
    command = command.replace("http://127.0.0.1:8000", live_app_url)
    if command.startswith("curl "):
        command = command.replace("curl ", "curl --fail-with-body --silent --show-error --max-time 60 ", 1)
    result = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{page}: {command}\n{result.stdout[-1000:]}\n{result.stderr[-2000:]}"
    assert result.stdout.strip(), f"{page}: {command} printed nothing"
    if "/predict" in command and "example.com" not in command:
        assert '"top_k"' in result.stdout and '"error"' not in result.stdout
