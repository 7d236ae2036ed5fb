"""Rules of the codebase that a reviewer would otherwise have to check by hand."""

from __future__ import annotations

import ast
import re
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
    from PIL import Image

    from devkit.images import photo

    readme = (REPO / "README.md").read_text()
    snippet = readme.split("**Python**", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    photo(120, 90).save(tmp_path / "cat.jpg")
    Image.new("RGBA", (40, 40), (0, 90, 200, 255)).save(tmp_path / "ship.png")
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
