"""Decoding in separate processes: one bound on memory and time for every image format at once.

`models.images.decode_image` refuses what it can see coming (too many pixels, too many JPEG scans, a WebP's
declared size), but each of those checks was added after an attack found a new way to be slow or large (a PNG of
125,000 private chunks, a 10 MB PNG of 9,485 colour profiles), and a limit checked between images cannot
interrupt the one being decoded. Here every decode runs in a small pool of child processes
(pebble.ProcessPool, spawned: the children import Pillow and NumPy, never a framework), each child with

- an address-space limit (`RLIMIT_AS`) set before each decode: its size then plus `memory_bytes`. A decode that
  needs more fails with MemoryError inside the child, which the parent reports as that image's error. A child that
  still holds much more than its idle size when a decode starts exits and is replaced (`_exit_if_bloated`), so
  its total stays bounded too;
- a CPU limit (`RLIMIT_CPU`) set before each decode to the seconds it may still use, and a wall-clock timeout:
  past it the child is killed and replaced, and the image gets its own error.

The web app configures the pool once per worker (`configure`); a caller that did not (the CLI, a script) decodes
in its own process, as before. Bulk work (evaluations, multi-image comparisons) has its own child, at a lower CPU
priority, so a one-image comparison never queues behind an evaluation's 500 images.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from PIL import Image

from models.image_header import declared_size, progressive_jpeg
from models.images import DECODE_MIN_SIDE, DecoderBusy, ImageIntakeError, PixelBudget, decode_image, release_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderLimits:
    processes: int = 3  # children per web worker for one-image requests; one owner (client) uses one at a time
    bulk_processes: int = 1  # ... and for bulk work (evaluations, several images): a lane of its own
    bulk_nice: int = 10  # the bulk lane's CPU priority: lower, so that it yields to people waiting on one image
    memory_bytes: int = 280 * 1024 * 1024  # address space one decode may add to its child's size before it
    seconds: float = 8.0  # wall-clock (and CPU) seconds one image's decode may take, at most
    tasks_per_child: int = 500  # a child is replaced after this many decodes (fragmented heaps are let go)
    heavy_pixels: int = 4_000_000  # a one-image decode of more pixels than this (or of unknown size) is heavy ...
    heavy_slots: int = 1  # ... and this many run at once in all, in children of their own at `bulk_nice`
    heavy_waiting: int = 4  # heavy decodes that may wait their turn, first come first served, one per network (an
    # IPv4 /24 or IPv6 /48 of the owner); more are refused at once. A network with one heavy image decoding or
    # waiting has its next refused: holding the lane from the third user's photo takes 5 networks.
    light_seconds: float = 2.0  # a light image (by its header) decodes in well under this; past it, it was crafted
    light_waiting: int = 6  # one-image decodes waiting for a light child at most; more are refused at once (429)


_memory_bytes: int | None = None  # in a child: what one decode may add to the address space (set by _limit_child)
_idle_resident: int | None = None  # in a child: its resident memory once started, before any decode
RECYCLE_EXIT_CODE = 75  # a child that exits with this code was bloated: the parent retries the decode on a fresh one


def _limit_child(memory_bytes: int, nice: int) -> None:
    """Runs in each child once, after its imports: lower its CPU priority by `nice`, and remember how much address
    space one decode may add (each decode's limit is set from the child's size just before it)."""
    global _memory_bytes, _idle_resident
    if nice:
        os.nice(nice)
    _memory_bytes = memory_bytes
    _idle_resident = _resident()


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _exit_if_bloated() -> None:
    """The memory limit starts from the child's size before each decode, so whatever an earlier decode left behind
    would add to what the next may use. A child holding more than half a decode's allowance over its idle size
    first hands freed memory back to the system; if still that large, it exits, and the parent retries the decode
    on a fresh child (`IsolatedDecoder._decode`). A child's total stays within its idle size plus 1.5 allowances."""
    if _memory_bytes is None or _idle_resident is None or _resident() - _idle_resident <= _memory_bytes // 2:
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if _resident() - _idle_resident > _memory_bytes // 2:
        os._exit(RECYCLE_EXIT_CODE)


def _decode_in_child(data: bytes, min_side: int | None, budget_total: int | None, budget_left: int | None,
                     seconds: float) -> tuple[Image.Image, int | None]:
    """(the decoded image, the pixel budget left). The CPU limit is this decode's seconds from now: past it the
    kernel stops the child (SIGXCPU), whatever library it is in."""
    _exit_if_bloated()
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (int(spent + seconds) + 1, resource.RLIM_INFINITY))
    if _memory_bytes is not None:
        # From the size now, not the size at start: glibc keeps freed 64 MB regions of earlier decodes reserved, and
        # with a limit fixed at start a child that had decoded a few large WebPs refused every large image after.
        with contextlib.suppress(ValueError, OSError):  # a platform without RLIMIT_AS: the timeout still holds
            resource.setrlimit(resource.RLIMIT_AS, (_address_space() + _memory_bytes, resource.RLIM_INFINITY))
    budget = None
    if budget_total is not None:
        budget = PixelBudget(budget_total)
        budget.left = budget_left
    image = None
    with contextlib.suppress(MemoryError):  # reported below, outside the handling: see why there
        image = decode_image(data, min_side=min_side, budget=budget)
    if image is None:
        # Not `raise ... from None` inside the except block: the new error would still hold the MemoryError as its
        # context, whose traceback holds the decoder's frames and the image it had half allocated (150 MB here).
        # The child kept that until its next task, whose memory limit then started from the bloated size: 20 large
        # PNGs in one request took a child from 40 to 499 MB (found by an independent attack).
        raise ImageIntakeError("decoding this image needs more memory than the server gives one image")
    return image, (budget.left if budget is not None else None)


class IsolatedDecoder:
    """A pool of decoding children for one web worker (one per process; threads share it)."""

    def __init__(self, limits: DecoderLimits):
        self.limits = limits
        self._owners: Counter[str] = Counter()  # quick-lane decodes in progress per owner
        self._owners_changed = threading.Condition()
        self._starting: list = []  # the children's first tasks (start), waited on once (warm_up)
        self._heavy_line: list[object] = []  # heavy decodes in progress, then those waiting, in order of arrival
        self._heavy_networks: set[str] = set()
        self._heavy_changed = threading.Condition()
        # Requests waiting for a light child hold request threads: an attack that fills the light lane (with images
        # that pass as light) must meet a 429, not take every thread and /healthz with them.
        self._light_queue = threading.BoundedSemaphore(limits.processes + limits.light_waiting)
        # Heavy one-image decodes have children of their own at the bulk lane's lower priority: a flood of 40 MP
        # PNGs from many addresses took a core at full priority from the models' passes and the person's photo.
        self._lanes = {"_quick": (limits.processes, 0), "_heavy_lane": (limits.heavy_slots, limits.bulk_nice),
                       "_bulk": (limits.bulk_processes, limits.bulk_nice)}  # attribute: (children, nice)
        self._rebuilding = threading.Lock()
        for lane in self._lanes:
            setattr(self, lane, self._new_pool(lane))

    def _new_pool(self, lane: str):
        from pebble import ProcessPool

        count, nice = self._lanes[lane]
        return ProcessPool(max_workers=count, max_tasks=self.limits.tasks_per_child, initializer=_limit_child,
                           initargs=(self.limits.memory_bytes, nice), context=multiprocessing.get_context("spawn"))

    def _schedule(self, lane: str, args: tuple, timeout: float):
        """A decode on `lane`'s pool. A pool that stopped working (pebble marks it broken when a child dies at a
        moment it cannot match to a task, and then refuses every task: in a 30-minute soak the bulk lane's did, and
        every evaluation after answered 500) is replaced by a fresh one, once, and the task goes there."""
        pool = getattr(self, lane)
        try:
            return pool.schedule(_decode_in_child, args=args, timeout=timeout)
        except RuntimeError:
            with self._rebuilding:
                if getattr(self, lane) is pool:
                    log.warning("decoding pool %s stopped working; replacing it", lane)
                    with contextlib.suppress(Exception):
                        pool.stop()
                    setattr(self, lane, self._new_pool(lane))
            return getattr(self, lane).schedule(_decode_in_child, args=args, timeout=timeout)

    def decode(self, data: bytes, min_side: int | None = None, budget: PixelBudget | None = None,
               seconds: float | None = None, bulk: bool = False, owner: str | None = None) -> Image.Image:
        """decode_image in a child, within `seconds` (at most the limits' seconds) and the memory limit. An
        `owner` (the web app passes the client) has one quick-lane decode at a time: eight concurrent requests of
        slow PNGs from one address filled every child and kept another user's photo waiting for seconds."""
        started = time.monotonic()
        seconds = min(self.limits.seconds, seconds if seconds is not None else self.limits.seconds)
        if bulk or owner is None:
            return self._decode("_bulk" if bulk else "_quick", data, min_side, budget, seconds)
        heavy = decoded_pixels(data, min_side) > self.limits.heavy_pixels
        # One decode at a time per owner, waited for before any shared place is taken: ten connections from five
        # addresses, each waiting for its own address's turn inside a light-lane place, held all nine places and
        # another user's photo was refused (the 30-minute soak).
        with self._owner_turn(owner, seconds if heavy else min(seconds, self.limits.light_seconds)):
            left = seconds - (time.monotonic() - started)
            if heavy:
                # A 40 MP PNG is 130 KB and a second of decoding: from many addresses at once (each within its own
                # limits) such images filled the request threads and the children, and another user's photo
                # waited 13 s (docs/deploy.md). Heavy ones take a slot, or wait for one in order (one place per
                # network), or are refused; light ones never wait for them.
                with self._heavy_turn(network_of(owner), left):
                    return self._decode("_heavy_lane", data, min_side, budget, seconds - (time.monotonic() - started))
            # A light header over a slow body (thousands of colour profiles before a small image's pixels) gets the
            # seconds a light image needs, not the request's: a crafted file cannot hold a quick child for long.
            if not self._light_queue.acquire(blocking=False):
                raise DecoderBusy("the server is already decoding as many images as it can; send it again in a few "
                                  "seconds")
            try:
                return self._decode("_quick", data, min_side, budget,
                                    min(seconds, self.limits.light_seconds) - (time.monotonic() - started))
            finally:
                self._light_queue.release()

    @contextlib.contextmanager
    def _heavy_turn(self, network: str, seconds: float) -> Iterator[None]:
        """Wait (within `seconds`) for one of the heavy slots, in order of arrival; one place per network. Refused
        at once before, a heavy slot held by three addresses sending 40 MP images turned away every progressive
        phone photo (which counts as heavy) with 429 (found by an independent attack)."""
        ticket = object()
        with self._heavy_changed:
            if network in self._heavy_networks:
                raise DecoderBusy("a large image from your network is already being decoded; send the next one when "
                                  "it is done, or a smaller or JPEG version")
            if len(self._heavy_line) >= self.limits.heavy_slots + self.limits.heavy_waiting:
                raise DecoderBusy("the server is already decoding as many large images as it can; send it again "
                                  "in a few seconds, or a smaller or JPEG version")
            self._heavy_line.append(ticket)
            self._heavy_networks.add(network)
            try:
                if not self._heavy_changed.wait_for(
                        lambda: self._heavy_line.index(ticket) < self.limits.heavy_slots, seconds):
                    raise DecoderBusy("the server was decoding other large images for all the seconds this one "
                                      "could wait; send it again in a few seconds")
            except BaseException:
                self._heavy_line.remove(ticket)
                self._heavy_networks.discard(network)
                self._heavy_changed.notify_all()
                raise
        try:
            yield
        finally:
            with self._heavy_changed:
                self._heavy_line.remove(ticket)
                self._heavy_networks.discard(network)
                self._heavy_changed.notify_all()

    @contextlib.contextmanager
    def _owner_turn(self, owner: str, seconds: float) -> Iterator[None]:
        """Wait (within `seconds`) until `owner` has no other decode in progress, then hold its turn."""
        with self._owners_changed:
            if not self._owners_changed.wait_for(lambda: not self._owners[owner], seconds):
                raise ImageIntakeError("not decoded: the request's decoding time ran out while your other images "
                                       "were being decoded")
            self._owners[owner] += 1
        try:
            yield
        finally:
            with self._owners_changed:
                self._owners[owner] -= 1
                if not self._owners[owner]:
                    del self._owners[owner]
                self._owners_changed.notify_all()

    def _decode(self, lane: str, data: bytes, min_side: int | None, budget: PixelBudget | None,
                seconds: float) -> Image.Image:
        if seconds <= 0:
            raise ImageIntakeError("not decoded: the request's decoding time ran out")
        from pebble import ProcessExpired

        args = (data, min_side, budget.total if budget else None, budget.left if budget else None, seconds)
        # pebble's timeout counts from when a child starts the task; the wait for a free child counts here too
        # (result's timeout), so that a queue of other decodes cannot stretch this one's seconds.
        deadline = time.monotonic() + seconds
        future = self._schedule(lane, args, seconds)
        try:
            try:
                image, left = future.result(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
            except ProcessExpired as exc:
                if exc.exitcode != RECYCLE_EXIT_CODE:
                    raise
                # A bloated child left before decoding (_exit_if_bloated): once more, on a fresh one, within what
                # is left of the same seconds.
                future = self._schedule(lane, args, max(0.1, deadline - time.monotonic()))
                image, left = future.result(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        except FutureTimeout:
            queued = not future.done() and not future.running()  # done: pebble's own timeout stopped it running
            future.cancel()  # still queued: it never runs; running: pebble stops its child
            if queued:
                raise DecoderBusy("the server was decoding other images for all the seconds this one could wait; "
                                  "send it again in a few seconds") from None
            raise ImageIntakeError(f"decoding this image took longer than the {seconds:.3g} s it had; it was "
                                   "stopped (re-save it as an ordinary JPEG or PNG)") from None
        except ImageIntakeError:
            raise
        except Exception as exc:  # the child died: SIGXCPU (CPU limit), a crash in a decoder, killed
            raise ImageIntakeError("decoding this image was stopped: it needed more time or memory than the "
                                   f"server gives one image ({type(exc).__name__})") from None
        finally:
            # The future holds the exception, whose traceback holds this frame and its bytes: a cycle that
            # only the garbage collector would free (tests/test_budgets.py saw 146 MB held in 40 images).
            del future
        if budget is not None and left is not None:
            budget.left = left
        return image

    def start(self) -> list:
        """Start every child now (each imports Pillow and NumPy: about a second), not on the first upload. Returns
        at once: the caller loads its models meanwhile and then waits in `warm_up`."""
        if not self._starting:
            self._starting = [pool.schedule(os.getpid) for pool, count in (
                (self._quick, self.limits.processes), (self._heavy_lane, self.limits.heavy_slots),
                (self._bulk, self.limits.bulk_processes)) for _ in range(count)]
        return self._starting

    def warm_up(self) -> None:
        """Wait until every child has started; a child that cannot start is an error with its cause, never a server
        that silently decodes in-process."""
        futures = self.start()
        try:
            for future in futures:
                future.result(timeout=60)
        except Exception as exc:
            raise RuntimeError(
                f"the image-decoding child processes did not start ({type(exc).__name__}: {exc}). They are started "
                "with multiprocessing's 'spawn', which imports the main script again: a script that creates the app "
                "when imported must do so under `if __name__ == '__main__':` (gunicorn, flask and pytest do); or "
                "set APP_DECODE_PROCESSES=0 to decode in the worker itself, without the limits") from exc

    def close(self) -> None:
        for pool in (self._quick, self._heavy_lane, self._bulk):
            pool.stop()
            pool.join()


# Of a request's seconds (an evaluation, a comparison of several images), what decoding may use: the models and the
# explanation maps need the rest.
DECODING_SHARE = 2 / 3

_configured: DecoderLimits | None = None
_decoder: IsolatedDecoder | None = None
_decoder_lock = threading.Lock()


def network_of(owner: str) -> str:
    """The network an owner's address key belongs to (an IPv4 /24, an IPv6 /48), as the front server counts
    networks; a key that is no address is its own network."""
    import ipaddress

    try:
        found = ipaddress.ip_network(owner, strict=False)
    except ValueError:
        return owner
    return str(found.supernet(new_prefix=24 if found.version == 4 else 48)) if found.prefixlen > (
        24 if found.version == 4 else 48) else str(found)


def decoded_pixels(data: bytes, min_side: int | None) -> float:
    """What decoding `data` will cost, in pixels, from its header (models/image_header.py): a baseline JPEG is
    decoded at 1/2, 1/4 or 1/8 scale when `min_side` allows (decode_image's draft), every other format whole, and
    so is a progressive JPEG in effect (libjpeg holds every coefficient of the whole image across its scans: a
    flood of 40 MP progressive JPEGs, counted at 1/64, passed as light and held the light children; found by an
    independent attack). A size the header does not give (TIFF, anything unrecognised or damaged) is infinite."""
    declared = declared_size(data)
    if declared is None:
        return float("inf")
    kind, width, height = declared
    scale = 1
    if kind == "JPEG" and min_side and not progressive_jpeg(data):
        while scale < 8 and min(width, height) // (2 * scale) >= min_side:
            scale *= 2
    return width * height / scale**2


def configure(limits: DecoderLimits | None) -> None:
    """Decode every image of this process in children within `limits` (None: in this process, as the CLI does).
    Called by the web app's factory; the pool starts on first use."""
    global _decoder, _configured
    with _decoder_lock:
        if _decoder is not None and (limits is None or _decoder.limits != limits):
            _decoder.close()
            _decoder = None
        _configured = limits


def isolated() -> IsolatedDecoder | None:
    global _decoder
    if _configured is None:
        return None
    with _decoder_lock:
        if _decoder is None:
            _decoder = IsolatedDecoder(_configured)
        return _decoder


def decode(data: bytes, min_side: int | None = None, budget: PixelBudget | None = None,
           deadline: float | None = None, bulk: bool = False, owner: str | None = None) -> Image.Image:
    """The image intake for untrusted bytes: in a child when the process configured a pool, else in-process.
    `deadline` (a time.monotonic() value) bounds this decode too, not only the ones after it."""
    seconds = None if deadline is None else deadline - time.monotonic()
    decoder = isolated()
    if decoder is None:
        if seconds is not None and seconds <= 0:
            raise ImageIntakeError("not decoded: the request's decoding time ran out")
        return decode_image(data, min_side=min_side, budget=budget)
    return decoder.decode(data, min_side=min_side, budget=budget, seconds=seconds, bulk=bulk, owner=owner)


RELEASE_AFTER_PIXELS = 2_000_000  # decoded by one request: hand the freed memory back afterwards


class OutOfTime(ImageIntakeError):
    """Not this image's fault: the request's decoding seconds ran out before its turn."""


def decode_each(readers: Iterable[Callable[[], bytes | None]], max_pixels: int | None, deadline: float | None,
                out_of_time: str, bulk: bool, owner: str | None = None
                ) -> Iterator[Image.Image | ImageIntakeError | None]:
    """The one loop that decodes a request's uploads (a comparison's, an evaluation's), each shrunk at once to what
    the models need (DECODE_MIN_SIDE), within one pixel budget (`max_pixels`) and one `deadline`
    (time.monotonic()) for them all. Each reader is called only when its turn comes, so a request holds one
    upload's bytes and one decode at a time; the freed memory is handed back at the end.

    Yields, per reader: the image; None where the reader gave no bytes; or the ImageIntakeError that says why not
    (an OutOfTime saying `out_of_time` once the deadline has passed). DecoderBusy (the server's state, not the
    image's) propagates."""
    budget = PixelBudget(max_pixels) if max_pixels else None
    try:
        for read in readers:
            if deadline is not None and time.monotonic() > deadline:
                yield OutOfTime(out_of_time)
                continue
            data = read()
            if data is None:
                yield None
                continue
            try:
                image = decode(data, min_side=DECODE_MIN_SIDE, budget=budget, deadline=deadline, bulk=bulk,
                               owner=owner)
            except DecoderBusy:
                raise
            except ImageIntakeError as exc:
                yield exc
                continue
            finally:
                data = None  # not held while the caller has the image
            yield image
    finally:
        if budget is None or budget.total - budget.left > RELEASE_AFTER_PIXELS:
            release_memory()
