"""End to end in Debian's Chromium (Playwright): upload through the file input and by drag-and-drop.

Screenshots land in build/screenshots/ (desktop and phone widths) for people to look at.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.serving import make_server

from devkit.images import encode, photo
from tests.helpers import REAL_CIFAR, REPO, needs_real_cifar

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "build" / "screenshots"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]


@pytest.fixture(scope="module")
def base_url():
    from webapp import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "browser-tests"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda msg: msg.type == "error" and tab.console_errors.append(msg.text))
    yield tab
    context.close()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("upload")
    red = Image.new("RGB", (300, 200), (200, 30, 30))
    files = {"photo.jpg": encode(photo(640, 480, seed=1), "JPEG"), "red.png": encode(red, "PNG"),
             "alpha.png": encode(Image.new("RGBA", (64, 64), (0, 90, 200, 120)), "PNG")}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def check_side_by_side(page, count: int) -> None:
    cards = page.locator("article.result")
    assert cards.count() == count
    for i in range(count):
        card = cards.nth(i)
        if card.locator(".item-error").count():
            continue
        for model in ("custom_cnn", "mobilenetv2"):
            block = card.locator(f'.prediction[data-model="{model}"]')
            assert block.locator("li").count() == 3
            widths = block.locator(".progress-bar").evaluate_all("bars => bars.map(b => b.style.width)")
            assert all(w.endswith("%") for w in widths)  # the JS set the bars (the CSP did not block it)
        # Both models' blocks measured in one go (the page may be scrolling): same top, CNN on the left.
        boxes = card.evaluate("""card => ['custom_cnn', 'mobilenetv2'].map(m => {
            const r = card.querySelector(`.prediction[data-model="${m}"]`).getBoundingClientRect();
            return {x: r.x, y: r.y};
        })""")
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5 and boxes[0]["x"] < boxes[1]["x"]  # side by side


def test_upload_three_images_through_the_file_input(page, base_url, image_files):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(base_url + "/")
    page.set_input_files("#files", [str(p) for p in image_files])
    assert page.locator("#previews figure").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "01-previews.png"), full_page=True)
    page.click("#submit")
    page.wait_for_selector("#results")
    check_side_by_side(page, 3)
    page.screenshot(path=str(SCREENSHOTS / "02-results-desktop.png"), full_page=True)
    assert page.console_errors == []


def test_drag_and_drop_submits_the_dropped_files(page, base_url, image_files):
    page.goto(base_url + "/")
    payload = [{"name": p.name, "bytes": list(p.read_bytes()), "type": "image/png" if p.suffix == ".png"
                else "image/jpeg"} for p in image_files]
    page.evaluate("""files => {
        const transfer = new DataTransfer();
        for (const f of files) transfer.items.add(new File([new Uint8Array(f.bytes)], f.name, {type: f.type}));
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", payload)
    assert page.locator("#previews figure").count() == 3
    assert page.eval_on_selector("#files", "input => input.files.length") == 3
    page.click("#submit")
    page.wait_for_selector("#results")
    check_side_by_side(page, 3)
    assert "photo.jpg" in page.locator("#results").inner_text()


def test_an_invalid_file_shows_its_own_error_and_the_rest_succeed(browser, base_url, image_files, tmp_path):
    bad = tmp_path / "document.jpg"
    bad.write_bytes(b"%PDF-1.4 definitely not a jpeg")
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    page.goto(base_url + "/")
    page.set_input_files("#files", [str(image_files[0]), str(bad)])
    page.click("#submit")
    page.wait_for_selector("#results")
    error = page.locator("article.result").nth(1).locator(".item-error")
    assert "not an image" in error.inner_text()
    assert page.locator("article.result").nth(0).locator(".prediction").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "03-results-phone-with-error.png"), full_page=True)
    context.close()


def test_models_and_report_pages_render(page, base_url):
    page.goto(base_url + "/models")
    assert page.locator("section.model").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "04-models.png"), full_page=True)
    page.goto(base_url + "/reports")
    assert "McNemar" in page.inner_text("main")
    images = page.locator("main img")
    assert images.count() >= 8 and all(images.nth(i).evaluate("img => img.naturalWidth > 0")
                                       for i in range(images.count()))
    page.screenshot(path=str(SCREENSHOTS / "05-report.png"), full_page=False)
    assert page.console_errors == []


@needs_real_cifar
def test_filters_show_only_the_uncertain_results_and_a_reload_never_posts_again(page, base_url, tmp_path):
    from models import cifar10

    noise, flat, plane = tmp_path / "noise.png", tmp_path / "flat.png", tmp_path / "plane.png"
    noise.write_bytes(encode(photo(200, 200, seed=3), "PNG"))  # out of scope: the verdict flags it
    flat.write_bytes(encode(Image.new("RGB", (64, 64), (255, 255, 255)), "PNG"))
    airplane = cifar10.load_split("test", str(REAL_CIFAR)).images[3]  # both models: airplane, > 99%
    plane.write_bytes(encode(Image.fromarray(airplane).resize((128, 128), Image.Resampling.BICUBIC), "PNG"))
    page.goto(base_url + "/")
    page.set_input_files("#files", [str(noise), str(flat), str(plane)])
    page.click("#submit")
    page.wait_for_selector("#results")
    page.wait_for_load_state("load")  # app.js has run: the filter buttons listen
    cards = page.locator("article.result")
    uncertain = page.locator('article.result[data-uncertain="true"]').count()
    assert 1 <= uncertain < cards.count() and "uncertain" in page.locator("#summary").inner_text()
    page.click('#result-tools [data-filter="uncertain"]')
    assert sum(cards.nth(i).is_visible() for i in range(cards.count())) == uncertain
    assert page.locator('#result-tools [data-filter="uncertain"]').get_attribute("aria-pressed") == "true"
    page.click('#result-tools [data-filter="all"]')
    assert all(cards.nth(i).is_visible() for i in range(cards.count()))
    page.screenshot(path=str(SCREENSHOTS / "05-uncertain.png"), full_page=True)
    assert page.locator("#new-comparison").get_attribute("href") == "/"
    posts = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    page.reload()
    assert posts == [] and page.locator("#results").count() == 0  # a GET of the upload page, no re-post
    assert page.console_errors == []
