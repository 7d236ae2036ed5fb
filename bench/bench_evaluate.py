"""How long comparing the models on 500 of a person's labelled images takes, end to end over HTTP.

    .venv/bin/python bench/bench_evaluate.py [--images 500] [--runs 3]   # -> docs/measurements/evaluate.txt

Builds a ZIP of official test images as a person would have them (class folders, each image enlarged to 128 px
and saved as a JPEG of quality 90), starts the production command (the Procfile: nginx in front of gunicorn),
and times POST /api/v1/evaluate as JSON and as a PDF: upload, unpacking, decoding, both models, statistics and
the document. Prints the machine and each run.
"""

from __future__ import annotations

import argparse
import io
import statistics
import zipfile

from PIL import Image

from devkit.server import ProcfileServer, multipart, timed_request
from devkit.transcript import MEASUREMENTS, Transcript
from models import cifar10
from models.machine import describe_machine


def labelled_zip(count: int) -> bytes:
    test = cifar10.load_split("test")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            image = Image.fromarray(test.images[i]).resize((128, 128), Image.Resampling.BICUBIC)
            data = io.BytesIO()
            image.save(data, "JPEG", quality=90)
            zf.writestr(f"{test.class_names[test.labels[i]]}/{i:05d}.jpg", data.getvalue())
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    say = Transcript()
    say(f"machine: {describe_machine()}")
    archive = labelled_zip(args.images)
    body, content_type = multipart([("mine.zip", archive)], field="archive")
    say(f"{args.images} images, 128-px JPEG q90 in class folders: ZIP of {len(archive) / 1e6:.1f} MB")
    server = ProcfileServer(workers=1)
    try:
        if not server.wait_ready():
            raise SystemExit("the server did not become ready")
        for fmt in ("json", "pdf"):
            times = []
            for run in range(args.runs):
                status, seconds = timed_request(server.base, f"/api/v1/evaluate?format={fmt}", body, content_type,
                                                timeout=300)
                if status != 200:
                    raise SystemExit(f"HTTP {status}")
                times.append(seconds)
                say(f"{fmt}: run {run + 1}: {seconds:.2f} s")
            say(f"{fmt}: median {statistics.median(times):.2f} s over {args.runs} runs "
                f"({args.images / statistics.median(times):.0f} images/s)")
    finally:
        server.stop()
    say.save(MEASUREMENTS / "evaluate.txt")


if __name__ == "__main__":
    main()
