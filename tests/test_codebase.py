"""Rules of the codebase that a reviewer would otherwise have to check by hand."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

PRODUCT = [*sorted((REPO / "models").rglob("*.py")), *sorted((REPO / "reports").rglob("*.py")),
           *sorted((REPO / "webapp").rglob("*.py")), REPO / "app.py", REPO / "gunicorn.conf.py"]


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("layer", "forbidden"), [("models", ("reports", "webapp")), ("reports", ("webapp",))])
def test_dependencies_run_one_way(layer, forbidden):
    """webapp -> reports -> models: a lower layer never imports a higher one."""
    offenders = {str(path.relative_to(REPO)): sorted(m for m in imported_modules(path)
                                                     if m.split(".")[0] in forbidden)
                 for path in (REPO / layer).rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for path in PRODUCT:
        if path == REPO / "models" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert readers == []


def test_the_web_layer_never_preprocesses_or_ranks():
    """Resizing for the model, running a model and building a top-k happen in models/ only."""
    source = "\n".join(path.read_text() for path in (REPO / "webapp").rglob("*.py"))
    for name in ("to_model_input", "square_resize", "predict_proba", "predict_topk", "argsort", "_forward"):
        assert name not in source, name


def test_readme_is_short_and_every_relative_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
    assert {p.name for p in pages} >= {"custom-cnn.md", "mobilenetv2.md", "performance.md", "deploy.md",
                                      "settings.md", "development.md", "how-it-works.md"}


def test_quick_start_is_the_two_make_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick_start.strip().splitlines()] == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_generated_blocks_match_the_files_they_come_from():
    result = subprocess.run([sys.executable, "scripts/update_docs.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_every_setting_in_the_code_is_in_the_table():
    """A variable read through models.settings must be registered (and so documented)."""
    from models import settings

    used = set()
    for path in PRODUCT:
        used |= set(re.findall(r"settings\.get(?:_int|_path)?\(\s*[\"']([A-Z0-9_]+)[\"']", path.read_text()))
    registered = {s.name for s in settings.SETTINGS}
    assert used <= registered and used
    with pytest.raises(KeyError):
        settings.get("NOT_A_SETTING")
    docs = (REPO / "docs" / "settings.md").read_text()
    assert all(f"`{name}`" in docs for name in registered)


@pytest.mark.slow
def test_the_readme_python_example_runs_from_another_folder(tmp_path):
    """The snippet as written, run by the venv's Python from a folder outside the repository."""
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("**Python**", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    shutil.copytree(REPO / "static" / "examples", tmp_path / "static" / "examples")
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_serving_imports_no_training_or_report_library():
    """requirements.txt (the serving set) must be enough: the app, loaded and answering with both models,
    has imported none of the libraries that only training, evaluation and the report need."""
    probe = """
import sys
from webapp import create_app
from models import classify
from devkit.images import photo
app = create_app({"TESTING": True, "SECRET_KEY": "x"})
answers = classify([photo()], ["custom_cnn", "mobilenetv2"])
assert all(len(a.predictions) == 2 for a in answers.images)
assert app.test_client().get("/models").status_code == 200 and app.test_client().get("/reports").status_code == 200
heavy = ("tensorflow", "keras", "sklearn", "scipy", "matplotlib", "weasyprint")
print(sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_requirements_by_role():
    """Serving installs only what it imports, with PyTorch's CPU wheel on Linux x86_64; training and tests add."""
    serving = (REPO / "requirements.txt").read_text()
    pins = [line.split(";")[0].strip() for line in serving.splitlines() if line and not line.startswith(("#", "-"))]
    names = {re.split(r"[=<>]", pin)[0].lower() for pin in pins}
    assert names == {"torch", "numpy", "pillow", "flask", "bootstrap-flask", "flask-wtf", "gunicorn", "ai-edge-litert",
                     "weasyprint",  # every PDF, its page printed (reports/pdf.py), imported only to print one
                     "pydantic",  # the API's objects, described once (webapp/schema.py)
                     "pydantic-settings",  # the environment variables, described once (models/settings.py)
                     "pebble"}  # image decoding in child processes with a hard timeout (models/decoder.py)
    assert 'torch==2.13.0+cpu ; sys_platform == "linux" and platform_machine == "x86_64"' in serving
    assert "--find-links https://download.pytorch.org/whl/cpu/torch/" in serving
    train = (REPO / "requirements-train.txt").read_text()
    dev = (REPO / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in train and "tensorflow-cpu" in train and "tensorflow" not in serving
    assert "-r requirements-train.txt" in dev and "pytest" in dev


def test_every_start_path_runs_the_same_command():
    """The Procfile and the Dockerfile's CMD start the same public command (deploy/start.py: nginx in front of
    gunicorn) and `make run` the same gunicorn configuration; Railway builds the Dockerfile with its health check
    on /readyz and a draining time that covers nginx's then gunicorn's graceful shutdown."""
    import json

    procfile = (REPO / "Procfile").read_text().split("web:", 1)[1].strip()
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert " ".join(cmd) == procfile == "python deploy/start.py"
    assert "$(PY) -m gunicorn --config gunicorn.conf.py app:app" in (REPO / "Makefile").read_text()
    assert '"gunicorn", "--config", "gunicorn.conf.py", "app:app"' in (REPO / "deploy" / "start.py").read_text()
    assert "apt-get install -y --no-install-recommends nginx" in dockerfile
    assert "USER app" in dockerfile and "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile
    assert "FROM python:3.11-slim" in dockerfile and (REPO / ".python-version").read_text().strip() == "3.11"
    railway = json.loads((REPO / "railway.json").read_text())
    assert railway["build"]["builder"] == "DOCKERFILE" and railway["deploy"]["healthcheckPath"] == "/readyz"
    graceful = re.search(r"^graceful_timeout = (\d+)", (REPO / "gunicorn.conf.py").read_text(), re.M).group(1)
    nginx = re.search(r"^\s*worker_shutdown_timeout (\d+)s;", (REPO / "deploy" / "nginx.conf").read_text(), re.M)
    # nginx drains first (its requests reach gunicorn, which finishes them), then gunicorn, which then holds
    # nothing; Railway kills after drainingSeconds.
    assert int(nginx.group(1)) < railway["deploy"]["drainingSeconds"] and int(graceful) >= int(nginx.group(1))
    assert "docs/**" not in railway["build"]["watchPatterns"] and "models/**" in railway["build"]["watchPatterns"]
    ignored = (REPO / ".dockerignore").read_text()
    for path in ("tests/", "models/*/runs/", "models/mobilenetv2/model.keras", ".venv"):
        assert path in ignored


def test_a_command_that_rewrites_a_committed_measurement_says_so(capsys, tmp_path):
    """docs/development.md: whatever rewrites a committed file prints a NOTE. Every bench and script that writes
    a file of its own (not through Transcript.save or save_with, which announce) must call announce_if_committed
    (or announce_committed, for a committed file outside docs/measurements/)."""
    from devkit.transcript import MEASUREMENTS, announce_if_committed

    announce_if_committed(MEASUREMENTS / "out-of-scope.txt")
    assert capsys.readouterr().out.startswith("NOTE: this rewrites docs/measurements/out-of-scope.txt")
    announce_if_committed(tmp_path / "elsewhere.txt")
    assert capsys.readouterr().out == ""
    for path in [*(REPO / "bench").glob("*.py"), *(REPO / "scripts").glob("*.py")]:
        source = path.read_text()
        if "MEASUREMENTS" in source and ".write_text(" in source:
            assert "announce_if_committed(" in source or "announce_committed(" in source, \
                f"{path.name} writes a measurement without the NOTE"


@pytest.mark.parametrize("command", [
    ["-m", "models.uncertainty", "--data-dir", "/nonexistent"],
    ["-m", "reports.robustness", "--data-dir", "/nonexistent"],
    ["bench/bench_out_of_scope.py", "--benchmark", "/nonexistent"],
    ["-m", "models.evaluate", "custom_cnn", "--data-dir", "/nonexistent"],
    ["scripts/make_examples.py", "--data-dir", "/nonexistent"],
    ["-m", "models.scope.faces", "--data-dir", "/nonexistent"],
])
def test_a_data_command_without_its_data_says_so_in_one_line(command):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_DIR"}
    result = subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and len(lines) <= 3, lines


def test_tests_reach_system_tools_only_through_the_helper_that_fails_in_ci():
    """A missing tool skips a test locally and fails it under CI (tests.helpers.require_tool): no test calls
    poppler or chromium on its own, nor guards them with a silent `if shutil.which(...)`."""
    for path in sorted((REPO / "tests").glob("test_*.py")):
        source = path.read_text()
        for tool in ("pdftotext", "pdftoppm", "pdfinfo"):
            assert f'["{tool}"' not in source and f'which("{tool}")' not in source, f"{path.name} runs {tool}"
        assert "reason=\"Debian chromium" not in source, path.name


def test_a_setting_of_the_wrong_type_stops_the_start_naming_the_variable(monkeypatch):
    """Issue 40: the environment is one typed object (models.settings.Environment): PORT=eighty or a negative
    timeout is refused where it is read, in one line that names the variable, not by a traceback later on."""
    from models import settings

    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit, match=r"invalid setting: PORT='eighty'"):
        settings.get_int("PORT")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "-5")
    with pytest.raises(SystemExit, match="GUNICORN_TIMEOUT"):
        settings.get_int("PORT")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "")  # empty = unset: the default
    monkeypatch.delenv("HOST", raising=False), monkeypatch.delenv("KERAS_HOME", raising=False)
    assert settings.get_int("PORT") == 8080 and settings.get_int("GUNICORN_TIMEOUT") == 120
    assert settings.get("HOST") is None and settings.get_path("KERAS_HOME").name == ".keras"
    documented = {s.name: s for s in settings.SETTINGS}
    assert set(documented) == set(settings.Environment.model_fields) and documented["PORT"].default == "8000"
