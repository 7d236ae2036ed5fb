"""Admission by cost (webapp/admission.py): the expensive kinds of request have a few slots each, and one
client at most COSTLY_PER_CLIENT of them, so one-image comparisons and health checks always find a thread."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devkit.images import encode, smooth
from webapp.admission import Admission, client_key
from webapp.inference import RequestError

JPEG = encode(smooth(96, 64), "JPEG")


def test_slots_per_kind_and_per_client_are_taken_and_given_back():
    gate = Admission({"evaluate": 2, "explain": 1, "export": 1, "batch": 1}, per_client=1)
    with gate.slot("evaluate", "a"), gate.slot("evaluate", "b"):
        with pytest.raises(RequestError) as busy:
            gate.slot("evaluate", "c").__enter__()
        assert busy.value.status == 429 and busy.value.code == "busy" and busy.value.retry_after == 15
        with pytest.raises(RequestError) as mine:
            gate.slot("batch", "a").__enter__()  # a free kind, but client a already holds a costly request
        assert mine.value.code == "too_many_requests"
        assert gate.in_use()["evaluate"] == 2
    with pytest.raises(ZeroDivisionError), gate.slot("evaluate", "a"):
        1 / 0  # noqa: B018  (a request that fails still gives its slot back)
    assert gate.in_use() == {"evaluate": 0, "explain": 0, "export": 0, "batch": 0}
    with pytest.raises(ValueError, match="unknown kinds"):
        Admission({"evaluations": 1}, per_client=1)


def test_a_client_is_an_ipv4_address_or_an_ipv6_slash_64():
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key("10.5.5.6:1") == client_key("10.5.5.6:2") == "10.5.5.6"  # a port is no new client
    assert client_key("[2001:db8:1:2::1]:8080") == "2001:db8:1:2::/64"
    assert client_key(None) == client_key("not an address") == client_key("garbage 2") == "unknown"


def test_a_client_has_at_most_two_requests_for_the_models_in_progress_one_image_ones_included():
    """32 concurrent one-image requests of slow PNGs from one address kept another user's photo waiting 23 s."""
    gate = Admission({"evaluate": 1, "explain": 1, "export": 1, "batch": 1}, per_client=1, in_flight_per_client=2)
    with gate.slot(None, "a"), gate.slot(None, "a"):
        with pytest.raises(RequestError) as third:
            gate.slot(None, "a").__enter__()
        assert third.value.status == 429 and third.value.code == "too_many_requests"
        with pytest.raises(RequestError):
            gate.slot("evaluate", "a").__enter__()
        with gate.slot(None, "b"):  # another client is not affected
            pass
    with gate.slot(None, "a"), gate.slot("batch", "a"):
        pass


def post_as(client, address: str, path: str, **kwargs):
    return client.post(path, environ_base={"REMOTE_ADDR": address}, **kwargs)


def test_with_every_costly_slot_held_a_one_image_comparison_and_the_health_checks_still_answer(app, client):
    gate = app.extensions["admission"]
    holders = [gate.slot(kind, f"198.51.100.{i}-{n}") for i, (kind, count) in enumerate(gate.slots.items())
               for n in range(count)]
    for holder in holders:
        holder.__enter__()
    try:
        one = post_as(client, "192.0.2.1", "/api/v1/predict", data={"files": [(io.BytesIO(JPEG), "a.jpg")]},
                      content_type="multipart/form-data")
        assert one.status_code == 200 and one.json["results"][0]["predictions"]
        assert client.get("/healthz").status_code == 200
        two = post_as(client, "192.0.2.1", "/api/v1/predict", content_type="multipart/form-data",
                      data={"files": [(io.BytesIO(JPEG), "a.jpg"), (io.BytesIO(JPEG), "b.jpg")]})
        assert two.status_code == 429 and two.json["error"]["code"] == "busy"
        assert two.headers["Retry-After"] == "5" and "batches" in two.json["error"]["message"]
        evaluation = post_as(client, "192.0.2.1", "/api/v1/evaluate", content_type="multipart/form-data",
                             data={"files": [(io.BytesIO(JPEG), "cat_1.jpg")]})
        assert evaluation.status_code == 429 and evaluation.headers["Retry-After"] == "15"
        page = post_as(client, "192.0.2.1", "/evaluate", content_type="multipart/form-data", data={
            "csrf_token": csrf(client), "files": [(io.BytesIO(JPEG), "cat_1.jpg")]})
        assert page.status_code == 429 and "busy evaluating" in page.get_data(as_text=True)
    finally:
        for holder in holders:
            holder.__exit__(None, None, None)
    again = post_as(client, "192.0.2.1", "/api/v1/predict", content_type="multipart/form-data",
                    data={"files": [(io.BytesIO(JPEG), "a.jpg"), (io.BytesIO(JPEG), "b.jpg")]})
    assert again.status_code == 200


def csrf(client) -> str:
    import re

    page = client.get("/evaluate").get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def test_sixteen_evaluations_at_once_run_at_most_the_slots_and_leave_threads_for_everyone_else(app, monkeypatch):
    """16 concurrent evaluations from 4 addresses (each held 0.6 s inside the models): at most the evaluate
    slots run at once, at most 1 per address, the rest get 429 at once; meanwhile other addresses' one-image
    comparisons answer as usual."""
    import reports.user_eval

    running, most, lock = [0], [0], threading.Lock()
    real = reports.user_eval.evaluate

    def slow_evaluate(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.6)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(reports.user_eval, "evaluate", slow_evaluate)

    def evaluate(i: int) -> tuple[int, str | None]:
        response = post_as(app.test_client(), f"203.0.113.{i % 4}", "/api/v1/evaluate",
                           content_type="multipart/form-data", data={"files": [(io.BytesIO(JPEG), "cat_1.jpg")]})
        return response.status_code, response.headers.get("Retry-After")

    def predict(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = post_as(app.test_client(), f"192.0.2.{50 + i}", "/api/v1/predict",
                           content_type="multipart/form-data", data={"files": [(io.BytesIO(JPEG), "a.jpg")]})
        return response.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(20) as pool:
        evaluations = [pool.submit(evaluate, i) for i in range(16)]
        time.sleep(0.2)
        predictions = [pool.submit(predict, i) for i in range(3)]
        answers = [f.result() for f in evaluations]
        predicted = [f.result() for f in predictions]
    assert most[0] <= app.config["COSTLY_SLOTS"]["evaluate"]
    statuses = [status for status, _ in answers]
    assert statuses.count(200) >= 1 and statuses.count(429) >= 10 and set(statuses) <= {200, 429}
    assert all(retry == "15" for status, retry in answers if status == 429)
    assert all(status == 200 and seconds < 2 for status, seconds in predicted), predicted


def test_a_body_that_can_only_hold_several_images_is_refused_before_it_is_parsed(fake_models, monkeypatch):
    """A flood of 32-image comparisons refused for want of a slot still cost 30 ms of parsing each, in Python, holding
    the lock the model passes need. A body over one file's limit (so several images) is answered 429 before its
    multipart body is read when every kind it could be is busy; a one-image body is parsed as before."""
    from werkzeug.formparser import FormDataParser

    from webapp import create_app

    parsed = []
    parse = FormDataParser.parse
    monkeypatch.setattr(FormDataParser, "parse", lambda self, *a, **k: parsed.append(1) or parse(self, *a, **k))
    app = create_app({"TESTING": True, "SECRET_KEY": "early", "MAX_FILE_BYTES": 4096, "DECODE_PROCESSES": 0})
    admission = app.extensions["admission"]
    client = app.test_client()
    several = {"files": [(io.BytesIO(JPEG), f"{i}.jpg") for i in range(60)]}
    with admission.slot("batch", "198.51.100.1"), admission.slot("explain", "198.51.100.2"):
        response = client.post("/api/v1/predict", data=several, content_type="multipart/form-data")
        assert response.status_code == 429 and response.json["error"]["code"] == "busy" and not parsed
        response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(JPEG), "one.jpg")]},
                               content_type="multipart/form-data")
        assert response.status_code == 200 and parsed  # one image: no costly slot needed
    parsed.clear()
    with admission.slot("batch", "198.51.100.1"):  # the explain slot is free: it could be a request for maps
        response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(JPEG), f"{i}.jpg") for i in range(8)]},
                               content_type="multipart/form-data")
        assert response.status_code == 429 and parsed  # parsed, then refused for its real kind (a batch)


def test_a_requests_seconds_count_from_when_nginx_handed_it_over(app):
    """Under a soak an evaluation answered after 17 s against its 12: it had waited for a request thread first.
    nginx stamps X-Request-Start (deploy/nginx.conf); the app's deadlines count from it, and a stamp in the future
    (forged) cannot lengthen a request."""
    from webapp.admission import _note_start, request_started

    for stamp, waited in ((time.time() - 5, 5.0), (time.time() + 60, 0.0), ("junk", 0.0)):
        with app.test_request_context(headers={"X-Request-Start": f"t={stamp}"}):
            _note_start()
            assert time.monotonic() - request_started() == pytest.approx(waited, abs=0.5)
