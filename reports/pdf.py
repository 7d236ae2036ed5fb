"""Every PDF is its HTML page printed: one template per report renders the page and the PDF (WeasyPrint draws
it, following the templates' print CSS: page breaks, headers repeated on each page, the footer).

The renderer reads only what this project put in the page: `data:` URIs (the views and maps of a person's
images) and files under the report's own folder (the model report's figures). It fetches nothing else — no
network, no other file — so text a user sent (a file name, a URL) can never make it read a resource, and a
resource it cannot read stops the PDF instead of leaving a hole in it.

WeasyPrint lays pages out in Python: a 500-image Evaluate report takes seconds of CPU, and the process keeps
about 100 MB of font and layout caches afterwards. The web app therefore prints in a child process of its own
(`configure`, as models/decoder.py decodes): the worker's memory and its interpreter lock stay the requests',
and each PDF has an address-space limit, a CPU limit and a wall-clock limit, the wait for the child included.
The command line prints in its own process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class PrintLimits:
    seconds: float = 12.0  # one PDF, its wait for the child included
    memory_bytes: int = 512 * 1024 * 1024  # address space one PDF may add to its child
    tasks_per_child: int = 25  # then the child is replaced: its caches are let go
    nice: int = 5  # the child's CPU priority: a person waiting on one image comes first


class PrintRefused(Exception):
    """No PDF: the printer is busy (429) or the page needed more than a PDF may take (422)."""

    def __init__(self, message: str, status: int, code: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class PrinterUnavailable(RuntimeError):
    """WeasyPrint cannot load here: the system's Pango library is missing (README: how to install it)."""

    def refusal(self) -> PrintRefused:
        return PrintRefused(f"{self}. The CSV and JSON downloads work.", 503, "pdf_unavailable")


def _weasyprint():
    """The weasyprint module, or PrinterUnavailable naming what to install (its import loads Pango through cffi and
    raises OSError without it; a machine without Pango still serves everything but the PDFs)."""
    try:
        import weasyprint
    except OSError as exc:
        raise PrinterUnavailable(f"this machine cannot print PDFs: WeasyPrint needs the Pango library, which it "
                                 f"could not load ({str(exc)[:120]}); install it (Debian/Ubuntu: apt-get install "
                                 f"libpango-1.0-0 libpangoft2-1.0-0; macOS: brew install pango)") from None
    return weasyprint


def _fetcher(folder: Path | None):
    from weasyprint.urls import URLFetcher

    class OwnFilesOnly(URLFetcher):
        """`data:` URIs, and `file:` URLs inside `folder` (none when it is None); anything else is refused."""

        def fetch(self, url: str, headers=None):
            if url.startswith("file:"):
                path = Path(unquote(urlsplit(url).path)).resolve()
                if folder is None or not path.is_relative_to(folder.resolve()):
                    raise ValueError(f"not one of the report's own files: {url[:80]}")
            return super().fetch(url, headers)

    return OwnFilesOnly(allowed_protocols={"data", "file"}, allow_redirects=False, fail_on_errors=True)


def print_here(html: str, folder: Path | None = None) -> bytes:
    """The page as a PDF, in this process (A4, the page's print CSS; the title is its <title>); relative paths
    are read from `folder`."""
    HTML = _weasyprint().HTML
    from weasyprint.urls import FatalURLFetchingError

    base = str(folder.resolve()) + "/" if folder is not None else None
    try:
        return HTML(string=html, base_url=base, url_fetcher=_fetcher(folder)).write_pdf()
    except FatalURLFetchingError as exc:  # a BaseException: an ordinary error here
        raise ValueError(f"the page refers to something the printer does not read: {exc}") from None


def _start_child(nice: int) -> None:
    os.nice(nice)
    with contextlib.suppress(PrinterUnavailable):  # then each page says so (print_here), as one clear error
        _weasyprint()  # imported once, before the first page


class StartedTooLate(Exception):
    """The page reached the printing child after waiting most of its seconds for it: it is refused as busy, not
    printed in the time left (on a fast machine a replacement child came up just in time, and a PDF took its
    seconds of waiting plus its printing)."""


def _print_in_child(html: str, folder: str | None, seconds: float, memory_bytes: int,
                    start_by: float) -> bytes:
    if time.time() > start_by:
        raise StartedTooLate()
    used = resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (int(used.ru_utime + used.ru_stime + seconds) + 1,
                                                 resource.RLIM_INFINITY))
    with contextlib.suppress(ValueError, OSError):  # a platform without RLIMIT_AS: the timeouts still hold
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + memory_bytes, resource.RLIM_INFINITY))
    return print_here(html, Path(folder) if folder else None)


class Printer:
    """One printing child for a web worker; its threads share it, one PDF at a time."""

    def __init__(self, limits: PrintLimits):
        self.limits = limits
        self._rebuilding = threading.Lock()
        self.pool = self._new_pool()

    def _new_pool(self):
        from pebble import ProcessPool

        return ProcessPool(max_workers=1, max_tasks=self.limits.tasks_per_child, initializer=_start_child,
                           initargs=(self.limits.nice,), context=multiprocessing.get_context("spawn"))

    def print(self, html: str, folder: Path | None) -> bytes:
        seconds = self.limits.seconds
        deadline = time.monotonic() + seconds
        # A page that waited more than half its seconds for the child is refused busy when it gets there.
        args = (html, str(folder) if folder else None, seconds, self.limits.memory_bytes, time.time() + seconds / 2)
        pool = self.pool
        try:
            future = pool.schedule(_print_in_child, args=args, timeout=seconds)
        except RuntimeError:  # pebble marked the pool broken (as models/decoder.py says): a fresh one, once
            with self._rebuilding:
                if self.pool is pool:
                    with contextlib.suppress(Exception):
                        pool.stop()
                    self.pool = self._new_pool()
            future = self.pool.schedule(_print_in_child, args=args, timeout=seconds)
        try:
            return future.result(timeout=seconds + 0.5)
        except (FutureTimeout, StartedTooLate) as exc:
            queued = isinstance(exc, StartedTooLate) or (not future.done() and not future.running())
            future.cancel()
            if queued:
                raise PrintRefused("the server was printing other PDFs for all the seconds this one could wait; "
                                   "ask again in a few seconds", 429, "busy", retry_after=5) from None
            raise self._too_much() from None
        except PrinterUnavailable as exc:
            raise exc.refusal() from None
        except Exception as exc:  # the child died: its CPU or memory limit, or pebble's timeout
            if time.monotonic() >= deadline:
                raise self._too_much() from None
            raise self._too_much(type(exc).__name__) from None
        finally:
            del future

    def _too_much(self, cause: str = "") -> PrintRefused:
        return PrintRefused(f"this PDF needs more than the {self.limits.seconds:.0f} s and "
                            f"{self.limits.memory_bytes // 2**20} MB the server gives one PDF"
                            + (f" ({cause})" if cause else "") + "; download the CSV instead, or evaluate "
                            "fewer images", 422, "pdf_too_large")

    def close(self) -> None:
        self.pool.stop()
        self.pool.join()


_configured: PrintLimits | None = None
_printer: Printer | None = None
_lock = threading.Lock()


def configure(limits: PrintLimits | None) -> None:
    """Print every PDF of this process in a child within `limits` (None: in this process). Called by the web
    app's factory; the child starts with the first PDF."""
    global _configured, _printer
    with _lock:
        if _printer is not None and _printer.limits != limits:
            _printer.close()
            _printer = None
        _configured = limits


def _current_printer() -> Printer | None:
    global _printer
    with _lock:
        if _configured is not None and _printer is None:
            _printer = Printer(_configured)
        return _printer


def warm_up() -> None:
    """Start the printing child and print one line with it now, in the background: its imports and font set-up
    (about 2 s) are then not part of the first PDF a person asks for (the API's 500-image ?format=pdf ran past
    its 15 s with them)."""
    printer = _current_printer()
    if printer is not None:
        printer.pool.schedule(_print_in_child, timeout=60,
                              args=("<p>.</p>", None, 60.0, printer.limits.memory_bytes, time.time() + 60))


def html_to_pdf(html: str, folder: Path | None = None) -> bytes:
    """The page as a PDF: in the printing child when this process configured one, else here."""
    printer = _current_printer()
    if printer is not None:
        return printer.print(html, folder)
    try:
        return print_here(html, folder)
    except PrinterUnavailable as exc:
        raise exc.refusal() from None


def write_pdf(report: dict, out: Path, path: Path) -> Path:
    """The model report's PDF: its page (reports/templates/report.html.j2) with the figures under `out`."""
    from reports.html import render_html

    path.write_bytes(html_to_pdf(render_html(report), out))
    return path


def user_pdf(report: dict) -> bytes:
    """The own-images report's PDF: its page (reports/templates/user_report.html.j2). The signed report a page
    posts back carries no map pictures (they would double its size): they are drawn again from their grids."""
    from reports.comparison import explanation_uri
    from reports.html import render_user_html

    views = report.get("views") or {}
    maps = {f"{index}:{name}": explanation_uri(views[index], e["grid"])
            for index, found in (report.get("explanations") or {}).items() if index in views
            for name, e in found["maps"].items()}
    return html_to_pdf(render_user_html({**report, "map_views": {**maps, **(report.get("map_views") or {})}},
                                        printing=True))
