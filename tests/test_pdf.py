"""The printer (reports/pdf.py): every PDF is its page printed by WeasyPrint, which reads only the page's own
data: URIs and files, and which the web app runs in a child process with time and memory limits."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from reports.pdf import Printer, PrintLimits, PrintRefused, print_here


def page(body: str, style: str = "") -> str:
    return f"<!doctype html><html><head><meta charset=utf-8><title>t</title><style>{style}</style></head>" \
           f"<body>{body}</body></html>"


def png_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_printer_draws_data_uris_and_the_reports_own_files(tmp_path):
    Image.new("RGB", (40, 30), "blue").save(tmp_path / "figure.png")
    pdf = print_here(page(f'<p>words</p><img src="{png_uri(20, 20)}"><img src="figure.png">'), tmp_path)
    assert pdf.startswith(b"%PDF-") and pdf.count(b"/Subtype /Image") == 2


@pytest.mark.parametrize("reference", ['<img src="file:///etc/hostname">', '<img src="../outside.png">',
                                       '<link rel="stylesheet" href="/etc/passwd">'])
def test_the_printer_reads_no_file_outside_the_reports_folder(tmp_path, reference):
    (tmp_path / "outside.png").write_bytes(b"x")
    inside = tmp_path / "report"
    inside.mkdir()
    with pytest.raises(ValueError, match="does not read"):
        print_here(page(reference), inside)


def test_the_printer_fetches_nothing_from_the_network():
    """Text a user sent ends up in pages; if it ever became a URL, the printer still would not fetch it."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        for reference in (f'<img src="{url}/a.png">', f'<link rel="stylesheet" href="{url}/a.css">'):
            with pytest.raises(ValueError, match="does not read"):
                print_here(page(reference))
        with pytest.raises(ValueError, match="does not read"):
            print_here(page("<p>x</p>", style=f"p {{ background: url({url}/b.png) }}"))
    finally:
        server.shutdown()
    assert hits == []


@pytest.fixture()
def printer():
    made = []

    def make(**limits) -> Printer:
        made.append(Printer(PrintLimits(**limits)))
        made[-1].pool.schedule(os.getpid).result(timeout=60)  # the child has started (spawn and import)
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.mark.slow
def test_a_pdf_past_its_seconds_is_stopped_and_the_next_one_is_printed(printer):
    p = printer(seconds=2.0)
    rows = "".join(f"<tr><td>{i}</td><td>{'word ' * 40}</td></tr>" for i in range(6000))
    started = time.monotonic()
    with pytest.raises(PrintRefused) as refused:
        p.print(page(f"<table>{rows}</table>"), None)
    assert refused.value.status == 422 and refused.value.code == "pdf_too_large"
    assert time.monotonic() - started < 4
    assert p.print(page("<p>small</p>"), None).startswith(b"%PDF-")  # a fresh child took over


@pytest.mark.slow
def test_a_pdf_past_its_memory_is_stopped(printer):
    p = printer(seconds=20.0, memory_bytes=60 * 1024 * 1024)
    with pytest.raises(PrintRefused) as refused:
        p.print(page(f'<img src="{png_uri(6000, 6000)}">'), None)  # 108 MB of pixels once decoded
    assert refused.value.status == 422
    assert p.print(page("<p>small</p>"), None).startswith(b"%PDF-")


@pytest.mark.slow
def test_a_pdf_that_waits_its_seconds_for_the_child_is_refused_busy(printer):
    p = printer(seconds=1.5)
    rows = "".join(f"<tr><td>{i}</td><td>{'word ' * 40}</td></tr>" for i in range(6000))
    outcomes = []

    def slow() -> None:
        try:
            p.print(page(f"<table>{rows}</table>"), None)
        except PrintRefused as exc:
            outcomes.append(exc.status)

    first = threading.Thread(target=slow)
    first.start()
    time.sleep(0.2)
    with pytest.raises(PrintRefused) as refused:
        p.print(page("<p>small</p>"), None)
    first.join()
    assert outcomes == [422]
    assert refused.value.status == 429 and refused.value.code == "busy" and refused.value.retry_after


def test_the_app_prints_in_a_child_and_a_refused_pdf_is_an_api_error(fake_models):
    """The web app's PDFs never run WeasyPrint in the worker; one that cannot be printed in its seconds is a 4xx
    in the API's error shape (with Retry-After when it never started), not a 500."""
    from reports import pdf
    from tests.test_evaluate import evaluate_zip
    from webapp import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "tests", "PDF_SECONDS": 0.2})
    response = app.test_client().post("/api/v1/evaluate?format=pdf",
                                      data={"archive": (io.BytesIO(evaluate_zip()), "mine.zip")})
    assert response.status_code in (422, 429), response.data[:200]
    assert response.json["error"]["code"] in ("pdf_too_large", "busy")
    assert (response.status_code == 429) == ("Retry-After" in response.headers)
    assert pdf._printer is not None and pdf._printer.limits.seconds == 0.2
    pdf.configure(None)


def test_without_pango_a_pdf_is_a_clear_503_and_everything_else_works(fake_models, monkeypatch, tmp_path):
    """WeasyPrint loads the system's Pango when imported and raises OSError without it. A machine without Pango
    (a fresh macOS, a slim image) still serves the app: a PDF is answered 503 `pdf_unavailable` saying what to
    install, in the child the app prints in and in this process alike, and the command line says it in one line."""
    from reports import pdf
    from reports.build import main as build_main
    from tests.test_evaluate import evaluate_zip
    from webapp import create_app

    fake = tmp_path / "no-pango" / "weasyprint"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError(\"cannot load library 'libpango-1.0-0': no such file\")\n")
    monkeypatch.syspath_prepend(str(fake.parent))  # a spawned child starts with this process's sys.path
    child = Printer(PrintLimits(seconds=30))  # it imports the fake weasyprint
    try:
        with pytest.raises(PrintRefused) as refused:
            child.print(page("<p>hello</p>"), None)
    finally:
        child.close()
    assert refused.value.status == 503 and refused.value.code == "pdf_unavailable"
    assert "Pango" in str(refused.value) and "apt-get install libpango-1.0-0" in str(refused.value)

    def no_pango():
        raise pdf.PrinterUnavailable("this machine cannot print PDFs: WeasyPrint needs the Pango library")

    monkeypatch.setattr(pdf, "_weasyprint", no_pango)
    app = create_app({"TESTING": True, "SECRET_KEY": "tests", "DECODE_PROCESSES": 0})  # prints in this process
    client = app.test_client()
    response = client.post("/api/v1/evaluate?format=pdf", data={"archive": (io.BytesIO(evaluate_zip()), "a.zip")})
    assert response.status_code == 503 and response.json["error"]["code"] == "pdf_unavailable"
    assert "CSV and JSON downloads work" in response.json["error"]["message"]
    csv = client.post("/api/v1/evaluate?format=csv", data={"archive": (io.BytesIO(evaluate_zip()), "a.zip")})
    assert csv.status_code == 200
    folder = tmp_path / "mine"
    for member in ("cat", "dog"):
        (folder / member).mkdir(parents=True)
        Image.new("RGB", (40, 40), (10, 200, 10)).save(folder / member / "1.png")
    with pytest.raises(SystemExit, match="error: this machine cannot print PDFs"):
        build_main(["--images", str(folder), "--out", str(tmp_path / "out")])
    pdf.configure(None)
