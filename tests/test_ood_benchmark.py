"""The out-of-scope benchmark's builder (scripts/build_ood_benchmark.py): families, sources, curation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import REPO, require_tool

spec = importlib.util.spec_from_file_location("build_ood_benchmark", REPO / "scripts" / "build_ood_benchmark.py")
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)


@pytest.mark.slow
def test_the_benchmark_has_nine_families_of_at_least_500_images_each_with_its_source(tmp_path):
    require_tool("adwaita-icon-theme", builder.ICONS.is_dir())
    require_tool("fonts-noto-color-emoji", builder.EMOJI_FONT.is_file())
    manifest = builder.build(tmp_path)
    assert len(manifest) >= 500
    families = {entry["family"] for entry in manifest}
    assert families == {"faces", "patches", "photos", "procedural", "documents", "icons", "emoji-people",
                        "emoji-food", "portraits"}
    portraits = [e for e in manifest if e["family"] == "portraits"]
    assert len(portraits) >= 60 and all(e["person"] for e in portraits)
    assert not any(word in e["name"] for e in portraits for word in ("ironman", "skullmask", "vendetta", "icon_"))
    assert {"sample1", "sample1-centre", "obama4_crop"} <= {e["name"] for e in portraits}
    people = [e["name"] for e in manifest if e["family"] == "emoji-people"]
    assert len(people) >= 100 and all("fitzpatrick" in name for name in people)  # colour people, every skin tone
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for entry in manifest:
        assert (tmp_path / entry["file"]).is_file() and entry["source"]
        assert not builder.EXCLUDED_WORDS.search(entry["name"]), entry["name"]
    photos = {entry["name"] for entry in manifest if entry["family"] == "photos"}
    assert "chelsea" not in photos and "horse" not in photos  # a cat and a horse are CIFAR-10 classes


def test_no_reserved_opencv_sample_is_read():
    source = Path(builder.__file__).read_text()
    assert "opencv" not in source.lower().replace("opencv's sample images are reserved", "")


def test_a_downloaded_package_that_differs_from_the_registrys_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(builder, "SOURCES_DIR", tmp_path)
    spec, sha1, _ = builder.PORTRAIT_PACKAGES[1]  # a scoped package: npm pack names it vladmandic-face-api-...
    (tmp_path / "vladmandic-face-api-1.7.15.tgz").write_bytes(b"not the package")
    with pytest.raises(SystemExit, match="SHA-1 differs"):
        builder.npm_package(spec, sha1)
