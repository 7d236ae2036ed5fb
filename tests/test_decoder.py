"""Decoding in child processes (models/decoder.py): one bound on memory and time for every format at once,
including the time spent inside a single image's decode, and the app's answers when a child is stopped."""

from __future__ import annotations

import io
import os
import threading
import time
import zlib

import pytest
from PIL import Image

from devkit.images import encode, png_with_chunks, smooth
from models import decoder
from models.images import ImageIntakeError, PixelBudget

GOOD = encode(smooth(640, 480), "JPEG", quality=90)
# A 10 MB PNG of colour profiles, each inflating to 1 MB: Pillow spends seconds in zlib before the first pixel,
# and no pre-check knows this layout (it is one of many).
SLOW = png_with_chunks(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 1_000_000, 9), 9_000)


@pytest.fixture(scope="module")
def pool():
    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=2, memory_bytes=256 * 1024 * 1024))
    pool.warm_up()
    yield pool
    pool.close()


def test_a_decode_in_a_child_gives_what_the_intake_gives_in_process(pool):
    from models.images import decode_image

    budget = PixelBudget(10_000_000)
    child = pool.decode(GOOD, min_side=256, budget=budget)
    here = decode_image(GOOD, min_side=256)
    assert child.size == here.size and child.tobytes() == here.tobytes()
    assert child.info["original_size"] == (640, 480)
    assert budget.left == 10_000_000 - 640 * 480  # the child's charge reaches the request's budget


def test_the_time_budget_stops_one_image_in_the_middle_of_its_decode(pool):
    started = time.monotonic()
    with pytest.raises(ImageIntakeError, match="took longer than"):
        pool.decode(SLOW, min_side=256, seconds=1.0)
    assert time.monotonic() - started < 3.0  # stopped at its 1 s, not after the whole decode
    assert pool.decode(GOOD, min_side=256).size[0] > 0  # the child was replaced; the next image is decoded


def test_a_decode_that_needs_more_memory_than_a_child_may_add_is_that_images_error(pool):
    # A 6000x4000 PNG of one colour (tiny on disk) decodes to 96 MB in Pillow's 4 bytes a pixel, plus the
    # copy a conversion makes: over a 64 MB allowance. Without min_side nothing shrinks it early.
    big = encode(Image.new("RGB", (6000, 4000), (10, 200, 30)), "PNG")
    tight = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1, memory_bytes=64 * 1024 * 1024))
    try:
        with pytest.raises(ImageIntakeError, match="memory"):
            tight.decode(big)
        assert tight.decode(GOOD, min_side=256).size[0] > 0
    finally:
        tight.close()
    assert pool.decode(big, min_side=256).size == (400, 267)  # the same file within the usual allowance


def test_a_refusal_inside_the_child_keeps_its_words(pool):
    with pytest.raises(ImageIntakeError, match="not an image"):
        pool.decode(b"%PDF-1.4 not an image at all")


def test_without_a_pool_the_process_decodes_itself_and_still_honours_the_deadline():
    decoder.configure(None)
    try:
        assert decoder.isolated() is None and decoder.decode(GOOD, min_side=256).size == (640, 480)
        with pytest.raises(ImageIntakeError, match="ran out"):
            decoder.decode(GOOD, deadline=time.monotonic() - 1)
    finally:
        decoder.configure(decoder.DecoderLimits())


def test_through_the_api_a_slow_file_is_stopped_and_the_others_in_its_request_still_answer(app, client):
    app.config["MAX_DECODE_SECONDS"] = 1.5
    started = time.monotonic()
    response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(GOOD), "good.jpg"),
                                                              (io.BytesIO(SLOW), "slow.png")]},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    good, slow = response.json["results"]
    assert good["predictions"] and "error" not in good
    assert slow["error"]["code"] == "invalid_image" and "took longer than" in slow["error"]["message"]
    assert time.monotonic() - started < 5  # the 1.5 s budget, not the file's many seconds of decoding
    assert client.get("/healthz").status_code == 200


def test_the_cost_of_a_decode_comes_from_the_header():
    """A JPEG is decoded at reduced scale when the models need fewer pixels; any other format whole; a header the
    reader does not know (TIFF, damaged) is heavy."""
    phone = encode(smooth(4000, 3000), "JPEG", quality=80)
    assert decoder.decoded_pixels(phone, min_side=256) == 4000 * 3000 / 64
    assert decoder.decoded_pixels(phone, min_side=None) == 4000 * 3000
    assert decoder.decoded_pixels(encode(Image.new("RGB", (7000, 5700)), "PNG"), 256) == 7000 * 5700
    assert decoder.decoded_pixels(encode(Image.new("RGB", (64, 64)), "TIFF"), 256) == float("inf")
    assert decoder.decoded_pixels(b"\x89PNG damaged", 256) == float("inf")


def test_heavy_images_take_one_slot_and_light_ones_never_wait_for_them():
    """Found by an independent attack: one-image comparisons of a 40 MP PNG from 20 addresses at once (each within
    its own limits) held every request thread and child, and another user's photo waited 13 s. Now a second heavy
    image is refused at once when no waiting place is left, and a light photo goes straight through."""
    import threading

    limits = decoder.DecoderLimits(processes=3, memory_bytes=280 * 1024 * 1024, heavy_slots=1, heavy_waiting=0)
    pool = decoder.IsolatedDecoder(limits)
    pool.warm_up()
    heavy = encode(Image.new("RGB", (7000, 5700), (20, 90, 160)), "PNG", compress_level=9)
    try:
        first = threading.Thread(target=pool.decode, args=(heavy,), kwargs={"min_side": 256, "owner": "a"})
        first.start()
        time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(ImageIntakeError, match="as many large images"):
            pool.decode(heavy, min_side=256, owner="b")
        refused_after = time.monotonic() - started
        photo = pool.decode(GOOD, min_side=256, owner="c")
        light_after = time.monotonic() - started
        first.join(30)
        assert refused_after < 0.1 and light_after < 1.0 and photo.size[0] >= 256
        assert pool.decode(heavy, min_side=256, owner="b").info["original_size"] == (7000, 5700)  # slot given back
    finally:
        pool.close()


def test_heavy_images_wait_their_turn_one_place_per_network():
    """Found by an independent attack: three addresses sending 40 MP images kept the one heavy slot busy, and every
    progressive phone photo (heavy by its full size) was refused with 429. Now a heavy image waits its turn, in
    order of arrival, with one place per network (an IPv4 /24, an IPv6 /48): a second from the same network is
    refused at once, and so is one beyond the waiting places."""
    import threading

    limits = decoder.DecoderLimits(processes=3, memory_bytes=280 * 1024 * 1024, heavy_slots=1, heavy_waiting=2)
    pool = decoder.IsolatedDecoder(limits)
    pool.warm_up()
    heavy = encode(Image.new("RGB", (7000, 5700), (20, 90, 160)), "PNG", compress_level=9)
    done: dict[str, tuple] = {}

    def send(owner: str) -> None:
        done[owner] = pool.decode(heavy, min_side=256, owner=owner).info["original_size"]

    try:
        senders = [threading.Thread(target=send, args=(owner,)) for owner in ("198.51.100.1", "203.0.113.9",
                                                                             "2001:db8:7:1::/64")]
        for sender in senders:
            sender.start()
            time.sleep(0.05)
        with pytest.raises(ImageIntakeError, match="from your network"):  # same /24 as the first
            pool.decode(heavy, min_side=256, owner="198.51.100.77")
        with pytest.raises(ImageIntakeError, match="from your network"):  # same /48 as the third
            pool.decode(heavy, min_side=256, owner="2001:db8:7:2::/64")
        with pytest.raises(ImageIntakeError, match="as many large images"):  # 1 decoding + 2 waiting
            pool.decode(heavy, min_side=256, owner="192.0.2.1")
        for sender in senders:
            sender.join(60)
        assert set(done) == {"198.51.100.1", "203.0.113.9", "2001:db8:7:1::/64"}  # every waiting one decoded
        assert decoder.network_of("2001:db8:7:1::/64") == "2001:db8:7::/48"
        assert decoder.network_of("10.1.2.3") == "10.1.2.0/24" and decoder.network_of("unknown") == "unknown"
    finally:
        pool.close()


def test_a_light_header_over_a_slow_body_gets_a_light_images_seconds(pool):
    """The 10 MB PNG of colour profiles declares a small image: it is stopped after `light_seconds`, not after
    the request's whole decoding time."""
    started = time.monotonic()
    with pytest.raises(ImageIntakeError):
        pool.decode(SLOW, min_side=256, seconds=8.0, owner="a")
    assert time.monotonic() - started < pool.limits.light_seconds + 1.5


def test_a_child_that_decoded_large_images_still_decodes_the_next_ones():
    """The address-space limit was fixed when a child started: after one evaluation of large WebPs (15 decoded, the
    rest over the pixel budget) glibc held 64 MB regions of the earlier decodes, and every image of the next
    evaluation failed with "needs more memory". The limit is now set before each decode, from the size then."""
    webp = encode(Image.new("RGB", (4096, 4096), (90, 120, 150)), "WEBP", lossless=True)  # the largest WebP taken
    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1))  # the web app's memory limit
    pool.warm_up()
    try:
        decode_twice(pool, webp)
    finally:
        pool.close()


def decode_twice(pool: decoder.IsolatedDecoder, webp: bytes) -> None:
    for evaluation in range(2):
        budget = PixelBudget(256_000_000)
        outcomes = []
        for _ in range(20):
            try:
                pool.decode(webp, min_side=256, bulk=True, budget=budget)
                outcomes.append("decoded")
            except ImageIntakeError as exc:
                outcomes.append("over budget" if "decoding budget" in str(exc) else str(exc))
        assert outcomes == ["decoded"] * 15 + ["over budget"] * 5, (evaluation, outcomes)


def rgba_pattern_png(side: int) -> bytes:
    """A patterned RGBA PNG of side x side pixels: a few hundred kB, 4 bytes a pixel once decoded."""
    import numpy as np

    y, x = np.mgrid[0:side, 0:side]
    pattern = np.stack([x % 256, y % 256, (x ^ y) % 256, np.full_like(x, 255)], -1).astype(np.uint8)
    return encode(Image.fromarray(pattern, "RGBA"), "PNG", compress_level=1)


def test_a_decode_refused_for_memory_leaves_nothing_behind_in_its_child():
    """Found by an independent attack: 20 copies of a 40 MP RGBA PNG in one request took a child from 40 to 499 MB.
    Each refused decode's error held the half-allocated image (through the MemoryError's traceback), and the next
    decode's limit started from that bloated size."""
    from models.decoder import _resident

    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1))  # the web app's memory limit
    pool.warm_up()
    png = rgba_pattern_png(6320)
    try:
        idle = pool._bulk.schedule(_resident).result()
        for _ in range(4):
            with pytest.raises(ImageIntakeError, match="needs more memory"):
                pool.decode(png, min_side=256, bulk=True)
        assert pool._bulk.schedule(_resident).result() - idle < 30 * 2**20
    finally:
        pool.close()


def test_a_bloated_child_is_replaced_and_the_decode_still_succeeds():
    """Whatever else leaves memory in a child (a library's leak), its total stays bounded: a child holding more than
    half a decode's allowance over its idle size exits before decoding, and the image is decoded on a fresh one."""
    from tests.helpers import hold_memory

    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1, memory_bytes=128 * 2**20))
    pool.warm_up()
    try:
        bloated = pool._bulk.schedule(hold_memory, args=(100,)).result()
        assert pool.decode(GOOD, min_side=256, bulk=True).info["original_size"] == (640, 480)
        assert pool._bulk.schedule(os.getpid).result() != bloated
        small = pool._bulk.schedule(hold_memory, args=(20,)).result()  # within the allowance: kept
        pool.decode(GOOD, min_side=256, bulk=True)
        assert pool._bulk.schedule(os.getpid).result() == small
    finally:
        pool.close()


def test_a_webp_over_its_limit_is_refused_as_such_in_a_child_not_called_damaged():
    """Found by an independent attack: a 6320x6320 lossless WebP (78 KB here) was answered "damaged or truncated":
    Pillow's WebP opener decodes while it opens, and that failed over the child's memory limit before the size
    check. The size now comes from the header first."""
    import numpy as np

    y, x = np.mgrid[0:6320, 0:6320]
    pattern = np.stack([x % 256, y % 256, (x ^ y) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pattern).save(buffer, "WEBP", lossless=True, method=0)
    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1))  # the web app's memory limit
    pool.warm_up()
    try:
        with pytest.raises(ImageIntakeError, match=r"6320x6320 pixels; the limit is 16\.8 megapixels for WebP"):
            pool.decode(buffer.getvalue(), min_side=256, bulk=True)
    finally:
        pool.close()


def test_a_progressive_jpeg_counts_its_full_size_so_a_large_one_is_heavy():
    """Found by an independent attack: a 40 MP progressive JPEG was counted at 1/64 of its pixels (the reduced-scale
    decode), passed as light, and a flood of them held every light child and request thread (user p95 18 s).
    libjpeg holds the whole image's coefficients across a progressive file's scans, whatever the scale."""
    picture = smooth(2400, 1800)
    baseline = encode(picture, "JPEG", quality=80)
    progressive = encode(picture, "JPEG", quality=80, progressive=True)
    assert decoder.decoded_pixels(baseline, 256) == 2400 * 1800 / 16
    assert decoder.decoded_pixels(progressive, 256) == 2400 * 1800
    assert decoder.decoded_pixels(progressive, 256) > decoder.DecoderLimits().heavy_pixels


def test_the_wait_for_a_child_counts_against_a_decodes_seconds():
    """pebble's timeout starts when a child takes the task: a decode queued behind others waited for all of them
    (answers after 22-35 s under the attack). The wait now counts: past its seconds it is a 429-style refusal."""
    from models.images import DecoderBusy

    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1))
    pool.warm_up()
    try:
        slow = threading.Thread(target=refused, args=(pool, SLOW), kwargs={"seconds": 4, "bulk": True})
        slow.start()
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(DecoderBusy, match="decoding other images"):
            pool.decode(GOOD, min_side=256, seconds=1.0, bulk=True)
        assert time.monotonic() - started < 2.5
        slow.join(10)
    finally:
        pool.close()


def test_one_image_decodes_waiting_for_a_light_child_are_bounded():
    """Requests waiting for a light child hold request threads: beyond `light_waiting` waiting, a decode is refused
    at once (the web layer's 429 busy) instead of taking every thread with it."""
    from models.images import DecoderBusy

    pool = decoder.IsolatedDecoder(decoder.DecoderLimits(processes=1, light_waiting=1))
    pool.warm_up()
    try:
        holders = [threading.Thread(target=refused, args=(pool, SLOW), kwargs={"owner": owner}) for owner in "ab"]
        for holder in holders:
            holder.start()
            time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(DecoderBusy, match="as many images as it can"):
            pool.decode(GOOD, min_side=256, owner="c")
        assert time.monotonic() - started < 0.5
        for holder in holders:
            holder.join(10)
        assert pool.decode(GOOD, min_side=256, owner="c").info["original_size"] == (640, 480)
    finally:
        pool.close()


def refused(pool: decoder.IsolatedDecoder, data: bytes, **options) -> None:
    """Decode `data`, which the pool must refuse (in a thread that holds a child meanwhile)."""
    with pytest.raises(ImageIntakeError):
        pool.decode(data, **options)


def test_a_pool_that_stopped_working_is_replaced():
    """In a 30-minute soak the bulk lane's pebble pool went into its error state (a child died at a moment pebble
    could not match to a task) and refused every task after it: every evaluation answered 500. A lane whose pool
    refuses a task gets a fresh pool, and the decode goes there."""
    limits = decoder.DecoderLimits(processes=1, memory_bytes=256 * 1024 * 1024)
    pool = decoder.IsolatedDecoder(limits)
    try:
        broken = pool._bulk
        broken.stop()  # pebble then refuses every task with RuntimeError, as in its error state
        broken.join()
        assert pool.decode(GOOD, min_side=256, bulk=True).size[0] >= 256
        assert pool._bulk is not broken
    finally:
        pool.close()


def test_an_owner_waits_for_its_own_turn_without_holding_a_shared_place():
    """Found by the 30-minute soak: ten connections from five addresses, each waiting for its own address's turn
    inside a light-lane place, held every place, and another user's photo was refused. Now an owner waits for its
    turn first: however many of its requests wait, it holds one place, and another owner finds one."""
    limits = decoder.DecoderLimits(processes=1, light_waiting=1, memory_bytes=256 * 1024 * 1024)
    pool = decoder.IsolatedDecoder(limits)
    pool.warm_up()
    slow = encode(Image.frombytes("RGB", (1900, 1900), os.urandom(1900 * 1900 * 3)), "PNG")
    outcomes: list[str] = []

    def send() -> None:
        try:
            pool.decode(slow, min_side=256, owner="203.0.113.5")
            outcomes.append("decoded")
        except ImageIntakeError as exc:
            outcomes.append(type(exc).__name__)

    try:
        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(0.05)
        assert pool.decode(GOOD, min_side=256, owner="198.51.100.9").size[0] >= 256  # another owner: a place
        for sender in senders:
            sender.join(30)
        assert "DecoderBusy" not in outcomes, outcomes
    finally:
        pool.close()
