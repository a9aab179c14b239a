"""The clinicians' page in a real browser: `pneumoscan serve` in a subprocess, Debian's Chromium via Playwright."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import pneumoscan
from pneumoscan.inference.predictor import Predictor
from pneumoscan.service.settings import ENVELOPE, MB, Settings
from tests.conftest import blank_image, colour_photo, dicom_bytes, dithered, text_document

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HAS_GRADCAM = importlib.util.find_spec("pneumoscan.explain.gradcam") is not None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright; never `playwright install`)"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium missing (apt-get install chromium / make browser)"),
]


class SharedChromium:
    """One headless Chromium for the module's tests, started at the first page and again if it went away: starting
    Playwright and Chromium took 1 to 3 s, for each of some 40 tests. Each page still gets a browser context of its
    own (no cookies, storage or cache shared with another test)."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def browser(self) -> Any:
        if self._browser is None or not self._browser.is_connected():
            from playwright.sync_api import sync_playwright

            if self._playwright is None:
                self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                             headless=True)
        return self._browser

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._playwright = self._browser = None


CHROMIUM_SESSION = SharedChromium()


@pytest.fixture(scope="module", autouse=True)
def shared_chromium() -> Iterator[SharedChromium]:
    """Closes the module's Chromium after its last test."""
    yield CHROMIUM_SESSION
    CHROMIUM_SESSION.close()


@contextlib.contextmanager
def chromium_page(url: str | None, *, init_script: str | None = None,
                  **page_options: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page of headless Chromium in a fresh context, opened at `url` (unless None), with the list its uncaught
    script errors go to; `init_script` runs in the page before its own scripts."""
    context = CHROMIUM_SESSION.browser().new_context(**page_options)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        if init_script:
            page.add_init_script(init_script)
        if url is not None:
            page.goto(url)
        yield page, errors
    finally:
        context.close()


def stop(proc: subprocess.Popen) -> None:
    """Stop a `pneumoscan serve` subprocess: SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, *options: str, port: int | None = None) -> Iterator[str]:
    """`pneumoscan serve --model MODEL OPTIONS...` in a subprocess (on a free port unless `port`); yields its base
    URL."""
    port = port or free_port()
    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pneumoscan.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--backend", "onnx", "--log-level", "warning", *options],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pneumoscan serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("pneumoscan serve did not start within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def server(fitted: Path) -> Iterator[str]:
    """`pneumoscan serve` with the tiny model and its out-of-distribution guard."""
    with serving(fitted) as base:
        yield base


def test_page_shows_result_and_heatmap(server: str, fitted: Path, sample_films: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    expected = Predictor(fitted).predict_files([xray])[0]
    assert expected.in_distribution is True
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#notice")).to_contain_text("Decision support only — not a diagnosis")
        expect(page.locator("#model-line")).to_contain_text("resnet10")

        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        decision = page.locator("#decision").inner_text()
        assert re.fullmatch(r"(Flagged|Not flagged) for pneumonia — P = \d\.\d{2,6}, (at or above|below) the threshold \d\.\d{2,6}",
                            decision), decision
        assert decision.startswith("Flagged") == (expected.label == "PNEUMONIA")
        assert float(page.locator("#prob").inner_text()) == pytest.approx(expected.probability, abs=2e-3)
        assert page.locator("#label").inner_text() == expected.label
        width = page.locator("#fill").evaluate("el => parseFloat(el.style.width)")
        assert width == pytest.approx(100 * expected.probability, abs=0.2)
        marker = page.locator("#marker").evaluate("el => parseFloat(el.style.left)")
        assert marker == pytest.approx(100 * expected.threshold, abs=0.2)
        expect(page.locator("#xray")).to_be_visible()
        if HAS_GRADCAM:
            heat = page.locator("#heatmap")
            expect(heat).to_be_visible()
            assert heat.get_attribute("src").startswith("data:image/png;base64,")
            page.locator("#heat-toggle").uncheck()
            expect(heat).to_be_hidden()
            page.locator("#heat-toggle").check()
            expect(heat).to_be_visible()
        expect(page.locator("#ood")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        # Not chest X-rays, images unlike the training X-rays (as a few real ones are), or a chest X-ray the model
        # cannot read as sent: a warning with the guard's reason, and what it means, instead of the probability bar
        # and decision.
        refused = "Not a chest X-ray — no prediction made: "
        unlike = ("No prediction made: unlike the chest X-rays this model was trained on (image statistics: layout, "
                  "contrast or texture); if it is a frontal chest X-ray, read it without the model")
        for name, mime, payload, warning, box in (
                ("holiday.jpg", "image/jpeg", colour_photo(), refused + "colour image (chest X-rays are grayscale)",
                 "#ood-not-xray"),
                ("blank.png", "image/png", blank_image(), refused + "blank or nearly constant image", "#ood-not-xray"),
                ("form.png", "image/png", text_document(), unlike, "#ood-unlike"),
                ("scan.png", "image/png", dithered(), "No prediction made: binary (black-and-white) image: "
                                                      "2 grey levels; send the original radiograph", "#ood-as-sent")):
            page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": payload}])
            ood = page.locator("#ood")
            expect(ood).to_be_visible(timeout=15_000)
            expect(page.locator("#ood-text")).to_have_text(warning)
            for each in ("#ood-not-xray", "#ood-unlike", "#ood-as-sent"):  # only the box that explains this cause
                assert page.locator(each).is_visible() == (each == box), (name, each)
            expect(page.locator("#result")).to_be_visible()
            for hidden in ("#scores", "#decision", "#meter", "#prob", "#heatmap", "#error"):
                expect(page.locator(hidden)).to_be_hidden()
            expect(page.locator("#xray")).to_be_visible()  # the upload is still shown
            assert page.locator("#xray").evaluate("el => el.naturalWidth") > 0
            expect(page.locator("#heat-toggle")).to_be_disabled()
            page.screenshot(path=str(tmp_path / f"page_ood_{Path(name).stem}.png"), full_page=True)

        page.set_input_files("#file", str(xray))  # back to an X-ray: the warning goes away again
        expect(page.locator("#scores")).to_be_visible(timeout=15_000)
        expect(page.locator("#ood")).to_be_hidden()
        assert float(page.locator("#prob").inner_text()) == pytest.approx(expected.probability, abs=2e-3)

        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                              "buffer": b"not an x-ray"}])
        expect(page.locator("#error")).to_contain_text("not an image")
        expect(page.locator("#result")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "page_error.png"), full_page=True)
        assert not errors, errors
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert (tmp_path / "page_ood_holiday.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'page.png'} {tmp_path / 'page_ood_holiday.png'} {tmp_path / 'page_error.png'}")


def test_keyboard_focus_is_always_visible(server: str, sample_dir: Path) -> None:
    """Every Tab stop on the page looks different focused than blurred (WCAG 2.4.7), including the file input and,
    with a result, the heatmap toggle."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, _):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        page.locator("h1").click()
        stops: list[str] = []
        for _ in range(5):
            page.keyboard.press("Tab")
            focused = page.evaluate("document.activeElement.id || document.activeElement.tagName")
            if focused == "BODY" or focused in stops:
                break
            stops.append(focused)
            page.wait_for_timeout(400)  # let any transition of the previous stop finish
            shown = page.screenshot()
            page.evaluate("document.activeElement.blur()")
            page.wait_for_timeout(400)
            unchanged = page.screenshot() == shown
            assert not unchanged, f"keyboard focus on #{focused} is invisible"
            page.locator(f"#{focused}").focus()
        assert stops == ["auc", "card-link", "file"] + (["heat-toggle"] if HAS_GRADCAM else []), stops


NATIVE_CONTROL = "el => el.matches('input, button, select, textarea, a[href]')"


def tab_stops(page: Any, most: int = 8) -> list[str]:
    """The ids of the elements Tab visits, in order, from the top of the page until focus leaves it."""
    page.locator("h1").click()  # where sequential focus navigation starts from
    stops: list[str] = []
    for _ in range(most):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id || document.activeElement.tagName")
        if focused == "BODY" or focused in stops:
            break
        stops.append(focused)
    return stops


def test_the_keyboard_alone_chooses_a_film_and_reaches_every_control_and_only_controls(server: str,
                                                                                         sample_dir: Path) -> None:
    """The drop zone was a Tab stop of its own, before the file input that does the same: a screen reader called it
    a 'region', nothing said Enter would open a file chooser there. Now Tab goes to the notice's link to the model
    card, then to the file input (Enter or Space opens the chooser), and visits every enabled control, each a native
    one a screen reader names as such."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        assert tab_stops(page) == ["auc", "card-link", "file"]
        # a listener for the page's whole life: Playwright starts intercepting choosers when the first is added, and
        # one added by expect_file_chooser alone could come after Enter (which acts on key down) opened the chooser
        page.on("filechooser", lambda _: None)
        for key, files in (("Space", []), ("Enter", [str(xray)])):  # the first chooser is closed without a file
            page.locator("h1").click()
            for _ in range(3):
                page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "file"
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press(key)
            chooser.value.set_files(files)
        expect(page.locator("#result")).to_be_visible(timeout=15_000)

        stops = tab_stops(page)
        controls = page.evaluate("""() => [...document.querySelectorAll(
            'input, button, select, textarea, a[href], [tabindex]:not([tabindex="-1"])')]
            .filter((el) => !el.disabled && !el.closest('[hidden]')).map((el) => el.id)""")
        expected = ["auc", "card-link", "file", "heat-toggle"] if HAS_GRADCAM else ["auc", "card-link", "file"]
        assert stops == controls == expected, (stops, controls)
        for stop in stops:
            assert page.locator(f"#{stop}").evaluate(NATIVE_CONTROL), stop
        if HAS_GRADCAM:  # Space hides the heatmap and shows it again
            page.locator("#heat-toggle").focus()
            page.keyboard.press("Space")
            expect(page.locator("#heatmap")).to_be_hidden()
            page.keyboard.press("Space")
            expect(page.locator("#heatmap")).to_be_visible()
        assert not errors, errors


def test_decision_text_never_shows_probability_equal_to_threshold(server: str) -> None:
    """Near the threshold the page prints as many decimals as it takes to tell P from the threshold."""
    with chromium_page(server + "/") as (page, _):
        for p, t, positive in ((0.9775, 0.97787, False), (0.9780, 0.97787, True), (0.97786, 0.97787, False),
                               (0.40, 0.97787, False), (0.5, 0.5, True)):
            text = page.evaluate("([p, t, pos]) => decisionText(p, t, pos)", [p, t, positive])
            shown_p, shown_t = re.fullmatch(
                r"(?:Flagged|Not flagged) for pneumonia — P = ([0-9.]+), (?:at or above|below) the threshold ([0-9.]+)",
                text).groups()
            assert (shown_p == shown_t) == (p == t), text
            assert len(shown_p) == len(shown_t) and float(shown_t) == pytest.approx(t, abs=0.006), text
        assert page.evaluate("decisionText(0.40, 0.97787, false)") == \
            "Not flagged for pneumonia — P = 0.40, below the threshold 0.98"


def test_a_probability_short_of_certainty_never_reads_as_0_or_1(server: str) -> None:
    """P = 0.996 printed as "P = 1.00" reads as certainty; the page adds decimals instead."""
    with chromium_page(server + "/") as (page, _):
        cases = {(0.996, 0.62, True): "Flagged for pneumonia — P = 0.996, at or above the threshold 0.62",
                 (0.004, 0.62, False): "Not flagged for pneumonia — P = 0.004, below the threshold 0.62",
                 (0.9999996, 0.62, True): "Flagged for pneumonia — P = 1.000000, at or above the threshold 0.62",
                 (1.0, 0.62, True): "Flagged for pneumonia — P = 1.00, at or above the threshold 0.62",
                 (0.0, 0.62, False): "Not flagged for pneumonia — P = 0.00, below the threshold 0.62"}
        for (p, t, positive), text in cases.items():
            assert page.evaluate("([p, t, pos]) => decisionText(p, t, pos)", [p, t, positive]) == text
        assert page.evaluate("digitsApart(0.9996, 0.62, 3)") == 4  # the P(pneumonia) line: 0.9996, not 1.000


def test_a_confident_probability_does_not_lengthen_the_threshold(server: str) -> None:
    """P = 0.99998 needs five decimals not to read as 1; the threshold and its interval beside it took them too
    ("0.61511", "0.50685 to 0.74439"), unlike the header's and the meter's 0.62 and another film's 0.615, as if the
    threshold had changed."""
    with chromium_page(server + "/") as (page, errors):
        shown = page.evaluate("[decisionText(0.99998, 0.6151051, true), intervalText([0.5068493, 0.7443878], 0.99998), "
                              "decisionText(0.004, 0.6151051, false), decisionText(0.6151, 0.6151051, false), "
                              "digitsApart(0.99998, 0.6151051, 3)]")
        assert shown == ["Flagged for pneumonia — P = 0.99998, at or above the threshold 0.62", "0.51 to 0.74",
                         "Not flagged for pneumonia — P = 0.004, below the threshold 0.62",
                         "Not flagged for pneumonia — P = 0.61510, below the threshold 0.61511", 5]
        assert not errors, errors


def test_page_says_where_the_threshold_came_from(server: str, fitted: Path, tiny_data: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from pneumoscan.evaluation.local_threshold import set_threshold

    site = set_threshold(fitted, tiny_data, tmp_path / "site.safetensors", split="test", backend="torch", n_boot=20).out
    with serving(site) as site_server, serving(fitted, "--threshold", "0.3") as override_server, \
            chromium_page(None) as (page, _):
        for base, text in ((server, "chosen on validation data"),
                           (site_server, "chosen on this site's own 16 labelled films"),
                           (override_server, "set when this service was started")):
            page.goto(base + "/")
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            expect(page.locator("#threshold-source")).to_contain_text(text)


def test_page_states_the_operating_point_the_service_was_started_with(server: str, fitted: Path,
                                                                      sample_films: Path) -> None:
    """`serve --target-recall` and `--prevalence`: the page says where the threshold in use came from and which
    prevalence P assumes (without --prevalence: the model's prior, 50 % after class-balanced training)."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    stored = Predictor(fitted).threshold
    site = Predictor(fitted, target_recall=0.99, prevalence=0.2)
    expected = site.predict_files([xray])[0]
    with serving(fitted, "--target-recall", "0.99", "--prevalence", "0.2") as recall_server, \
            serving(fitted, "--prevalence", "0.2") as prevalence_server, chromium_page(None) as (page, errors):
        page.goto(server + "/")
        expect(page.locator("#threshold-source")).to_have_text(
            "The threshold is the model's operating point, chosen on validation data for a sensitivity of 0.95.")
        expect(page.locator("#prevalence")).to_have_text(
            "The score assumes a pneumonia prevalence of 50\u00a0%, the balance the model was trained on, not that of "
            "your patients.")
        by_hand = page.evaluate("""() => thresholdSource({...modelInfo, threshold: 0.3, operating_point: {
            ...modelInfo.operating_point, threshold: 0.3, threshold_from: "threshold", target_recall: null,
            chosen_on: null, prevalence: 0.2, prevalence_from: "prevalence"}})""")
        assert by_hand == "The threshold in use was set when this service was started."  # no raw-score threshold
        assert page.evaluate("(r) => describes(modelInfo, {...r, prevalence: 0.2})", {
            "model_sha256": page.evaluate("modelInfo.sha256.slice(0, 12)"), "threshold": page.evaluate(
                "modelInfo.threshold")}) is False  # restarted with only another prevalence: /model is read again

        page.goto(prevalence_server + "/")
        expect(page.locator("#threshold-source")).to_have_text(
            "The threshold is the model's operating point, chosen on validation data for a sensitivity of 0.95 "
            f"({stored:.2f} on the model's own scores, re-weighted with them for the prevalence below).")
        expect(page.locator("#prevalence")).to_have_text(
            "The score is re-weighted for a pneumonia prevalence of 20\u00a0%, set for the patients of this service "
            "when it was started.")
        info = {"threshold": 0.9, "stored_threshold": 0.62, "operating_point": {
            "threshold_from": "model", "prevalence_from": "prevalence"}, "test_metrics": {
            "n": 624, "threshold": 0.62, "recall": {"value": 0.982}, "specificity": {"value": 0.872}}}
        assert page.evaluate("(info) => operatingPoint(info)", info).startswith("At this threshold")  # same films
        info["operating_point"]["threshold_from"] = "threshold"
        assert page.evaluate("(info) => operatingPoint(info)", {**info, "threshold": 0.62}) == ""  # other scores

        page.goto(recall_server + "/")
        expect(page.locator("#model-line")).to_contain_text(f"threshold {site.threshold:.2f}")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        assert float(page.locator("#prob").inner_text()) == pytest.approx(expected.probability, abs=2e-3)
        expect(page.locator("#threshold-source")).to_have_text(
            "The threshold was chosen when this service was started, for a sensitivity of 0.99 on validation data.")
        expect(page.locator("#prevalence")).to_be_visible()
        expect(page.locator("#prevalence")).to_contain_text("re-weighted for a pneumonia prevalence of 20\u00a0%")
        assert not errors, errors


def slow_answers(slow: str) -> str:
    """An init script under which the answer to a /predict request reaches the page 1.5 s late when the JS function
    `slow`, called with the request's number (1 for the first), returns true; window.predictCalls counts them."""
    return f"""
      const slowAnswer = {slow};
      window.predictCalls = 0;
      const realOpen = XMLHttpRequest.prototype.open, realAdd = XMLHttpRequest.prototype.addEventListener;
      XMLHttpRequest.prototype.open = function (method, url, ...rest) {{
        if (String(url).includes("predict")) this.slow = slowAnswer(++window.predictCalls);
        return realOpen.call(this, method, url, ...rest);
      }};
      XMLHttpRequest.prototype.addEventListener = function (type, listener, ...rest) {{
        const late = (e) => (this.slow ? setTimeout(() => listener.call(this, e), 1500) : listener.call(this, e));
        return realAdd.call(this, type, type === "load" ? late : listener, ...rest);
      }};"""


def test_only_the_newest_upload_is_shown(server: str, fitted: Path, sample_films: Path) -> None:
    """A slow answer to an earlier upload never replaces the newer upload's result (the first is held back 1.5 s)."""
    from playwright.sync_api import expect

    results = Predictor(fitted).predict_files(sorted(sample_films.glob("*/*")))
    films = [Path(r.path) for r in results if r.probability is not None]  # films the guard accepts
    probs = [r.probability for r in results if r.probability is not None]
    # the two films the page can best tell apart
    first, second = films[int(np.argmax(probs))], films[int(np.argmin(probs))]
    p_second = min(probs)
    assert max(probs) - p_second > 0.01
    with chromium_page(server + "/", init_script=slow_answers("(n) => n === 1")) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("weights ")
        page.set_input_files("#file", str(first))
        page.set_input_files("#file", str(second))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        page.wait_for_timeout(2500)  # the first answer has arrived by now
        assert float(page.locator("#prob").inner_text()) == pytest.approx(p_second, abs=2e-3)
        expect(page.locator("#error")).to_be_hidden()
        page.set_input_files("#file", str(second))  # the same file again is analysed again
        expect(page.locator("#status")).to_have_text("")
        assert not errors, errors


def test_page_names_the_weights_the_heatmap_class_and_the_operating_point(server: str, fitted: Path,
                                                                         sample_films: Path) -> None:
    from playwright.sync_api import expect

    from pneumoscan.artifact import file_sha256

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    label = Predictor(fitted).predict_files([xray])[0].label
    with chromium_page(server + "/") as (page, _):
        expect(page.locator("#model-line")).to_contain_text(f"weights {file_sha256(fitted)[:12]}")
        expect(page.locator("#scope")).to_contain_text("it is not the model shipped with pneumoscan")  # the fitted one
        # the tiny model has no test figures: its validation AUC, said to be one
        expect(page.locator("#model-line")).to_contain_text(re.compile(r"AUC \d\.\d{3} on its validation set "
                                                                       r"\(no test figures\)"))
        expect(page.locator("#operating-point")).to_have_text("")  # the tiny model has no test figures
        info = {"threshold": 0.62, "test_metrics": {"n": 624, "threshold": 0.62, "recall": {"value": 0.982},
                                                    "specificity": {"value": 0.872}}}
        assert page.evaluate("(info) => operatingPoint(info)", info) == (
            "At this threshold, on its test set of 624 films from the training hospital, it flagged 98\u00a0% of "
            "pneumonia films and 13\u00a0% of normal films (sensitivity 0.98, specificity 0.87).")
        assert page.evaluate("(info) => operatingPoint(info)", {**info, "threshold": 0.5}) == ""  # overridden
        near_certain = {**info, "test_metrics": {**info["test_metrics"], "recall": {"value": 0.996},
                                                 "specificity": {"value": 0.9995}}}
        assert page.evaluate("(info) => operatingPoint(info)", near_certain) == (  # not "100 %", "1.00", "0 %"
            "At this threshold, on its test set of 624 films from the training hospital, it flagged 99.6\u00a0% of "
            "pneumonia films and 0.05\u00a0% of normal films (sensitivity 0.996, specificity 0.9995).")
        if HAS_GRADCAM:
            page.set_input_files("#file", str(xray))
            expect(page.locator("#heat-label")).to_contain_text(f"evidence for {label}", timeout=15_000)


DROP_FILES = """async ([names, url]) => {
  const dt = new DataTransfer();
  for (const name of names) dt.items.add(new File([await (await fetch(url)).blob()], name, {type: "image/jpeg"}));
  const drop = document.getElementById("drop");
  drop.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


def test_the_model_line_says_the_auc_in_words_and_what_auc_is(server: str) -> None:
    """The header said "test AUC 0.985": jargon to a clinician. It now says on which films, and "AUC" is a button
    that shows what it means under the line: its explanation was a hover tooltip, out of reach by touch and by
    keyboard."""
    from playwright.sync_api import expect

    with chromium_page(server + "/", has_touch=True) as (page, errors):
        # set before the line is written; wait_for_function's polling evals a string, which the page's CSP forbids
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        info = page.evaluate("modelInfo")
        line, term, meaning = page.locator("#model-line"), page.locator("#auc"), page.locator("#auc-meaning")
        page.evaluate("(info) => describeModel(info)", {**info, "test_metrics": {"roc_auc": {"value": 0.98512}}})
        assert re.search(r"threshold \d\.\d\d, AUC 0\.985 on its test set", line.text_content()), line.text_content()
        assert "test AUC" not in line.text_content()
        expect(term).to_have_role("button")
        expect(term).to_have_accessible_name("AUC")
        expect(term).to_have_attribute("aria-expanded", "false")
        expect(meaning).to_be_hidden()
        term.focus()
        page.keyboard.press("Enter")
        expect(meaning).to_be_visible()
        expect(meaning).to_have_text(re.compile(r"^AUC: Area under the ROC curve: how well the model's scores rank "
                                                r"pneumonia films above normal ones"))
        expect(term).to_have_attribute("aria-expanded", "true")
        page.evaluate("(info) => describeModel(info)", info)  # read again (a restart): the explanation stays open
        expect(meaning).to_be_visible()
        expect(term).to_have_attribute("aria-expanded", "true")
        term.tap()
        expect(meaning).to_be_hidden()
        expect(term).to_have_attribute("aria-expanded", "false")
        term.tap()
        expect(meaning).to_be_visible()
        page.evaluate("(info) => describeModel(info)", {**info, "test_metrics": None, "val_metrics": None})
        assert ", AUC" not in line.text_content() and page.locator("#auc").count() == 0
        expect(meaning).to_be_hidden()
        assert not errors, errors


def test_page_names_the_film_of_each_result_and_refuses_several_at_once(server: str, sample_films: Path) -> None:
    """A result says which file it is for; dropping several films analyses none of them, rather than silently
    only the first; a refused drop does not leave the page saying 'Analysing…' for an upload it cancelled."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", init_script=slow_answers("() => window.slow === true")) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#file-name")).to_have_text(xray.name, timeout=15_000)
        expect(page.locator("#file-name")).to_be_visible()
        page.set_input_files("#file", files=[{"name": "holiday photo.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(page.locator("#ood")).to_be_visible(timeout=15_000)
        expect(page.locator("#file-name")).to_have_text("holiday photo.jpg")  # a refused film is named too

        calls = page.evaluate("window.predictCalls")
        page.evaluate("window.slow = true")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("Analysing…")
        page.evaluate(DROP_FILES, [["a.jpeg", "b.jpeg"], "static/style.css"])
        expect(page.locator("#error")).to_contain_text("2 files were dropped; drop one X-ray at a time")
        expect(page.locator("#result")).to_be_hidden()
        page.wait_for_timeout(2000)  # the cancelled upload's answer would have arrived by now
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        assert page.evaluate("window.predictCalls") == calls + 1  # the dropped files were not sent
        assert not errors, errors


def test_page_says_when_the_service_does_not_answer(server: str, sample_films: Path) -> None:
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, _):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", lambda route: route.abort("connectionrefused"))  # the service has stopped
        page.set_input_files("#file", str(xray))
        # not the browser's bare "Failed to fetch", nor "check that it is running and reachable", which a doctor
        # cannot do: what happened, that the film is not at fault, and what to do
        expect(page.locator("#error")).to_have_text(
            "The pneumoscan service did not answer, so this file was not analysed (nothing is wrong with it). Try "
            "again in a minute; if it keeps failing, tell whoever runs pneumoscan at your site (IT support).",
            timeout=15_000)
        expect(page.locator("#status")).to_have_text("")


BUSY = ("server busy: uploads under way fill the 400 MB of memory set aside for them; retry in 1 s")


def busy_then(page: Any, busy_answers: int) -> list[str]:
    """/predict answers 503 with Retry-After: 1 (the service's upload memory is full) `busy_answers` times, then
    goes through; returns the list each request to /predict is noted in."""
    import json

    calls: list[str] = []

    def handle(route: Any) -> None:
        calls.append(route.request.url)
        if len(calls) <= busy_answers:
            route.fulfill(status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"},
                          content_type="application/json", body=json.dumps({"detail": BUSY}))
        else:
            route.continue_()

    page.route("**/predict*", handle)
    return calls


def predict_answered(page: Any, **answer: Any) -> list[str]:
    """/predict answered with `answer` (`route.fulfill`'s arguments) in the service's stead, every time; returns the
    list each request to /predict is noted in."""
    calls: list[str] = []

    def handle(route: Any) -> None:
        calls.append(route.request.url)
        route.fulfill(**answer)

    page.route("**/predict*", handle)
    return calls


def test_page_asks_a_busy_service_again_after_the_wait_it_names(server: str, sample_films: Path) -> None:
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = busy_then(page, busy_answers=1)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("The service is busy or restarting; trying again in 1 s…")
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#file-name")).to_have_text(xray.name)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#status")).to_have_text("")
        assert len(calls) == 2 and not errors, errors


STOPPING = ("the service is stopping and could not finish this request in time; nothing is wrong with the file, "
            "send it again")


def restart_routes(down_s: float, calls: list[str], gateway: int | None = None) -> tuple[Any, Any]:
    """Routes of POST /predict and GET /model for a service that answers the first upload 503 'send it again' after
    1 s (a restart cut it off) and then refuses connections for `down_s` seconds, as a stopped service does; with a
    `gateway` status, a hospital's proxy (nginx) answers that status in its stead meanwhile, with its HTML page."""
    down_until = [0.0]

    def down(route: Any) -> None:
        if gateway is None:
            route.abort("connectionrefused")
        else:
            route.fulfill(status=gateway, content_type="text/html", body=f"<html><h1>{gateway} nginx</h1></html>")

    def predict(route: Any) -> None:
        calls.append(route.request.url)
        if len(calls) == 1:
            down_until[0] = time.monotonic() + down_s
            route.fulfill(status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"},
                          content_type="application/json", body=json.dumps({"detail": STOPPING}))
        elif time.monotonic() < down_until[0]:
            down(route)
        else:
            route.continue_()

    def model(route: Any) -> None:
        if time.monotonic() < down_until[0]:
            down(route)
        else:
            route.continue_()

    return predict, model


def test_a_service_stopped_mid_request_is_asked_again_after_its_wait_with_the_heatmap(server: str,
                                                                                      sample_films: Path) -> None:
    """A restart (`systemctl restart`) that cut a heatmap request off answered it 503 with Retry-After and 'send it
    again'. Taking every 503 to a heatmap for heatmaps being off, the page read GET /model, which the stopped service
    did not answer, and sent the film again at once without a heatmap, to no service: 'The pneumoscan service did not
    answer' where the service's own answer had said to send it again after 5 s. The page now drops the heatmap only
    when GET /model says heatmaps are off, and otherwise waits as the answer says, then sends the film as before."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    calls: list[str] = []
    predict, model = restart_routes(0.8, calls)
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", predict)
        page.route("**/model", model)
        page.set_input_files("#file", str(xray))
        # not "busy with other uploads", as it said of every 503 that names a wait
        expect(page.locator("#status")).to_have_text("The service is busy or restarting; trying again in 1 s…")
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#file-name")).to_have_text(xray.name)
        assert len(calls) == 2 and all("explain=true" in url for url in calls) == HAS_GRADCAM, calls
        assert not errors, errors


@pytest.mark.skipif(not HAS_GRADCAM, reason="pneumoscan.explain.gradcam is not installed")
def test_the_model_line_stays_while_an_upload_waits_out_a_restart(server: str, sample_films: Path) -> None:
    """Waiting out a restart's 503, the page read GET /model, which the stopped service did not answer: the header
    said 'The pneumoscan service did not answer, so uploads will not work until it does' beside 'busy or restarting;
    trying again in 1 s', and the model's line (threshold, AUC) was gone until the result came. A failed read during
    that wait now keeps the model last read."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    calls: list[str] = []
    predict, model = restart_routes(0.8, calls)
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        line = page.locator("#model-line").text_content()
        page.route("**/predict*", predict)
        page.route("**/model", model)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("The service is busy or restarting; trying again in 1 s…")
        # read once, not waited for: the result, 1 s on, reads the model again
        assert page.locator("#model-line").text_content() == line
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        assert len(calls) == 2 and not errors, errors


@pytest.mark.parametrize("gateway", [None, 502, 504])
def test_a_restart_longer_than_its_named_wait_is_waited_out_with_the_tries_left(server: str, sample_films: Path,
                                                                                gateway: int | None) -> None:
    """A restart that took longer than the 503's named wait: the film sent again after it met no service, and the
    page said 'The pneumoscan service did not answer' with two of its three tries unused. A refused connection after
    a 503 that named a wait is now waited out as that 503 was, within the same tries; then the service's answer.
    Behind nginx the proxy answers 502 (or 504) in the stopped service's stead, and the page said 'could not be
    reached through the hospital's network or proxy' with a try unused: that too is now waited out."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    calls: list[str] = []
    predict, model = restart_routes(1.5, calls, gateway)  # still down when the film is sent again after 1 s
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", predict)
        page.route("**/model", model)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#file-name")).to_have_text(xray.name)
        assert len(calls) == 3 and not errors, (calls, errors)
        calls.clear()
        predict, model = restart_routes(30, calls, gateway)  # down longer than three tries: said, not waited for ever
        page.unroute("**/predict*")
        page.unroute("**/model")
        page.route("**/predict*", predict)
        page.route("**/model", model)
        page.set_input_files("#file", str(xray))
        said = "The pneumoscan service did not answer" if gateway is None else f"proxy answered HTTP {gateway}"
        expect(page.locator("#error")).to_contain_text(said, timeout=15_000)
        assert len(calls) == 3, calls


def test_page_says_the_service_is_busy_not_the_file_wrong(server: str, sample_films: Path) -> None:
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = busy_then(page, busy_answers=99)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(
            f"The service is busy, so this file was not analysed (nothing is wrong with it): {BUSY}", timeout=15_000)
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        assert len(calls) == 3 and not errors, errors  # three tries in all, one second apart


MODEL_FAULT = ("the model file changed since the service started (a new `train` into its folder does that), so its "
               "weights are not those predicting here; restart the service. The request was not processed (nothing "
               "is wrong with the uploaded film); the service's log names the model file at request id abc123")


@pytest.mark.parametrize("explain", [False, True])
def test_a_503_without_retry_after_is_said_a_fault_of_the_service_at_once_not_busy(server: str, sample_dir: Path,
                                                                                    explain: bool) -> None:
    """A 503 without Retry-After (the model file changed or removed, damaged weights, the audit log) was sent twice
    more, 5 s apart, and then called 'busy ... (nothing is wrong with it)': waiting changes nothing, IT must act."""
    import json

    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = predict_answered(page, status=503, content_type="application/json",
                                 body=json.dumps({"detail": MODEL_FAULT}))
        if not explain:
            page.evaluate("modelInfo.explain_available = false")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(
            "The service has a problem of its own, so this file was not analysed (nothing is wrong with it); tell "
            f"whoever runs pneumoscan (IT support): {MODEL_FAULT}", timeout=4_000)  # not after 5 s of 'busy'
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        page.wait_for_timeout(500)
        assert [("explain=true" in url) for url in calls] == [explain], calls  # sent once
        assert not errors, errors


NGINX_503 = ("<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 "
             "Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


@pytest.mark.parametrize(("status", "content_type", "body", "explain"), [
    (503, "text/html", NGINX_503, True), (503, "text/html", NGINX_503, False), (503, "text/plain", "", False),
    (502, "text/html", NGINX_503.replace("503 Service Temporarily Unavailable", "502 Bad Gateway"), False),
    (504, "text/plain", "", False)])
def test_a_proxys_error_is_said_the_network_not_the_service(server: str, sample_dir: Path, status: int,
                                                            content_type: str, body: str, explain: bool) -> None:
    """A reverse proxy's 503 (nginx's HTML page, or an empty body) was called 'The service has a problem of its own',
    and its 502 or 504 'Could not analyse this file: request failed': the service's own errors are JSON with a
    `detail`, and anything else means the hospital's network could not reach it."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = predict_answered(page, status=status, content_type=content_type, body=body)
        if not explain:
            page.evaluate("modelInfo.explain_available = false")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(
            "The pneumoscan service could not be reached through the hospital's network or proxy, so this file was "
            "not analysed (nothing is wrong with it). Try again in a minute; if it keeps failing, tell IT support (the "
            f"network or proxy answered HTTP {status} in place of the service).", timeout=4_000)
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        expect(page.locator("#model-line")).to_contain_text("resnet10")  # the model was not read again
        page.wait_for_timeout(500)
        assert [("explain=true" in url) for url in calls] == [explain], calls  # sent once
        assert not errors, errors


NGINX_413 = ("<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request "
             "Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
NOT_ANALYSED = "so this file was not analysed (nothing is wrong with it)."


def proxy_limit_mb(settings: Settings) -> int:
    """The least whole-MB proxy limit that passes every request SETTINGS' service takes: a full /predict/batch body,
    and a /predict body of one file at the per-file limit with its multipart envelope."""
    return math.ceil(max(settings.max_batch_bytes, settings.max_upload_bytes + ENVELOPE) / MB)


@pytest.mark.parametrize(("status", "content_type", "body", "says"), [
    (413, "text/html", NGINX_413, "The hospital's network or proxy refused this file as too large before it reached "
     f"the pneumoscan service, {NOT_ANALYSED} Tell IT support: the proxy's upload limit must be at "
     "least {mb} MB (nginx: client_max_body_size {mb}m), the largest request the service takes."),
    (403, "text/html", "<html>Forbidden</html>", "The hospital's network or proxy did not let this upload through "
     f"(HTTP 403), {NOT_ANALYSED} Reload the page, sign in if asked, and choose the file again; if it keeps failing, "
     "tell IT support."),
    (404, "text/plain", "", f"The hospital's network or proxy answered HTTP 404 in place of the pneumoscan service, "
     f"{NOT_ANALYSED} Try again in a minute; if it keeps failing, tell IT support (HTTP 404)."),
    (413, "application/json", json.dumps({"detail": "film.dcm: 30000 x 30000 px is too large"}),
     "Could not analyse this file: film.dcm: 30000 x 30000 px is too large"),  # the service's own: its sentence
])
def test_a_proxys_refusal_says_what_happened_and_what_to_do(server: str, sample_dir: Path, status: int,
                                                           content_type: str, body: str, says: str) -> None:
    """nginx refuses bodies over 1 MB unless told otherwise, less than one DICOM film: its 413 page, and an expired
    sign-in's 403, read "Could not analyse this file: request failed (HTTP 413)"."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        predict_answered(page, status=status, content_type=content_type, body=body)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(says.format(mb=proxy_limit_mb(Settings())), timeout=4_000)
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        assert not errors, errors


def test_the_proxy_limit_asked_for_follows_the_services_limits_and_passes_both_endpoints(fitted: Path) -> None:
    """A proxy's 413 told IT support the limit "must be at least the service's 50 MB", the per-file limit, while the
    docs asked for 100m, the batch limit: a proxy at 50m turned away every /predict/batch over 50 MB, and a proxy at
    --max-upload-mb 150's 150m a 150 MB film's /predict, whose body carries the file and its multipart envelope. The
    page and the docs now ask for the same figure, which passes every request the service takes: GET /model's
    max_request_mb, exactly (the page added 1 MB for the envelope, 102m for --max-upload-mb 100.5, whose largest
    request is 100.0625 MB); from an older service without it, at most 1 MB more."""
    def older(settings: Settings) -> dict[str, float]:  # the limits as an older service's GET /model gives them
        return {"max_upload_mb": settings.max_upload_mb, "max_batch_mb": settings.batch_limit_mb}

    from playwright.sync_api import expect

    with serving(fitted, "--max-upload-mb", "100.5") as base, chromium_page(base + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")  # GET /model answered
        served = Settings(max_upload_mb=100.5)
        assert page.evaluate("modelInfo.max_upload_mb") == 100.5
        assert page.evaluate("modelInfo.max_request_mb") == (int(100.5 * MB) + ENVELOPE) / MB
        assert proxy_limit_mb(served) == 101
        assert "at least 101 MB (nginx: client_max_body_size 101m)" in page.evaluate("proxyRefused(413, modelInfo)")
        for settings in (Settings(), served, Settings(max_upload_mb=150), Settings(max_upload_mb=99.97),
                         Settings(max_upload_mb=99.5), Settings(max_upload_mb=2, max_batch_mb=7.5)):
            current = {**older(settings), "max_request_mb": settings.max_request_bytes / MB}
            assert page.evaluate("(info) => proxyLimitMb(info)", current) == proxy_limit_mb(settings), settings
            asked = page.evaluate("(info) => proxyLimitMb(info)", older(settings))
            assert proxy_limit_mb(settings) <= asked <= proxy_limit_mb(settings) + 1, (settings, asked)
        assert page.evaluate("proxyRefused(413, null)").endswith(
            "the proxy's upload limit (nginx's client_max_body_size) must be at least the largest request the service "
            "takes.")
        assert not errors, errors
    docs = (Path(__file__).parents[2] / "docs" / "service.md").read_text()
    assert f"`client_max_body_size {proxy_limit_mb(Settings())}m;`" in docs  # the default service's, as the page says


def test_a_proxys_503_with_retry_after_is_waited_out_as_the_network_not_a_busy_service(server: str,
                                                                                      sample_dir: Path) -> None:
    """A proxy's 503 page that names a wait (a maintenance page, a load balancer) was waited out as 'The service is
    busy with other uploads': it is asked again after the wait, said as the network or proxy from the start."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = predict_answered(page, status=503, headers={"Retry-After": "1"}, content_type="text/html",
                                 body=NGINX_503)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("The service could not be reached through the hospital's "
                                                     "network or proxy; trying again in 1 s…")
        expect(page.locator("#error")).to_have_text(
            "The pneumoscan service could not be reached through the hospital's network or proxy, so this file was "
            "not analysed (nothing is wrong with it). Try again in a minute; if it keeps failing, tell IT support (the "
            "network or proxy answered HTTP 503 in place of the service).", timeout=15_000)
        expect(page.locator("#status")).to_have_text("")
        assert len(calls) == 3 and not errors, (calls, errors)  # three tries in all, one second apart


def test_a_newer_upload_stops_the_wait_for_a_busy_service(server: str, sample_films: Path) -> None:
    from playwright.sync_api import expect

    first, second = sorted((sample_films / "PNEUMONIA").iterdir())[:2]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        calls = busy_then(page, busy_answers=1)
        page.set_input_files("#file", str(first))
        expect(page.locator("#status")).to_contain_text("trying again in 1 s")
        page.set_input_files("#file", str(second))
        expect(page.locator("#file-name")).to_have_text(second.name, timeout=15_000)
        page.wait_for_timeout(1500)  # past the first upload's retry time: it must not be sent again
        expect(page.locator("#file-name")).to_have_text(second.name)
        assert len(calls) == 2 and not errors, errors


def test_page_says_a_stalled_upload_is_the_connection_not_the_file(server: str, sample_films: Path) -> None:
    import json

    from playwright.sync_api import expect

    stalled = "upload stalled: no data for 30 s; check the connection and send the file again"
    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", lambda route: route.fulfill(
            status=408, headers={"Connection": "close", "Cache-Control": "no-store"},
            content_type="application/json", body=json.dumps({"detail": stalled})))
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(
            "The upload did not reach the service in full, so this file was not analysed (nothing is wrong with it): "
            + stalled, timeout=15_000)
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#result")).to_be_hidden()
        assert not errors, errors


class Link:
    """A TCP relay on loopback between the browser and the service that plays the network of one upload: it can
    stop passing anything either way once `cut_after` bytes of a POST /predict went up (the connection dropped),
    pass the upload at `rate` bytes/s (a slow link), or never pass the answer to a POST (`mute_answers`)."""

    def __init__(self, target: str, *, cut_after: int | None = None, rate: int | None = None,
                 mute_answers: bool = False) -> None:
        import asyncio
        import threading

        self.target_port = int(target.rsplit(":", 1)[1])
        self.cut_after, self.rate, self.mute_answers = cut_after, rate, mute_answers
        self.posted = 0  # bytes of POST requests passed up so far
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no 32 MB of kernel buffer to hide a cut
        listener.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        self.server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._relay, sock=listener),
                                                       self.loop).result()

    async def _relay(self, client_in: Any, client_out: Any) -> None:
        import asyncio

        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"posting": False, "cut": False}

        async def up() -> None:
            while data := await client_in.read(16 * 1024):
                state["posting"] = state["posting"] or b"POST " in data
                if state["posting"]:
                    self.posted += len(data)
                    if self.cut_after is not None and self.posted > self.cut_after:
                        state["cut"] = True
                        await asyncio.sleep(3600)
                    if self.rate:
                        await asyncio.sleep(len(data) / self.rate)
                server_out.write(data)
                await server_out.drain()

        async def down() -> None:
            while data := await server_in.read(64 * 1024):
                if state["cut"] or (self.mute_answers and state["posting"]):
                    await asyncio.sleep(3600)
                client_out.write(data)
                await client_out.drain()

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # close(): ended quietly (asyncio logs the error of a relay task that ends cancelled)
        finally:
            client_out.close()
            server_out.close()

    def close(self) -> None:
        """Stop relaying: every connection is closed and the relay's thread ends."""
        import asyncio

        async def shut() -> None:
            self.server.close()
            relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def quick_idle_server(fitted: Path) -> Iterator[str]:
    """`pneumoscan serve` that drops an upload after 2 s without data (so the page gives up on one after 2 s)."""
    with serving(fitted, "--upload-idle-s", "2") as base:
        yield base


def test_page_says_an_upload_stalled_when_the_connection_drops(quick_idle_server: str, tmp_path: Path) -> None:
    """The network dropped mid-upload: nothing reached the page for minutes (neither the browser nor the service's
    408 can tell it), and it said 'Analysing…' the while. No upload progress for the service's idle time (15 s at
    most) is now said to be a stall, with what to do."""
    from playwright.sync_api import expect

    film = tmp_path / "film.png"
    film.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(12 * 1024 * 1024))
    link = Link(quick_idle_server, cut_after=1024 * 1024)
    try:
        with chromium_page(link.url) as (page, errors):
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            start = time.monotonic()
            page.set_input_files("#file", str(film))
            expect(page.locator("#error")).to_have_text(
                "The upload stalled: nothing more of the file could be sent for 2 s (the network connection has "
                "probably dropped), so this file was not analysed (nothing is wrong with it). Check the network "
                "connection, then choose the file again.", timeout=20_000)
            assert time.monotonic() - start < 15
            expect(page.locator("#status")).to_have_text("")
            expect(page.locator("#result")).to_be_hidden()
            assert not errors, errors
    finally:
        link.close()


def test_a_slow_upload_that_keeps_moving_is_analysed_and_shows_its_progress(quick_idle_server: str) -> None:
    """A large DICOM over a slow link takes many times the stall limit; while it moves it is not given up, and
    the page says how much of it was sent."""
    from playwright.sync_api import expect

    pixels = np.random.default_rng(1).integers(0, 4096, (2400, 2400), dtype=np.uint16)
    film = dicom_bytes(pixels, bits_stored=12)  # 11 MB at 1 MB/s: 7 s or more after the browser's 4 MB of socket
    link = Link(quick_idle_server, rate=1024 * 1024)  # buffer filled, over three times the 2 s limit
    try:
        with chromium_page(link.url) as (page, errors):
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            page.set_input_files("#file", files=[{"name": "film.dcm", "mimeType": "application/dicom",
                                                  "buffer": film}])
            expect(page.locator("#status")).to_contain_text(re.compile(r"Uploading… \d+\u00a0% sent"), timeout=10_000)
            expect(page.locator("#file-name")).to_have_text("film.dcm", timeout=30_000)
            expect(page.locator("#result")).to_be_visible()
            expect(page.locator("#error")).to_be_hidden()
            assert link.posted > len(film) and not errors, errors
    finally:
        link.close()


# What screen readers are given to read: each new text of a live region (aria-live, role status or alert), without
# what is aria-hidden or hidden, as "id: text" in window.heard; and each text the status shows, in window.shown.
HEARD = """
  window.heard = [];
  window.shown = [];
  const said = (node) => node.nodeType === Node.TEXT_NODE ? node.textContent
    : node.nodeType === Node.ELEMENT_NODE && node.getAttribute("aria-hidden") !== "true" && !node.hidden
      ? [...node.childNodes].map(said).join("") : "";
  document.addEventListener("DOMContentLoaded", () => {
    const regions = [...document.querySelectorAll("[aria-live], [role=status], [role=alert]")];
    const last = new Map(regions.map((el) => [el, said(el).trim()]));
    const status = document.getElementById("status");
    let showing = status.textContent;
    new MutationObserver(() => {
      for (const el of regions) {
        const text = said(el).trim();
        if (text !== last.get(el) && text) window.heard.push(`${el.id}: ${text}`);
        last.set(el, text);
      }
      if (status.textContent !== showing) window.shown.push(showing = status.textContent);
    }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  });"""

# An upload of 3.2 MB as a slow link reports it: 1 % every 20 ms, then the real (small) file goes out; or, with
# window.stopAt set, no more progress after that share and nothing sent (the connection dropped).
SLOW_PROGRESS = """
  const realSend = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (...args) {
    const total = 100 * 32768, stop = window.stopAt ?? 100;
    for (let k = 0; k <= stop; k++) {
      setTimeout(() => this.upload.dispatchEvent(new ProgressEvent("progress",
        {lengthComputable: true, loaded: 32768 * k, total})), 20 * k);
    }
    if (stop === 100) setTimeout(() => realSend.apply(this, args), 20 * 101);
  };"""


def test_a_slow_upload_is_shown_by_the_percent_but_read_out_by_the_quarter(quick_idle_server: str,
                                                                          sample_dir: Path) -> None:
    """The status, a live region, changed with every percent of a large upload, which a screen reader may read out
    each time. The share sent is still shown every percent, but read out only at the start, at each quarter and
    when sent ('Analysing…'), and a stall is read out as the error, nothing after it."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(quick_idle_server + "/", init_script=HEARD + SLOW_PROGRESS) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        decision = page.locator("#decision").inner_text()
        assert page.evaluate("window.heard") == [
            "status: Analysing…", *(f"announce: Uploading… {k}\u00a0% sent" for k in (0, 25, 50, 75)),
            "status: Analysing…", f"announce: Result for {xray.name}: {decision}"]
        shown = page.evaluate("window.shown")
        sending = [f"Uploading… {k}\u00a0% sent" for k in range(100)]
        assert shown == ["Analysing…", *sending, "Analysing…", ""], shown

        page.evaluate("window.heard = []; window.stopAt = 40")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("Uploading… 40\u00a0% sent", timeout=15_000)  # then 2 s to the stall
        assert "%" not in page.locator("#status").aria_snapshot()  # shown, but not in the accessibility tree
        expect(page.locator("#error")).to_contain_text("The upload stalled: nothing more of the file could be sent "
                                                       "for 2 s", timeout=15_000)
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#announce")).to_have_text("")
        assert page.evaluate("window.heard") == [
            "status: Analysing…", "announce: Uploading… 0\u00a0% sent", "announce: Uploading… 25\u00a0% sent",
            f"error: {page.locator('#error').inner_text()}"]
        assert not errors, errors


def test_page_says_when_no_answer_comes_after_the_upload(server: str, sample_films: Path) -> None:
    """The whole file went out but the answer never comes back (the connection dropped after the upload): the page
    says so 30 s after the file was sent, not never."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    link = Link(server, mute_answers=True)
    try:
        with chromium_page(None) as (page, errors):
            page.clock.install()
            page.goto(link.url)
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            page.set_input_files("#file", str(xray))
            deadline = time.monotonic() + 10
            while link.posted < xray.stat().st_size and time.monotonic() < deadline:
                time.sleep(0.05)
            page.wait_for_timeout(500)  # the browser notes the upload as sent
            page.clock.run_for(29_000)
            expect(page.locator("#error")).to_be_hidden()
            page.clock.run_for(2_000)
            expect(page.locator("#error")).to_have_text(
                "No answer came within 30 s of sending the file (the network connection may have dropped, or the "
                "service is overloaded), so this file was not analysed (nothing is wrong with it). Check the network "
                "connection, then choose the file again.")
            expect(page.locator("#status")).to_have_text("")
            assert not errors, errors
    finally:
        link.close()


@contextlib.contextmanager
def uvicorn_in_thread(app: object, **config: object) -> Iterator[int]:
    """uvicorn serving APP on a free loopback port in a thread (CONFIG: more uvicorn.Config options, log_level
    "warning" unless given); yields the
    port once it is up and stops the server afterwards."""
    import threading

    import uvicorn

    config = {"log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), **config))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield server.config.port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def serving_under(prefix: str, model: Path) -> Iterator[str]:
    """The service mounted under PREFIX, as a prefix-stripping proxy publishes it, by uvicorn in a thread;
    yields the page's URL."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from pneumoscan.service.app import create_app
    from pneumoscan.service.settings import Settings

    site = Starlette(routes=[Mount(prefix, app=create_app(Settings(model=str(model), backend="onnx")))])
    with uvicorn_in_thread(site) as port:
        yield f"http://127.0.0.1:{port}{prefix}/"


def test_page_works_behind_a_proxy_that_serves_it_under_a_path(fitted: Path, sample_films: Path) -> None:
    """A hospital proxy publishing the service at https://host/pneumoscan/ (prefix stripped): the page's own
    requests must stay under that path, not go to the proxy's root."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with serving_under("/pneumoscan", fitted) as url, chromium_page(None) as (page, _):
        outside: list[str] = []
        page.on("request", lambda req: outside.append(req.url) if req.url.startswith("http://") and
                "/pneumoscan/" not in req.url and not req.url.endswith("/favicon.ico") else None)
        page.goto(url)
        expect(page.locator("#model-line")).to_contain_text("resnet10", timeout=15_000)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        assert not outside, outside
        assert page.locator("#card-link").evaluate("el => el.href") == url + "model/card"


def test_a_threshold_equal_to_a_confident_probability_is_printed_as_p_is(server: str) -> None:
    """P equal to the threshold near 0 or 1 took more decimals not to read as certain, the threshold beside it did
    not: "P = 0.9995, at or above the threshold 1.00" and, in the figures, 0.99999 against a threshold of 1.000."""
    with chromium_page(server + "/") as (page, errors):
        shown = page.evaluate("[decisionText(0.9995, 0.9995, true), decisionText(0.00001, 0.00001, true), "
                              "decisionText(0.99999, 0.99999, true)]")
        assert shown == ["Flagged for pneumonia — P = 0.9995, at or above the threshold 0.9995",
                         "Flagged for pneumonia — P = 0.00001, at or above the threshold 0.00001",
                         "Flagged for pneumonia — P = 0.99999, at or above the threshold 0.99999"]
        for p in (0.9995, 0.00001, 0.99999):
            page.evaluate("(answer) => render(answer, 'film.png')", {**ANSWER, "probability": p, "threshold": p})
            prob, threshold = page.locator("#prob").inner_text(), page.locator("#threshold").inner_text()
            assert prob == threshold and float(prob) == p, (p, prob, threshold)
        assert not errors, errors


def test_a_probability_next_to_a_threshold_near_0_or_1_never_prints_as_it(server: str) -> None:
    """P = 0.99949 against a threshold of 0.9995 printed apart at 3 decimals only because the threshold rounded to
    1.000; the decimal added for that was not checked again: "P = 0.9995, below the threshold 0.9995". Now P and
    the threshold print apart, and neither as 0 or 1, in the decision line, the figures and the meter."""
    with chromium_page(server + "/") as (page, errors):
        for p, t, positive, decision in ((0.99949, 0.9995, False, "P = 0.99949, below the threshold 0.99950"),
                                         (0.00051, 0.0005, True, "P = 0.00051, at or above the threshold 0.00050"),
                                         (0.00049, 0.0005, False, "P = 0.00049, below the threshold 0.00050")):
            assert page.evaluate("([p, t, pos]) => decisionText(p, t, pos)", [p, t, positive]).endswith(decision)
            page.evaluate("(answer) => render(answer, 'film.png')", {**ANSWER, "probability": p, "threshold": t})
            prob, threshold = page.locator("#prob").inner_text(), page.locator("#threshold").inner_text()
            assert float(prob) != float(threshold) and 0 < float(threshold) < 1, (p, t, prob, threshold)
            assert page.locator("#marker-label").inner_text() == f"threshold {decision.split()[-1]}"
        assert not errors, errors


def test_the_meter_never_shows_a_threshold_short_of_certainty_as_0_or_1(server: str) -> None:
    """The meter's label printed the threshold with 2 decimals whatever it was: "threshold 1.00" for 0.9995 (above
    every P), while the figures beside it said 0.9995; its aria-valuenow gave P with 3, "1.000" for P = 0.9996. Both
    now take the decimals the decision line and the figures use."""
    with chromium_page(server + "/") as (page, errors):
        for p, t, label in ((0.5, 0.9995, "threshold 0.9995"), (0.5, 0.00001, "threshold 0.00001"),
                            (0.9995, 0.9995, "threshold 0.9995"), (0.99998, 0.6151051, "threshold 0.62"),
                            (0.9, 0.5, "threshold 0.50"), (0.5, 1.0, "threshold 1.00"),
                            (0.9996, 0.62, "threshold 0.62")):
            page.evaluate("(answer) => render(answer, 'film.png')", {**ANSWER, "probability": p, "threshold": t})
            assert page.locator("#marker-label").inner_text() == label, (p, t)
            decision_t = re.search(r"the threshold ([0-9.]+)$", page.locator("#decision").inner_text()).group(1)
            assert label == f"threshold {decision_t}", (p, t)  # the meter says what the decision line says
            assert page.locator("#meter").get_attribute("aria-valuenow") == page.locator("#prob").inner_text(), (p, t)
        assert page.locator("#meter").get_attribute("aria-valuenow") == "0.9996"
        assert not errors, errors


LIVE = "el => Boolean(el.closest('[aria-live=polite], [aria-live=assertive], [role=status], [role=alert]')) && " \
       "getComputedStyle(el).display !== 'none' && el.getClientRects().length > 0"


def test_screen_readers_hear_the_result_and_the_meter_reads_its_value(server: str, sample_films: Path) -> None:
    """The result panel is not a live region: a screen reader heard 'Analysing…' and then nothing. A live region
    now says which file and what the decision (or refusal) is; the meter reads P and the threshold, not the
    marker's text. The film and the heatmap are named by the file they show, the heatmap by what it shows."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        decision = page.locator("#decision").inner_text()
        spoken = page.locator("#announce")
        expect(spoken).to_have_text(f"Result for {xray.name}: {decision}")
        assert spoken.evaluate(LIVE)
        prob, threshold = page.locator("#prob").inner_text(), page.locator("#threshold").inner_text()
        expect(page.locator("#meter")).to_have_attribute("aria-valuetext", f"{prob}, threshold {threshold}")
        # what a screen reader finds reading on from the meter: its scale was read as the bare text "0 0.5 1"
        assert "0 0.5 1" not in page.locator("#scores").aria_snapshot()
        expect(page.locator("#xray")).to_have_accessible_name(f"The uploaded image, {xray.name}")
        if HAS_GRADCAM:
            expect(page.locator("#heatmap")).to_have_accessible_name(re.compile(
                f"^Grad-CAM heatmap of {re.escape(xray.name)}: where the model saw evidence for (NORMAL|PNEUMONIA)$"))

        page.set_input_files("#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(spoken).to_have_text("Result for holiday.jpg: Not a chest X-ray — no prediction made: colour image "
                                    "(chest X-rays are grayscale)", timeout=15_000)
        # its text alternative was "uploaded chest X-ray", beside the warning that it is not one
        expect(page.locator("#xray")).to_have_accessible_name("The uploaded image, holiday.jpg")
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                              "buffer": b"not an x-ray"}])
        expect(page.locator("#error")).to_contain_text("not an image", timeout=15_000)
        expect(spoken).to_have_text("")  # the error is the alert; no earlier result is read out for this file
        assert not errors, errors


def test_on_a_phone_the_decision_is_on_screen_when_the_result_comes(server: str, sample_films: Path) -> None:
    """At 375 x 667 the result began below the upload button, the decision under a 330 px film: the clinician
    saw nothing happen. The decision now comes above the film and the page scrolls it into view."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 375, "height": 667}, is_mobile=True,
                       has_touch=True) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.locator("label.button").scroll_into_view_if_needed()  # where the clinician's thumb is
        for upload in (str(xray), {"name": "holiday.jpg", "mimeType": "image/jpeg", "buffer": colour_photo()}):
            page.set_input_files("#file", upload)
            expect(page.locator("#result")).to_be_visible(timeout=15_000)
            page.wait_for_timeout(300)
            verdict = page.locator("#ood-text" if isinstance(upload, dict) else "#decision").bounding_box()
            assert verdict and 0 <= verdict["y"] and verdict["y"] + verdict["height"] <= 667, verdict
            film = page.locator(".viewer").bounding_box()
            assert film and verdict["y"] < film["y"], (verdict, film)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing runs off the side
        assert not errors, errors


ON_SCREEN = "(el) => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight + 1; }"


def test_on_a_phone_the_analysing_status_and_an_error_are_on_screen(server: str, sample_films: Path) -> None:
    """On a phone the status and the error come below the upload button, off the screen: a refused file, a service
    that did not answer or a slow analysis looked like a page that did nothing. Both are now scrolled into view."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "NORMAL").iterdir())[0]
    held: list[Any] = []
    with chromium_page(server + "/", viewport={"width": 390, "height": 700}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", lambda route: held.append(route))  # no answer yet: the analysis is under way
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("Analysing…")
        assert page.locator("#status").evaluate(ON_SCREEN)
        page.unroute("**/predict*")
        page.route("**/predict*", lambda route: route.abort("connectionrefused"))
        for files in ([str(xray)],  # the service does not answer, then it refuses a file that is not an image
                      [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}]):
            page.evaluate("scrollTo(0, 0)")
            page.set_input_files("#file", files)
            expect(page.locator("#error")).to_be_visible(timeout=15_000)
            assert page.locator("#error").evaluate(ON_SCREEN), files
            page.unroute("**/predict*")
        expect(page.locator("#error")).to_contain_text("not an image file")
        assert not errors, errors


def test_on_a_wide_screen_the_film_stays_left_of_the_result(server: str, sample_films: Path) -> None:
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, _):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        film, panel = page.locator(".viewer").bounding_box(), page.locator("#panel").bounding_box()
        assert film and panel and film["x"] + film["width"] <= panel["x"] and abs(film["y"] - panel["y"]) < 1


def test_page_follows_a_service_restarted_with_another_threshold(fitted: Path, sample_films: Path) -> None:
    """The page read GET /model once: after a restart with another threshold (or weights) it went on describing the
    old one (threshold, operating point, where the threshold came from) above results of the new one."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    stored = Predictor(fitted).threshold
    override = 0.3 if abs(stored - 0.3) > 0.05 else 0.7
    port = free_port()
    with chromium_page(None) as (page, errors):
        with serving(fitted, port=port) as base:
            page.goto(base + "/")
            expect(page.locator("#model-line")).to_contain_text(f"threshold {stored:.2f}")
            expect(page.locator("#threshold-source")).to_contain_text("chosen on validation data")
        with serving(fitted, "--threshold", str(override), port=port):
            page.set_input_files("#file", str(xray))
            expect(page.locator("#result")).to_be_visible(timeout=15_000)
            expect(page.locator("#decision")).to_contain_text(f"threshold {override:.2f}")
            expect(page.locator("#model-line")).to_contain_text(f"threshold {override:.2f}")
            expect(page.locator("#threshold-source")).to_contain_text("set when this service was started")
        assert not errors, errors


def test_page_reads_the_model_again_when_it_could_not_at_first(server: str, sample_films: Path) -> None:
    """GET /model failed as the page opened (a restart, a proxy hiccup): the page then never asked for heatmaps and
    said 'Heatmap not available for this model', nor knew the upload limit. It now asks again at the next upload."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(None) as (page, errors):
        refused: list[str] = []

        def first_refused(route: Any) -> None:
            if refused:
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort("connectionrefused")

        page.route("**/model", first_refused)
        page.goto(server + "/")
        # not a grey "Model information unavailable.": what happened, what it means and what to do, in the words
        # of an upload that got no answer
        expect(page.locator("#model-line")).to_have_text(
            "The pneumoscan service did not answer, so uploads will not work until it does. Try again in a minute; "
            "if it keeps failing, tell whoever runs pneumoscan at your site (IT support).")
        assert page.locator("#model-line").evaluate("el => getComputedStyle(el).color") == \
            page.locator("body").evaluate("el => getComputedStyle(el).color")  # the ink's colour, not the muted grey
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        if HAS_GRADCAM:
            expect(page.locator("#heatmap")).to_be_visible()
        assert not errors, errors


def test_the_page_asks_the_service_to_load_grad_cam_once_it_has_opened(server: str) -> None:
    """Fetching the page (GET /) no longer loads PyTorch, so that an uptime monitor's GET does not: the page's script,
    run in a doctor's browser, asks for it (POST /warm-up), so the first heatmap still does not wait for the load."""
    from playwright.sync_api import expect

    with chromium_page(None) as (page, errors):
        with page.expect_request(lambda request: request.url.endswith("/warm-up")) as asked:
            page.goto(server + "/")
        assert asked.value.method == "POST" and asked.value.response().status == 202
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        assert not errors, errors


def test_page_asks_for_heatmaps_again_once_the_service_tries_them_again(server: str, sample_films: Path) -> None:
    """Heatmaps were off because the service ran out of memory loading Grad-CAM, for 30 s: the page, which had read
    `explain_available: false`, never asked for one again until it was reloaded."""
    import json

    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(None) as (page, errors):
        models: list[str] = []

        def model(route: Any) -> None:
            models.append(route.request.url)
            info = route.fetch().json()
            if len(models) == 1:  # as the page opened: off, tried again now
                info.update(explain_available=False, explain_retry_s=0, explain_problem="Grad-CAM's torch model could "
                            "not be loaded for lack of memory (MemoryError: ); predictions are not affected")
            route.fulfill(status=200, content_type="application/json", body=json.dumps(info))

        page.route("**/model", model)
        page.goto(server + "/")
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        with page.expect_request(lambda request: "/predict" in request.url) as asked:
            page.set_input_files("#file", str(xray))
        assert "explain=true" in asked.value.url and len(models) == 2
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        assert not errors, errors


def test_a_heatmap_refused_after_a_restart_does_not_cost_the_result(server: str, sample_films: Path) -> None:
    """Restarted with a model Grad-CAM cannot explain, the service answers ?explain=true with 501: the page asks
    again without a heatmap instead of showing the 501 as the file's error."""
    import json

    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("modelInfo.explain_available = true")  # what the page knew of the model before the restart
        asked: list[str] = []

        def handle(route: Any) -> None:
            asked.append(route.request.url)
            if "explain=true" in route.request.url:
                route.fulfill(status=501, content_type="application/json", body=json.dumps(
                    {"detail": "Grad-CAM heatmaps are not available for this model or installation; retry without "
                               "?explain=true"}))
            else:
                route.continue_()

        page.route("**/predict*", handle)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        assert [url.rsplit("?", 1)[1] for url in asked] == ["explain=true", "explain=false"]
        assert not errors, errors


def test_a_heatmap_backing_off_after_running_out_of_memory_does_not_cost_the_result(server: str,
                                                                                    sample_films: Path) -> None:
    """While heatmaps are off for a while (memory ran short loading Grad-CAM's model), ?explain=true is answered 503
    with Retry-After: the page asks again at once without a heatmap, and says why there is none, rather than waiting
    as for a busy service."""
    import json

    from playwright.sync_api import expect

    problem = ("Grad-CAM's torch model could not be loaded for lack of memory (MemoryError: ); predictions are not "
               "affected. Heatmaps will be tried again in 24 s, at 12:34:56 UTC")
    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("modelInfo.explain_available = true")  # what the page knew before the load ran short
        asked: list[str] = []

        def model(route: Any) -> None:
            info = route.fetch().json()
            info.update(explain_available=False, explain_retry_s=24, explain_problem=problem)
            route.fulfill(status=200, content_type="application/json", body=json.dumps(info))

        def predict(route: Any) -> None:
            asked.append(route.request.url)
            if "explain=true" in route.request.url:
                route.fulfill(status=503, content_type="application/json", headers={"Retry-After": "24"},
                              body=json.dumps({"detail": f"Grad-CAM heatmaps are not available for this model or "
                                                         f"installation ({problem}); retry without ?explain=true"}))
            else:
                route.continue_()

        page.route("**/model", model)
        page.route("**/predict*", predict)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=10_000)  # not after Retry-After's 24 s
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#heat-label")).to_contain_text("for lack of memory")
        assert [url.rsplit("?", 1)[1] for url in asked] == ["explain=true", "explain=false"]
        assert not errors, errors


def test_a_200_that_is_not_a_result_is_said_so(server: str, sample_films: Path) -> None:
    """Behind an authenticating proxy whose session has run out, /predict answers 200 with a sign-in page: the page
    said 'Could not analyse this file: Cannot read properties of undefined (reading 'toFixed')'."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.route("**/predict*", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<html><body>Please sign in</body></html>"))
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_have_text(
            "Could not analyse this file: the answer was not a pneumoscan result (perhaps a sign-in page of the "
            "hospital's proxy); reload the page, sign in if asked, and try again", timeout=15_000)
        expect(page.locator("#result")).to_be_hidden()
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#model-line")).to_contain_text("resnet10")  # the model description is kept
        assert not errors, errors


def test_a_heatmap_answered_before_the_browser_gives_up_on_a_dicom_preview_is_still_shown_whole(server: str) -> None:
    """Without a browser preview (DICOM, TIFF) the heatmap is the only picture and is laid out in the flow. That was
    decided when the answer came: an answer faster than the browser's failed decode of the file left the heatmap
    laid over a collapsed frame, drawn over the 'cannot be shown' note."""
    import base64
    import io

    from PIL import Image
    from playwright.sync_api import expect

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
    answer = {"probability": 0.2, "label": "NORMAL", "in_distribution": True, "ood_reason": None, "threshold": 0.5,
              "model_name": "resnet10", "model_version": "0", "model_sha256": "0" * 12, "latency_ms": 5.0,
              "heatmap_png_base64": base64.b64encode(buffer.getvalue()).decode(), "heatmap_class": "NORMAL"}
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("""(answer) => {
            showPreview(new File([new Uint8Array(200)], "film.dcm", {type: "application/dicom"}));
            render(answer, "film.dcm");  // before the browser has tried to decode the file
        }""", answer)
        expect(page.locator("#no-preview")).to_be_visible()
        expect(page.locator("#heatmap")).to_be_visible()
        heat, note = page.locator("#heatmap").bounding_box(), page.locator("#no-preview").bounding_box()
        assert heat and note and heat["height"] > 200 and heat["y"] + heat["height"] <= note["y"] + 1, (heat, note)
        assert not errors, errors


def test_a_film_the_browser_cannot_show_is_not_said_unshown_under_its_heatmap(server: str) -> None:
    """A DICOM film with a heatmap: the heatmap (the film with the overlay) was shown, and right under it the note
    "This format cannot be shown in the browser", which read as a contradiction. The note now says that the heatmap
    picture is the film as the service read it; with the heatmap off, on screen, how to see it; without a heatmap,
    as before."""
    from playwright.sync_api import expect

    with chromium_page(server + "/", viewport={"width": 390, "height": 844}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("showPreview(new File([new Uint8Array(200)], 'IM00001', {type: 'application/octet-stream'}))")
        expect(page.locator("#xray")).to_be_hidden()  # the browser gave up on the file
        page.evaluate("([answer, name]) => render(answer, name)", [ANSWER, "IM00001"])
        note = page.locator("#no-preview")
        expect(page.locator("#heatmap")).to_be_visible()
        said = ("This format cannot be shown in the browser; the result is still valid. The heatmap picture is the "
                "film as the service read it, with the overlay.")
        expect(note).to_have_text(said)
        page.locator("#heat-toggle").uncheck()
        expect(note).to_have_text(said + " Switch the heatmap on to see it.")
        page.emulate_media(media="print")  # on paper the heatmap is printed, switched on or not
        assert note.inner_text() == said
        page.emulate_media(media="screen")
        page.locator("#heat-toggle").check()
        page.evaluate("([answer, name]) => render(answer, name)",
                      [{**ANSWER, "heatmap_png_base64": None, "heatmap_empty": True}, "IM00002"])
        assert note.inner_text() == "This format cannot be shown in the browser; the result is still valid."
        assert not errors, errors


def test_page_says_what_the_probability_and_the_heatmap_are_not(server: str, sample_films: Path) -> None:
    """P(pneumonia) read as the patient's chance, and the heatmap as a lesion's outline (MODEL_CARD: a 4 x 4 grid
    upsampled, which also lights up the mediastinum and upper abdomen): the page now says neither is."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#probability-meaning")).to_be_visible()
        expect(page.locator("#probability-meaning")).to_contain_text("not the chance that this patient has pneumonia")
        note = page.locator("#heat-note")
        if HAS_GRADCAM:
            expect(note).to_be_visible()
            expect(note).to_contain_text("not the outline of a lesion")
            expect(page.locator("#heat-toggle")).to_have_accessible_description(note.inner_text())
        page.set_input_files("#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(page.locator("#ood")).to_be_visible(timeout=15_000)
        expect(note).to_be_hidden()  # no heatmap, nothing to explain
        assert not errors, errors


DROP_ON = """([selector, name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, {type: "image/jpeg"}));
  const target = document.querySelector(selector);
  const options = {dataTransfer: dt, bubbles: true, cancelable: true};
  // dispatchEvent is false when the page cancelled the browser's own handling (opening or saving the file)
  return [target.dispatchEvent(new DragEvent("dragover", options)),
          target.dispatchEvent(new DragEvent("drop", options))];
}"""


def test_a_file_dropped_beside_the_drop_zone_is_analysed_not_opened_by_the_browser(server: str,
                                                                                     sample_films: Path) -> None:
    """A film dropped a little outside the zone was left to the browser, which opens it in the tab (the page is
    gone) or, for a DICOM, saves it to the Downloads folder; one drop on the zone is analysed once."""
    import base64

    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    payload = base64.b64encode(xray.read_bytes()).decode()
    calls: list[str] = []
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.on("request", lambda req: calls.append(req.url) if "predict" in req.url else None)
        for selector, name in (("footer", "beside.jpeg"), ("#notice", "above.jpeg"), ("#drop", "on.jpeg")):
            assert page.evaluate(DROP_ON, [selector, name, payload]) == [False, False], selector
            expect(page.locator("#file-name")).to_have_text(name, timeout=15_000)
            expect(page.locator("#status")).to_have_text("")
        assert len(calls) == 3, calls
        assert not errors, errors


def test_a_long_file_name_in_a_message_does_not_widen_a_phone_page(server: str) -> None:
    """An error quoting a file name with no space to break at (DICOM files are often named by their UID) made a
    375 px page 1,121 px wide, the message running off the screen."""
    from playwright.sync_api import expect

    name = "1.2.840.113619.2.55.3.604688119.969.1268071029.320.1." + "7" * 60
    with chromium_page(server + "/", viewport={"width": 375, "height": 667}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", files=[{"name": name + ".txt", "mimeType": "text/plain", "buffer": b"notes"}])
        expect(page.locator("#error")).to_contain_text(name, timeout=15_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert not errors, errors


def test_a_file_name_is_shown_as_text_never_as_markup(server: str, sample_films: Path) -> None:
    """File names reach the result line, the live region and (through the service's message) the error box."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    name = "<img src=x onerror=window.pwned=1>"
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", files=[{"name": name + ".jpeg", "mimeType": "image/jpeg",
                                              "buffer": xray.read_bytes()}])
        expect(page.locator("#file-name")).to_have_text(name + ".jpeg", timeout=15_000)
        expect(page.locator("#announce")).to_contain_text(name)
        page.set_input_files("#file", files=[{"name": name + ".txt", "mimeType": "text/plain", "buffer": b"notes"}])
        expect(page.locator("#error")).to_contain_text(name + ".txt: not an image", timeout=15_000)
        page.wait_for_timeout(300)
        assert page.evaluate("window.pwned") is None
        assert page.locator("#panel img, #error img, #announce img").count() == 0
        assert not errors, errors


def test_a_borderline_result_says_so_and_why_in_words_sight_and_speech(tiny_run: Path, sample_films: Path,
                                                                        tmp_path: Path) -> None:
    """A film within the threshold's 95 % interval keeps its decision, with a distinct box naming the interval, a
    band on the meter, and the same words for screen readers; a film outside it reads as before. With a threshold
    set by hand there is no interval, and the page says so."""
    from playwright.sync_api import expect

    from tests.conftest import interval_scores, with_scores

    films = sorted((sample_films / "PNEUMONIA").iterdir())[:3]
    probs = sorted((r.probability, Path(r.path)) for r in Predictor(tiny_run, backend="onnx").predict_files(films))
    (low, _), (middle, inside), (high, outside) = probs
    step = min(middle - low, high - middle) / 4
    model = with_scores(tiny_run, tmp_path / "placed.safetensors",
                        *interval_scores(middle - step, middle + step, step / 10))
    lo, hi = Predictor(model, backend="onnx").threshold_ci95
    with serving(model) as base, serving(model, "--threshold", "0.5") as by_hand, \
            chromium_page(base + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(inside))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        shown = page.evaluate("([i, p]) => intervalText(i, p)", [[lo, hi], middle])
        words = f"Borderline: P is within the threshold's uncertainty, {shown}"
        expect(page.locator("#borderline")).to_be_visible()
        expect(page.locator("#borderline-text")).to_have_text(words)
        expect(page.locator("#borderline-why")).to_contain_text("The decision (flagged) stands")
        decision = page.locator("#decision").inner_text()
        assert decision.startswith("Flagged for pneumonia")  # the label stands
        spoken = page.locator("#announce")
        expect(spoken).to_have_text(f"Result for {inside.name}: {decision}. {words}")
        assert spoken.evaluate(LIVE)
        prob, threshold = page.locator("#prob").inner_text(), page.locator("#threshold").inner_text()
        expect(page.locator("#meter")).to_have_attribute("aria-valuetext", f"{prob}, threshold {threshold}; {words}")
        band = page.locator("#band")
        expect(band).to_be_visible()
        assert band.evaluate("el => parseFloat(el.style.left)") == pytest.approx(100 * lo, abs=0.06)
        expect(page.locator("#near")).to_contain_text(f"within the threshold's uncertainty, {shown}")
        expect(page.locator("#near")).to_contain_text("resamples of the 12 validation films it was chosen on")
        # the box looks unlike the refusal warning: dashed, not solid
        assert page.locator("#borderline").evaluate("el => getComputedStyle(el).borderTopStyle") == "dashed"
        page.screenshot(path=str(tmp_path / "page_borderline.png"), full_page=True)

        page.set_input_files("#file", str(outside))
        expect(page.locator("#file-name")).to_have_text(outside.name, timeout=15_000)
        expect(page.locator("#borderline")).to_be_hidden()
        decision = page.locator("#decision").inner_text()
        expect(spoken).to_have_text(f"Result for {outside.name}: {decision}")
        expect(band).to_be_visible()  # the interval is shown for every result

        page.goto(by_hand + "/")
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(inside))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#borderline")).to_be_hidden()
        expect(band).to_be_hidden()
        expect(page.locator("#interval")).to_have_text("not known")
        expect(page.locator("#near")).to_have_text("This threshold was set by hand, so its uncertainty is not known "
                                                   "and no result is marked borderline.")
        assert not errors, errors


def test_the_interval_is_printed_with_the_decimals_that_tell_its_ends_from_p(server: str) -> None:
    """P = 0.7446 against an interval ending at 0.7444 must not read "within 0.51 to 0.74"."""
    with chromium_page(server + "/") as (page, _):
        assert page.evaluate("intervalText([0.5068, 0.7444], 0.60)") == "0.51 to 0.74"
        assert page.evaluate("intervalText([0.5068, 0.7444], 0.7446)") == "0.507 to 0.744"
        assert page.evaluate("intervalText([0.5068, 0.7444], 0.5071)") == "0.5068 to 0.7444"


def test_without_an_interval_the_page_does_not_say_the_model_stores_no_scores(server: str) -> None:
    """A model's stored threshold has no interval when the model stores no scores, but also when it records no target
    recall or its scores do not give its threshold (an older or edited model): "stores no scores" was untrue there."""
    with chromium_page(server + "/") as (page, errors):
        text = page.evaluate("nearText({threshold_ci95: null, probability: 0.5}, "
                             "{operating_point: {threshold_from: 'model'}})")
        assert text == ("This model does not record how its threshold was chosen (the scores and the sensitivity it "
                        "was chosen for), so its uncertainty is not known and no result is marked borderline.")
        assert not errors, errors


@pytest.mark.skipif(not HAS_GRADCAM, reason="pneumoscan.explain.gradcam is not installed")
def test_an_empty_heatmap_is_said_to_be_empty_not_shown_as_evidence(fitted: Path, sample_films: Path,
                                                                    tmp_path: Path) -> None:
    """On a weak model a NORMAL film's Grad-CAM map is all zero: the page showed the bare film under 'Show heatmap:
    where the model saw evidence for NORMAL'. It now says the map is empty, as `pneumoscan explain` does, and shows
    no overlay (nor the previous film's)."""
    from playwright.sync_api import expect

    xray = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    with serving(fitted, "--threshold", "1.0") as base, \
            chromium_page(base + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#label")).to_have_text("NORMAL")
        expect(page.locator("#heat-label")).to_have_text(
            "Heatmap empty: Grad-CAM found no positive evidence for NORMAL in this film")
        expect(page.locator("#heatmap")).to_be_hidden()
        expect(page.locator("#heat-toggle")).to_be_disabled()
        expect(page.locator("#heat-note")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "page_empty_heatmap.png"), full_page=True)
        # after a film with a heatmap, an empty one does not leave that heatmap on its film
        answer = {"probability": 0.2, "label": "NORMAL", "in_distribution": True, "ood_reason": None,
                  "threshold": 0.5, "model_name": "resnet10", "model_version": "0", "model_sha256": "0" * 12,
                  "latency_ms": 5.0, "heatmap_png_base64": None, "heatmap_class": "NORMAL", "heatmap_empty": True}
        page.evaluate("""(answer) => {
            render({...answer, label: "PNEUMONIA", probability: 0.9, heatmap_class: "PNEUMONIA",
                    heatmap_empty: false, heatmap_png_base64: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="}, "a.png");
            render(answer, "b.png");
        }""", answer)
        expect(page.locator("#heatmap")).to_be_hidden()
        assert page.locator("#heatmap").get_attribute("src") is None
        expect(page.locator("#heat-label")).to_have_text(
            "Heatmap empty: Grad-CAM found no positive evidence for NORMAL in this film")
        assert not errors, errors


def refuse_a_lateral_dicom_film(page: Any) -> None:
    """Uploads a DICOM film whose View Position is LL (lateral) on `page` and waits for its refusal."""
    from playwright.sync_api import expect

    from tests.conftest import dicom_to_bytes, make_dicom, xray_pixels

    ds = make_dicom(xray_pixels(0, 3, 48), bits_stored=8)
    ds.ViewPosition = "LL"
    expect(page.locator("#model-line")).to_contain_text("resnet10")
    page.set_input_files("#file", files=[{"name": "IM00002", "mimeType": "application/dicom",
                                          "buffer": dicom_to_bytes(ds)}])
    expect(page.locator("#ood")).to_be_visible(timeout=15_000)


def test_each_film_refused_as_sent_is_told_what_to_upload_by_its_own_cause(server: str, tmp_path: Path) -> None:
    """A lateral film (View Position LL) was told to upload 'the frontal radiograph ..., the right way up', words for
    an upside-down film: the box now leaves what to upload to the cause above it, which each cause says."""
    from playwright.sync_api import expect

    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        refuse_a_lateral_dicom_film(page)
        expect(page.locator("#ood-text")).to_have_text(
            "No prediction made: DICOM View Position LL: not a plain frontal (AP or PA) film; the model reads plain "
            "frontal chest X-rays only, send the frontal film of the study")
        box = page.locator("#ood-as-sent")
        expect(box).to_be_visible()
        expect(box).to_have_text(re.compile(r"^The model cannot read this film as it was sent, so it gave no "
                                            r"probability\.\s+Upload instead what the line above asks for\.$"))
        page.screenshot(path=str(tmp_path / "page_lateral.png"), full_page=True)
        assert not errors, errors


def test_a_refused_film_the_browser_cannot_show_is_not_said_to_have_a_valid_result(server: str) -> None:
    """A lateral DICOM film, refused with "No prediction made", had beside the refusal the note "This format cannot
    be shown in the browser; the result is still valid.": a result the doctor had just been told there was none of.
    The note now stops at what the browser cannot do; a scored film's note still says its result is valid."""
    from playwright.sync_api import expect

    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        refuse_a_lateral_dicom_film(page)
        note = page.locator("#no-preview")
        expect(note).to_have_text("This format cannot be shown in the browser.")
        page.evaluate("([answer, name]) => render(answer, name)",
                      [{**ANSWER, "heatmap_png_base64": None, "heatmap_empty": True}, "IM00003"])
        expect(note).to_have_text("This format cannot be shown in the browser; the result is still valid.")
        assert not errors, errors


def test_a_16_bit_film_is_shown_as_the_service_read_it_not_as_the_browser_draws_its_raw_grey_levels(
        server: str, sample_films: Path, tmp_path: Path) -> None:
    """A 12-bit film in a 16-bit PNG (as a PACS or a DICOM converter exports it) was shown by the browser with its
    raw grey levels, near black, beside its result, and printed so, while the service stretched them from the film's
    darkest to its brightest value to read it. Such a film now has its heatmap, the film as the service read it, for
    its picture, as a DICOM film has; an 8-bit PNG is still shown by the browser."""
    import io

    from PIL import Image
    from playwright.sync_api import expect

    film = np.asarray(Image.open(next((sample_films / "PNEUMONIA").glob("*.jpeg"))).convert("L"))
    deep, flat = io.BytesIO(), io.BytesIO()
    Image.fromarray(film.astype(np.uint16) * 16).save(deep, format="PNG")  # 12-bit values, 0 to 4080
    Image.fromarray(film).save(flat, format="PNG")
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", files=[{"name": "film 12-bit.png", "mimeType": "image/png",
                                              "buffer": deep.getvalue()}])
        expect(page.locator("#decision")).to_be_visible(timeout=15_000)
        expect(page.locator("#xray")).to_be_hidden()
        expect(page.locator("#heatmap")).to_be_visible()
        heat = page.locator("#heatmap").bounding_box()
        assert heat and heat["height"] > 200, heat  # in the flow, not laid over a collapsed frame
        expect(page.locator("#no-preview")).to_have_text(
            "The browser cannot show this 16-bit film's grey levels as the service read them; the result is still "
            "valid. The heatmap picture is the film as the service read it, with the overlay.")
        page.set_input_files("#file", files=[{"name": "film 8-bit.png", "mimeType": "image/png",
                                              "buffer": flat.getvalue()}])
        expect(page.locator("#file-name")).to_have_text("film 8-bit.png", timeout=15_000)
        expect(page.locator("#xray")).to_be_visible()
        expect(page.locator("#no-preview")).to_be_hidden()
        assert not errors, errors


def sixteen_bit_uploads(sample_films: Path) -> dict[str, dict[str, Any]]:
    """A sample film as two 16-bit PNG uploads (`set_input_files`' files), by name: "8-bit as 16-bit.png" (each value
    * 257, read and drawn alike) and "12-bit.png" (each value * 16: stretched by the service, drawn near black)."""
    import io

    from PIL import Image

    film = np.asarray(Image.open(next((sample_films / "PNEUMONIA").glob("*.jpeg"))).convert("L")).astype(np.uint16)
    uploads = {}
    for name, pixels in {"8-bit as 16-bit.png": film * 257, "12-bit.png": film * 16}.items():
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        uploads[name] = {"name": name, "mimeType": "image/png", "buffer": buffer.getvalue()}
    return uploads


def test_a_16_bit_film_gives_way_to_its_heatmap_only_when_the_service_stretched_it_and_a_heatmap_came(
        server: str, sample_films: Path) -> None:
    """The page hid every 16-bit PNG, judged by its header: an 8-bit film saved as 16 bits (each value * 257), which
    the service reads as the 8-bit film and the browser draws alike, was hidden behind its heatmap with an untrue
    note; and a 12-bit film that got no heatmap (none asked for, Grad-CAM unavailable, an empty map, a refusal) had
    no picture at all, where it was shown before (dark). The film now gives way only when the service says it
    stretched it (`stretched`) and a heatmap takes its place."""
    from playwright.sync_api import expect

    uploads = sixteen_bit_uploads(sample_films)
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", files=[uploads["8-bit as 16-bit.png"]])
        expect(page.locator("#file-name")).to_have_text("8-bit as 16-bit.png", timeout=15_000)
        expect(page.locator("#xray")).to_be_visible()
        expect(page.locator("#no-preview")).to_be_hidden()
        page.route("**/predict*", lambda route: route.continue_(url=route.request.url.replace("explain=true",
                                                                                                "explain=false")))
        page.set_input_files("#file", files=[uploads["12-bit.png"]])
        expect(page.locator("#file-name")).to_have_text("12-bit.png", timeout=15_000)
        expect(page.locator("#heat-toggle")).to_be_disabled()  # no heatmap came
        expect(page.locator("#xray")).to_be_visible()
        expect(page.locator("#no-preview")).to_be_hidden()
        page.emulate_media(media="print")
        expect(page.locator("#xray")).to_be_visible()
        assert not errors, errors


SHOWN_WHY = (": the browser draws its stored grey levels, which the service stretched from the film's darkest to its "
             "brightest value to read it. The result is for the film as read.")
SHOWN_OTHERWISE = "This 16-bit film looks different here from how the service read it (darker, paler or flatter)" + SHOWN_WHY


def test_a_stretched_film_without_a_heatmap_is_said_shown_otherwise_than_read_on_screen_and_on_paper(
        server: str, sample_films: Path) -> None:
    """A 12-bit film in a 16-bit PNG that got no heatmap (none asked for, an empty map, a refusal) was shown as the
    browser draws its stored grey levels, near black, without a word, on screen and in print. A note under it now says
    it looks different from how the service read it: darker, paler or flatter, as the answer's `shown` says (it named
    all three, as `stretched` alone does not say which; before that it said darker, false for one stored high, drawn
    nearly white); not for a film its heatmap replaces, nor for one drawn as read."""
    from playwright.sync_api import expect

    uploads = sixteen_bit_uploads(sample_films)
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        note = page.locator("#shown-otherwise")
        page.set_input_files("#file", files=[uploads["12-bit.png"]])  # with its heatmap, which takes the film's place
        expect(page.locator("#decision")).to_be_visible(timeout=15_000)
        expect(page.locator("#xray")).to_be_hidden()
        expect(note).to_be_hidden()
        page.route("**/predict*", lambda route: route.continue_(url=route.request.url.replace("explain=true",
                                                                                                "explain=false")))
        page.set_input_files("#file", files=[uploads["8-bit as 16-bit.png"]])
        expect(page.locator("#file-name")).to_have_text("8-bit as 16-bit.png", timeout=15_000)
        expect(note).to_be_hidden()
        page.set_input_files("#file", files=[uploads["12-bit.png"]])
        expect(page.locator("#file-name")).to_have_text("12-bit.png", timeout=15_000)
        expect(page.locator("#xray")).to_be_visible()
        expect(note).to_be_visible()
        expect(note).to_have_text("This 16-bit film is shown darker here than the service read it" + SHOWN_WHY)
        frame, below = page.locator("#frame").bounding_box(), note.bounding_box()
        assert frame and below and below["y"] >= frame["y"] + frame["height"] - 1, (frame, below)  # under the film
        page.evaluate("([answer, name]) => render(answer, name)",  # refused: no heatmap either
                      [{**ANSWER, "heatmap_png_base64": None, "in_distribution": False, "refusal_kind": "unlike",
                        "refusal_cause": "unlike the training X-rays", "stretched": True, "shown": "paler"},
                       "12-bit.png"])
        expect(note).to_be_visible()
        expect(note).to_have_text("This 16-bit film is shown paler here than the service read it" + SHOWN_WHY)
        page.evaluate("([answer, name]) => render(answer, name)",
                      [{**ANSWER, "heatmap_png_base64": None, "stretched": True, "shown": "flatter"}, "12-bit.png"])
        expect(note).to_have_text("This 16-bit film is shown flatter (with less contrast) here than the service read it"
                                  + SHOWN_WHY)
        page.evaluate("([answer, name]) => render(answer, name)",  # an answer that does not say how: all three
                      [{**ANSWER, "heatmap_png_base64": None, "stretched": True}, "12-bit.png"])
        expect(note).to_have_text(SHOWN_OTHERWISE)
        page.emulate_media(media="print")
        expect(page.locator("#xray")).to_be_visible()
        expect(note).to_be_visible()
        frame, below = page.locator("#frame").bounding_box(), note.bounding_box()
        assert frame and below and below["y"] >= frame["y"] + frame["height"] - 1, (frame, below)
        page.emulate_media(media="screen")
        page.evaluate("([answer, name]) => render(answer, name)", [{**ANSWER, "stretched": False}, "other.png"])
        expect(note).to_be_hidden()
        assert not errors, errors


def test_a_thumbnail_is_said_too_small_to_read_with_its_result(server: str, sample_films: Path, tmp_path: Path) -> None:
    """A 20 x 20 px preview of a film was predicted without a word: the page now says, in a box above the result (or
    the refusal) and in the words read out, that the film is too small to read reliably and to send the original."""
    from playwright.sync_api import expect

    from tests.inference.test_small_films import WARNING, thumbnail

    film = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    thumb = thumbnail(film, tmp_path / "thumb.jpeg")
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(thumb))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#small")).to_be_visible()
        expect(page.locator("#small-text")).to_have_text(f"This film is {WARNING}.")
        expect(page.locator("#announce")).to_contain_text(f"This film is {WARNING}.")
        page.screenshot(path=str(tmp_path / "page_thumbnail.png"), full_page=True)
        page.set_input_files("#file", str(film))  # the original: no box
        expect(page.locator("#file-name")).to_have_text(film.name, timeout=15_000)
        expect(page.locator("#small")).to_be_hidden()
        expect(page.locator("#announce")).not_to_contain_text("too small")
        refused = {"in_distribution": False, "ood_reason": "unlike the chest X-rays this model was trained on (image "
                   "statistics: layout, contrast or texture); if it is a frontal pediatric chest X-ray, read it without "
                   "the model", "refused_by": "image", "refusal_kind": "unlike", "size_warning": WARNING,
                   "probability": None, "label": None,
                   "threshold": 0.5, "model_name": "resnet10", "model_sha256": "0" * 12, "latency_ms": 5}
        refused["refusal_cause"] = refused["ood_reason"]
        page.evaluate("(answer) => render(answer, 'thumb.jpeg')", refused)
        expect(page.locator("#ood")).to_be_visible()
        expect(page.locator("#small")).to_be_visible()  # refused or not, the size is said
        expect(page.locator("#announce")).to_contain_text("No prediction made: unlike the chest X-rays this model")
        expect(page.locator("#ood-unlike")).to_be_visible()  # a few real films are refused so: read without the model
        expect(page.locator("#announce")).to_contain_text(f"This film is {WARNING}.")
        assert not errors, errors


def test_a_heatmap_toggle_without_a_heatmap_is_unticked_says_why_and_keeps_the_choice(server: str) -> None:
    """A disabled toggle looked ticked (greyed but checked), which reads as 'heatmap on'. Without a heatmap it is now
    unticked and its label, the checkbox's accessible name, says why; the next film with a heatmap gets the
    clinician's own choice back."""
    from playwright.sync_api import expect

    answer = {"probability": 0.9, "label": "PNEUMONIA", "in_distribution": True, "ood_reason": None,
              "threshold": 0.5, "model_name": "resnet10", "model_version": "0", "model_sha256": "0" * 12,
              "latency_ms": 5.0, "heatmap_class": "PNEUMONIA", "heatmap_empty": False,
              "heatmap_png_base64": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="}
    empty = {**answer, "heatmap_png_base64": None, "heatmap_empty": True}
    none = {**answer, "heatmap_png_base64": None, "heatmap_empty": False}
    rejected = {**none, "in_distribution": False, "ood_reason": "not a chest X-ray: colour image", "refused_by": "colour",
                "refusal_kind": "not_a_chest_xray", "refusal_cause": "colour image"}
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        toggle, heat = page.locator("#heat-toggle"), page.locator("#heatmap")
        render = "([answer, name]) => render(answer, name)"
        page.evaluate(render, [answer, "a.png"])
        expect(toggle).to_be_enabled()
        expect(toggle).to_be_checked()
        expect(heat).to_be_visible()
        for without, reason in ((empty, "Heatmap empty: Grad-CAM found no positive evidence for PNEUMONIA"),
                                (none, "Heatmap not available for this model"),
                                (rejected, "No heatmap: no prediction was made")):
            page.evaluate(render, [without, "b.png"])
            expect(toggle).to_be_disabled()
            expect(toggle).not_to_be_checked()
            expect(toggle).to_have_accessible_name(re.compile("^" + re.escape(reason)))
            page.evaluate(render, [answer, "c.png"])  # the choice (on) comes back
            expect(toggle).to_be_checked()
            expect(heat).to_be_visible()
        toggle.uncheck()
        page.evaluate(render, [empty, "d.png"])
        expect(toggle).not_to_be_checked()
        page.evaluate(render, [answer, "e.png"])  # the choice (off) stays off
        expect(toggle).to_be_enabled()
        expect(toggle).not_to_be_checked()
        expect(heat).to_be_hidden()
        assert not errors, errors


ONE_PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
ANSWER = {"probability": 0.9, "label": "PNEUMONIA", "in_distribution": True, "ood_reason": None, "threshold": 0.5,
          "model_name": "resnet10", "model_version": "0", "model_sha256": "0" * 12, "latency_ms": 5.0,
          "heatmap_class": "PNEUMONIA", "heatmap_empty": False, "heatmap_png_base64": ONE_PIXEL_PNG}


def test_the_heatmap_comes_with_its_colour_scale_on_screen_and_on_paper(server: str) -> None:
    """The overlay's colours had no legend: a doctor could not tell which end of the scale was strong evidence. The
    heatmap now comes with a colour scale from none (the bare film) to the strongest in this film, naming the class;
    it goes with the heatmap when switched off or absent, and is printed with a printed heatmap."""
    from playwright.sync_api import expect

    rejected = {**ANSWER, "heatmap_png_base64": None, "in_distribution": False, "refusal_kind": "not_a_chest_xray",
                "refusal_cause": "colour image"}
    with chromium_page(server + "/", viewport={"width": 390, "height": 844}) as (page, errors):
        legend, toggle = page.locator("#heat-legend"), page.locator("#heat-toggle")
        render = "([answer, name]) => render(answer, name)"
        page.evaluate(render, [ANSWER, "a.png"])
        expect(page.locator("#heatmap")).to_be_visible()
        expect(legend).to_be_visible()
        expect(legend).to_contain_text("Heatmap colours: evidence for PNEUMONIA")
        expect(legend).to_contain_text("none")
        expect(legend).to_contain_text("strongest in this film")
        scale = page.locator("#heat-legend .heat-scale")
        assert "linear-gradient" in scale.evaluate("el => getComputedStyle(el).backgroundImage")
        assert scale.bounding_box()["width"] > 100  # a scale, not a dot, on a phone
        toggle.uncheck()
        expect(legend).to_be_hidden()
        page.emulate_media(media="print")  # a printed heatmap keeps its scale
        expect(legend).to_be_visible()
        page.emulate_media(media="screen")
        toggle.check()
        expect(legend).to_be_visible()
        for without in ({**ANSWER, "heatmap_png_base64": None, "heatmap_empty": True}, rejected):
            page.evaluate(render, [without, "b.png"])
            expect(legend).to_be_hidden()
            page.emulate_media(media="print")
            expect(legend).to_be_hidden()
            page.emulate_media(media="screen")
        assert not errors, errors


def test_a_percentage_never_breaks_from_its_number(server: str) -> None:
    """On a phone, the prevalence sentence ended a line with "prevalence of 50" and began the next with "%": every
    percentage the page writes (prevalence, test rates, the 95 % interval, upload progress) now joins its number and
    "%" with a space that does not break."""
    from playwright.sync_api import expect

    breakable = re.compile(r"\d[ \t\r\n]+%")
    answer = {**ANSWER, "threshold_ci95": [0.4, 0.6], "borderline": False}
    info = {"test_metrics": {"n": 624, "threshold": 0.5, "recall": {"value": 0.98}, "specificity": {"value": 0.87}},
            "threshold": 0.5, "operating_point": {"threshold_from": "model", "prevalence_from": "model_prior"}}
    with chromium_page(server + "/", viewport={"width": 390, "height": 844}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("([answer, name]) => render(answer, name)", [answer, "a.png"])
        expect(page.locator("#interval")).to_contain_text("interval")
        texts = [page.evaluate("document.body.textContent"), page.locator("#band").get_attribute("title"),
                 page.evaluate("(info) => operatingPoint(info)", info),
                 page.evaluate("(p) => prevalenceText({prevalence: p, prevalence_from: 'prevalence'})", 0.2)]
        page.evaluate("progressReporter(latest)(400000, 2000000)")
        texts += [page.locator("#status").text_content(), page.locator("#announce").text_content()]
        for text in texts:
            assert "%" in text and not breakable.search(text), text
        assert not errors, errors


def test_on_a_phone_the_pages_subtitle_is_not_cut_in_two(server: str) -> None:
    """At 390 px the title read "pneumoscan chest X-ray" and, on the next line, "pneumonia check": the subtitle now
    moves under the name whole, and still fits the narrowest phones."""
    from playwright.sync_api import expect

    for width in (390, 320):
        with chromium_page(server + "/", viewport={"width": width, "height": 800}) as (page, errors):
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            subtitle = page.locator("h1 .subtitle")
            assert subtitle.evaluate("el => el.getClientRects().length") == 1, width
            box = subtitle.bounding_box()
            assert box and box["x"] + box["width"] <= width, (width, box)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            assert not errors, errors


def test_on_a_tablet_and_a_phone_nothing_runs_off_the_side_and_the_heatmap_scales(server: str,
                                                                                   sample_dir: Path) -> None:
    """The threshold's label was centred on its marker: with a threshold near 1 (`serve --threshold 0.99`, or a
    --prevalence that moves it there) it ran off the right of a 375 px page, which scrolled sideways, and past 768 px
    at 1.0; near 0 its start was cut off on the left. It now lies on the meter's side of the marker near either end.
    The figures' labels ('Threshold's uncertainty') did not wrap, which pushed the result 9 px into a phone's right
    margin and a 320 px page (WCAG's reflow width) 12 px sideways; they now wrap when room is short. The film and
    its heatmap shrink to the screen together."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    for width in (768, 375, 320):
        with chromium_page(server + "/", viewport={"width": width, "height": 900}) as (page, errors):
            expect(page.locator("#model-line")).to_contain_text("resnet10")
            page.set_input_files("#file", str(xray))
            expect(page.locator("#result")).to_be_visible(timeout=15_000)
            assert page.evaluate("document.documentElement.scrollWidth") <= width, width
            body = page.locator("body").evaluate("el => el.getBoundingClientRect().right - "
                                                 "parseFloat(getComputedStyle(el).paddingRight)")
            for box in (page.locator("#panel").bounding_box(), page.locator(".viewer").bounding_box()):
                assert box and box["x"] + box["width"] <= body + 0.5, (width, box, body)  # within the margins
            film = page.locator("#xray").bounding_box()
            assert film and film["x"] >= 0 and film["x"] + film["width"] <= width, (width, film)
            if HAS_GRADCAM:
                assert page.locator("#heatmap").bounding_box() == film  # laid exactly over the film
            answer = page.evaluate("""() => ({probability: 0.5, label: "PNEUMONIA", in_distribution: true,
                threshold_ci95: null, prevalence: 0.5, model_name: "resnet10", model_sha256: "0".repeat(12),
                latency_ms: 5, heatmap_png_base64: null, heatmap_class: "PNEUMONIA"})""")
            for threshold in (0.0, 0.01, 0.5, 0.99, 1.0):
                page.evaluate("(answer) => render(answer, 'film.jpeg')", {**answer, "threshold": threshold})
                label, meter = page.locator("#marker-label").bounding_box(), page.locator("#meter").bounding_box()
                assert label and meter and meter["x"] - 2 <= label["x"] and \
                    label["x"] + label["width"] <= meter["x"] + meter["width"] + 2, (width, threshold, label, meter)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (width, threshold)
            assert not errors, errors


# The WCAG contrast ratio of every piece of text shown, from its computed colour and the background colours behind
# it: those of the ancestors whose box holds it (the threshold's label sits above its marker, not on it), blended
# when translucent, on white. `printed`: as on paper, where browsers drop backgrounds (print-color-adjust: economy).
TEXT_CONTRAST = """(printed) => {
  const rgba = (text) => {
    const parts = text.match(/rgba?\\(([^)]*)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const channel = (v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const luminance = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const ratio = (a, b) => {
    const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (light + 0.05) / (dark + 0.05);
  };
  const holds = (outer, inner) => inner.left >= outer.left - 1 && inner.right <= outer.right + 1 &&
    inner.top >= outer.top - 1 && inner.bottom <= outer.bottom + 1;
  const brightness = (el) => {  // a hover's filter: brightness(1.1) lightens text and background alike
    const factor = (getComputedStyle(el).filter.match(/brightness\\(([\\d.]+)\\)/) || [0, 1])[1];
    return (c) => [0, 1, 2].map((i) => Math.min(255, c[i] * factor)).concat([c[3]]);
  };
  const backdrop = (el) => {
    const layers = [], box = el.getBoundingClientRect();
    for (let e = el; e; e = e.parentElement) {
      const style = getComputedStyle(e), colour = rgba(style.backgroundColor);
      if (printed && style.printColorAdjust !== "exact") continue;
      if (colour[3] > 0 && holds(e.getBoundingClientRect(), box)) {
        layers.push(colour);
        if (colour[3] === 1) break;
      }
    }
    return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
  };
  return [...document.querySelectorAll("body *")]
    .filter((el) => [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
    .filter((el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility === "visible")
    .filter((el) => !el.closest(".visually-hidden"))
    .map((el) => {
      const lighten = brightness(el), background = lighten(backdrop(el));
      const text = lighten(over(rgba(getComputedStyle(el).color), background));
      return {element: `${el.tagName.toLowerCase()}#${el.id}.${el.className}`, ratio: ratio(text, background),
              text: el.textContent.trim().slice(0, 40)};
    });
}"""


def low_contrast(page: Any, printed: bool = False) -> list[tuple[str, str, float]]:
    """The texts shown on `page` with a contrast ratio under 4.5:1 (WCAG 1.4.3), as (element, text, ratio)."""
    return [(t["element"], t["text"], round(t["ratio"], 2)) for t in page.evaluate(TEXT_CONTRAST, printed)
            if t["ratio"] < 4.5]


def test_a_printed_result_shows_the_film_heatmap_figures_and_notice_without_the_upload_controls(
        server: str, sample_dir: Path, tmp_path: Path) -> None:
    """There was no print stylesheet: a printed or PDF result carried the drop zone and its button and the heatmap
    toggle, and the film appeared only under the heatmap laid over it (or, heatmap off, without the heatmap); the
    'cannot be shown' note of a DICOM film was light grey on a background the printer drops. On paper the page now
    gives the notice, the result and its figures, and the film and its heatmap side by side, captioned."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 718, "height": 1000}) as (page, errors):  # A4's width
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        if HAS_GRADCAM:
            page.locator("#heat-toggle").uncheck()  # switched off on screen, printed all the same
        page.emulate_media(media="print")
        for hidden in ("#drop", "label.button", "#heat-toggle", "#status"):
            expect(page.locator(hidden)).to_be_hidden()
        expect(page.locator("#notice")).to_contain_text("Decision support only — not a diagnosis.")
        for shown in ("#notice", "#file-name", "#decision", "#meter", "#prob", "#label", "#threshold", "#interval",
                      "#threshold-source", "#probability-meaning", "#model", "#xray"):
            expect(page.locator(shown)).to_be_visible()
        assert page.locator("#fill").evaluate("el => getComputedStyle(el).printColorAdjust") == "exact"
        if HAS_GRADCAM:
            expect(page.locator("#heatmap")).to_be_visible()
            expect(page.locator("#heat-caption")).to_contain_text("Heatmap (the film with the Grad-CAM overlay): "
                                                                  "where the model saw evidence for")
            expect(page.locator("#heat-note")).to_be_visible()
            film, heat = page.locator("#xray").bounding_box(), page.locator("#heatmap").bounding_box()
            assert film and heat and film["width"] > 250 and heat["width"] > 250, (film, heat)
            assert film["x"] + film["width"] <= heat["x"], (film, heat)  # beside the film, not over it
        assert low_contrast(page, printed=True) == []
        page.pdf(path=str(tmp_path / "result.pdf"), format="A4")

        page.emulate_media(media="screen")  # back on screen: the upload controls and the clinician's choice
        expect(page.locator("label.button")).to_be_visible()
        expect(page.locator("#heat-caption")).to_be_hidden()
        if HAS_GRADCAM:
            expect(page.locator("#heatmap")).to_be_hidden()

        page.evaluate("showPreview(new File([new Uint8Array(200)], 'film.dcm', {type: 'application/dicom'}))")
        expect(page.locator("#no-preview")).to_be_visible()
        page.emulate_media(media="print")
        expect(page.locator("#no-preview")).to_be_visible()
        assert low_contrast(page, printed=True) == []
        assert not errors, errors
    print(f"PDF: {tmp_path / 'result.pdf'}")


def test_a_printed_film_the_browser_cannot_show_keeps_its_heatmap_beside_the_note(server: str) -> None:
    """A DICOM film's only picture is its heatmap. On paper the note 'This format cannot be shown in the browser...'
    sat in the row of the film and the heatmap at its full text's width, which squeezed the heatmap to nothing: the
    printed record of a DICOM film had no picture at all. The note now takes the film's half of the row, the heatmap
    the other."""
    import base64
    import io

    from PIL import Image
    from playwright.sync_api import expect

    buffer = io.BytesIO()
    Image.new("RGB", (128, 156), (200, 120, 40)).save(buffer, format="PNG")
    answer = {**ANSWER, "heatmap_png_base64": base64.b64encode(buffer.getvalue()).decode()}
    with chromium_page(server + "/", viewport={"width": 718, "height": 1000}) as (page, errors):  # A4's width
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("showPreview(new File([new Uint8Array(200)], 'IM00001', {type: 'application/octet-stream'}))")
        expect(page.locator("#xray")).to_be_hidden()  # the browser gave up on the file
        page.evaluate("([answer, name]) => render(answer, name)", [answer, "IM00001"])
        page.locator("#heat-toggle").uncheck()  # switched off on screen, printed all the same
        page.emulate_media(media="print")
        expect(page.locator("#heatmap")).to_be_visible()
        expect(page.locator("#no-preview")).to_be_visible()
        heat, note = page.locator("#heatmap").bounding_box(), page.locator("#no-preview").bounding_box()
        assert heat and note and heat["width"] > 250 and heat["height"] > 300, (heat, note)
        assert note["x"] + note["width"] <= heat["x"], (note, heat)  # in the film's place, left of the heatmap
        assert not errors, errors


def test_a_result_says_when_and_by_which_weights_its_film_was_analysed_on_screen_and_on_paper(
        server: str, fitted: Path, sample_dir: Path) -> None:
    """A printed or PDF result did not say when the film was analysed (its 'Time' row was the processing time); then
    it gave the browser's clock, which can be wrong and was not when the service analysed the film. Each result, a
    refusal too, now gives its answer's analysed_at (UTC, by the service's clock) in this computer's time zone,
    named, with its offset (ISO-like date, 24 h), beside the file name and the weights' short hash, on screen and
    on paper."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from playwright.sync_api import expect

    from pneumoscan.artifact import file_sha256

    def shown(analysed_at: str) -> str:
        """The page's words for ANALYSED_AT in Kolkata (UTC+05:30, no summer time)."""
        local = datetime.fromisoformat(analysed_at).astimezone(ZoneInfo("Asia/Kolkata"))
        return f"{local:%Y-%m-%d %H:%M} UTC+05:30 (India Standard Time), by the service's clock"

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(None, timezone_id="Asia/Kolkata") as (page, errors):
        page.clock.set_fixed_time(datetime(2020, 3, 4, 8, 7, tzinfo=timezone.utc))  # this computer's clock is wrong
        page.goto(server + "/")
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        with page.expect_response(lambda res: "/predict?" in res.url) as answer:
            page.set_input_files("#file", str(xray))
        analysed_at = answer.value.json()["analysed_at"]
        assert not analysed_at.startswith("2020-")
        expect(page.locator("#analysed")).to_have_text(shown(analysed_at), timeout=15_000)
        expect(page.locator("#file-name")).to_have_text(xray.name)
        expect(page.locator("#model")).to_have_text(f"resnet10 · weights {file_sha256(fitted)[:12]}")
        page.emulate_media(media="print")
        for row in ("#analysed", "#file-name", "#model"):
            expect(page.locator(row)).to_be_visible()
        assert page.locator("dt", has_text="Analysed").is_visible()

        def late_in_the_year(route: Any) -> None:  # the service's answer, analysed on a new day in Kolkata
            body = route.fetch().json()
            route.fulfill(json={**body, "analysed_at": "2026-12-31T19:55:30.250Z"})

        page.emulate_media(media="screen")
        page.route("**/predict?*", late_in_the_year)
        page.set_input_files("#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(page.locator("#ood")).to_be_visible(timeout=15_000)
        expect(page.locator("#analysed")).to_have_text("2027-01-01 01:25 UTC+05:30 (India Standard Time), by the "
                                                       "service's clock")
        expect(page.locator("#file-name")).to_have_text("holiday.jpg")
        page.evaluate("(answer) => render(answer, 'film.png')", {**answer.value.json(), "analysed_at": None})
        expect(page.locator("#analysed")).to_have_text("not given by the service")
        assert not errors, errors
    with chromium_page(server + "/", timezone_id="Europe/Berlin") as (page, errors):  # the zone of that moment
        assert page.evaluate("analysedText('2026-07-01T12:00:00.000Z')") == \
            "2026-07-01 14:00 UTC+02:00 (Central European Summer Time), by the service's clock"
        assert page.evaluate("analysedText('2026-01-15T12:00:00.000Z')") == \
            "2026-01-15 13:00 UTC+01:00 (Central European Standard Time), by the service's clock"
        assert not errors, errors


def test_a_result_gives_its_request_id_on_screen_and_on_paper(server: str, sample_dir: Path) -> None:
    """A support ticket quoting a printed result could not be matched to the service's logs; the result now gives
    the request id of its answer (its X-Request-ID header and `request_id`), the key of its audit log line."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "NORMAL").iterdir())[0]
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        with page.expect_response(lambda res: "/predict?" in res.url) as answer:
            page.set_input_files("#file", str(xray))
        sent = answer.value.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", sent) and answer.value.json()["request_id"] == sent
        expect(page.locator("#request-id")).to_have_text(sent, timeout=15_000)
        page.emulate_media(media="print")
        expect(page.locator("#request-id")).to_be_visible()
        assert page.locator("dt", has_text="Request ID").is_visible()
        assert not errors, errors


def test_the_meter_does_not_move_for_whoever_asked_for_reduced_motion(server: str) -> None:
    """The meter's fill slid to each new probability (0.3 s) even when the system was set to reduce motion; with
    `prefers-reduced-motion: reduce` it now takes its width at once, and still slides otherwise."""
    from playwright.sync_api import expect

    answer = {"probability": 0.2, "label": "NORMAL", "in_distribution": True, "threshold": 0.5, "prevalence": 0.5,
              "threshold_ci95": None, "model_name": "resnet10", "model_sha256": "0" * 12, "latency_ms": 5.0,
              "heatmap_png_base64": None, "heatmap_class": "NORMAL", "heatmap_empty": False}
    # the transitions the new width starts on the fill (reading them flushes the style, as a frame would)
    moves = """([answer, p]) => { render({...answer, probability: p}, "film.png");
      return document.getElementById("fill").getAnimations().length; }"""
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("(answer) => render(answer, 'film.png')", answer)
        page.wait_for_timeout(500)
        assert page.evaluate(moves, [answer, 0.9]) == 1  # slides, as before
        page.emulate_media(reduced_motion="reduce")
        page.wait_for_timeout(500)
        assert page.evaluate(moves, [answer, 0.3]) == 0
        assert page.locator("#fill").evaluate("el => el.getBoundingClientRect().width / el.parentElement.clientWidth"
                                              ) == pytest.approx(0.3, abs=0.01)  # there at once
        assert not errors, errors


def test_every_text_on_the_page_has_a_contrast_of_at_least_4_5_to_1(server: str, sample_dir: Path) -> None:
    """WCAG 1.4.3, from the CSS colours as the browser computes them, in every state a clinician meets: the empty
    page, the model line's "AUC" explained, the header saying the service did not answer, a drag over the drop zone,
    the button under the pointer, flagged and not flagged results, a borderline thumbnail, a refusal, an error, a
    disabled heatmap toggle and a film the browser cannot show."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    answer = {"probability": 0.2, "label": "NORMAL", "in_distribution": True, "threshold": 0.5, "prevalence": 0.5,
              "threshold_ci95": [0.45, 0.55], "model_name": "resnet10", "model_sha256": "0" * 12, "latency_ms": 5.0,
              "heatmap_png_base64": None, "heatmap_class": "NORMAL", "heatmap_empty": True}
    render = "([answer, name]) => render(answer, name)"
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.locator("#auc").click()  # its explanation shown
        expect(page.locator("#auc-meaning")).to_be_visible()
        found = low_contrast(page)
        info = page.evaluate("modelInfo")
        page.evaluate("describeModel(null)")  # the header saying the service did not answer
        found += low_contrast(page)
        page.evaluate("(info) => describeModel(info)", info)
        page.locator("#drop").evaluate("el => el.classList.add('over')")  # a film dragged over it
        found += low_contrast(page)
        page.locator("#drop").evaluate("el => el.classList.remove('over')")
        page.hover("label.button")
        found += low_contrast(page)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        found += low_contrast(page)
        for shown, changes in (("#decision", {}), ("#borderline", {"probability": 0.52, "borderline": True,
                                                                   "size_warning": "20 x 20 px, too small"}),
                               ("#ood", {"in_distribution": False, "ood_reason": "not a chest X-ray: colour image"})):
            page.evaluate(render, [{**answer, **changes}, "film.png"])
            expect(page.locator(shown)).to_be_visible()
            found += low_contrast(page)
        page.evaluate("showPreview(new File([new Uint8Array(200)], 'film.dcm', {type: 'application/dicom'}))")
        expect(page.locator("#no-preview")).to_be_visible()
        found += low_contrast(page)
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"notes"}])
        expect(page.locator("#error")).to_be_visible(timeout=15_000)
        found += low_contrast(page)
        assert found == [], found
        assert not errors, errors


def test_page_says_which_films_the_model_is_for_and_does_not_overclaim_its_guard(server: str) -> None:
    """The notice described the shipped model's training films but never said what it is for (pediatric AP chest
    X-rays, the model card's intended use), and said nothing of it for any other model; the header said 'images
    that are not chest X-rays are refused', more than a guard that has never seen adult films or real non-chest
    radiographs can promise (MODEL_CARD)."""
    from playwright.sync_api import expect

    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        notice = page.locator("#notice")
        expect(notice).to_contain_text("The probability comes from an image classifier built with pneumoscan, which "
                                       "is made for pediatric anterior-posterior (AP) chest X-rays, but it is not "
                                       "the model shipped with pneumoscan")
        expect(page.locator("#model-line")).to_contain_text("images that do not look like chest X-rays are refused")
        page.evaluate("describeModel({...modelInfo, shipped: true})")
        expect(notice).to_contain_text("The probability comes from an image classifier for pediatric "
                                       "anterior-posterior (AP) chest X-rays, trained on films of children aged one "
                                       "to five from one hospital in Guangzhou; it is not validated on adults, "
                                       "lateral views or other hospitals' equipment (see its model card).")
        assert not errors, errors


def test_page_says_a_model_without_a_guard_scores_any_image(server: str, tiny_run: Path) -> None:
    """A model never given `fit-guard` scores a photo or a document as a film, and the page said nothing of it: the
    header's words on refusals were left out, which no clinician notices. The notice says it now, and only then."""
    from playwright.sync_api import expect

    said = "This model has no check that an image is a chest X-ray: it gives a probability for any image"
    with serving(tiny_run) as unguarded, chromium_page(unguarded + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        expect(page.locator("#notice")).to_contain_text(said + ", a photo, a document or an upside-down film too. "
                                                        "Upload only frontal chest X-rays.")
        page.set_input_files("#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(page.locator("#decision")).to_contain_text("for pneumonia — P = ", timeout=15_000)  # scored all the same
        assert not errors, errors
    with chromium_page(server + "/") as (page, errors):  # the guarded model refuses such images
        expect(page.locator("#model-line")).to_contain_text("images that do not look like chest X-rays are refused")
        expect(page.locator("#no-guard")).to_be_hidden()
        assert said not in page.locator("#notice").inner_text()
        assert not errors, errors


def test_page_links_the_shipped_models_card_and_says_it_is_not_another_models(server: str) -> None:
    """The notice told clinicians to 'see its model card', which neither the page nor an installed pneumoscan had,
    and said so of a site's own model too, which has none. It now links the shipped model's card (GET /model/card,
    in a new tab, so the result stays), and for another model says plainly that the card is the shipped model's
    only; while the model is not known (GET /model failed) it names no card."""
    from playwright.sync_api import expect

    card = (Path(__file__).resolve().parents[2] / "MODEL_CARD.md").read_text(encoding="utf-8")
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")  # the fitted model: not the shipped one
        expect(page.locator("#scope")).to_have_text(
            " built with pneumoscan, which is made for pediatric anterior-posterior (AP) chest X-rays, but it is not "
            "the model shipped with pneumoscan: the model card describes that one only, so ask whoever trained this "
            "model which films it was trained on")
        link = page.locator("#card-link")
        expect(link).to_have_text("model card")
        assert link.evaluate("el => [el.href, el.target, el.rel]") == [server + "/model/card", "_blank", "noopener"]
        with page.expect_popup() as popup:
            link.click()
        shown = popup.value
        shown.wait_for_load_state()
        text = shown.locator("body").inner_text()  # the browser shows the Markdown as text, not as a download
        assert text.startswith("> **This card is not about the model of this service.**")
        assert "# Model card: pneumoscan default model" in text and card.splitlines()[-1] in text

        page.evaluate("describeModel({...modelInfo, shipped: true})")
        expect(page.locator("#scope")).to_contain_text("(see its model card)")
        expect(page.locator("#card-link")).to_have_attribute("href", "model/card")
        page.evaluate("describeModel(null)")
        expect(page.locator("#scope")).to_have_text(" built with pneumoscan, which is made for pediatric "
                                                    "anterior-posterior (AP) chest X-rays")
        expect(page.locator("#card-link")).to_have_count(0)
        assert not errors, errors


LIVE_REGIONS = """() => [...document.querySelectorAll('[aria-live], [role=status], [role=alert], [role=log]')]
  .filter((el) => el.getAttribute('aria-live') !== 'off')
  .map((el) => ({id: el.id, text: el.textContent.trim(), hidden: Boolean(el.closest('[hidden]')),
                 nested: Boolean(el.parentElement.closest('[aria-live], [role=status], [role=alert], [role=log]'))}))"""
NAMED = """() => [...document.querySelectorAll(
  'input, button, select, textarea, a[href], [tabindex], [role=meter], img')]
  .filter((el) => !el.closest('[hidden]') && !el.hidden).map((el) => el.id)"""


def said_by(page: Any, text: str) -> list[str]:
    """The ids of the page's shown, non-empty live regions whose text contains `text`; none is inside another (its
    text would be said twice)."""
    regions = page.evaluate(LIVE_REGIONS)
    assert not [r["id"] for r in regions if r["nested"]], regions
    return [r["id"] for r in regions if not r["hidden"] and r["text"] and text in r["text"]]


def test_a_result_or_an_error_is_said_once_focus_stays_and_every_control_is_named(server: str,
                                                                                 sample_dir: Path) -> None:
    """Checked in the browser: a result, a refusal and an error each reach exactly one live region (not two, not
    none); choosing a film by keyboard leaves the focus on the chooser, for the next film, while the result is
    read out; every control, the meter and the images have an accessible name."""
    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.on("filechooser", lambda chooser: chooser.set_files(str(xray)))
        page.locator("#file").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        decision = page.locator("#decision").inner_text()
        assert said_by(page, decision) == ["announce"]
        assert page.evaluate("document.activeElement.id") == "file"
        expect(page.locator("#file")).to_have_accessible_name("Choose an image…")
        for element in page.evaluate(NAMED):
            expect(page.locator(f"#{element}")).to_have_accessible_name(re.compile(r"\S"))

        page.set_input_files("#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg",
                                              "buffer": colour_photo()}])
        expect(page.locator("#ood")).to_be_visible(timeout=15_000)
        assert said_by(page, page.locator("#ood-text").inner_text()) == ["announce"]
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"notes"}])
        expect(page.locator("#error")).to_be_visible(timeout=15_000)
        assert said_by(page, page.locator("#error").inner_text()) == ["error"]
        assert said_by(page, "") == ["error"]  # nothing else is left to be read as current
        assert not errors, errors


def test_the_meters_hatched_band_is_explained_in_text_not_only_on_hover(server: str) -> None:
    """The hatched band over the meter was explained only by its `title`, a tooltip that touch and keyboard users
    cannot open: the row of the threshold's uncertainty now says the band is that interval."""
    from playwright.sync_api import expect

    answer = {**ANSWER, "threshold_ci95": [0.4, 0.6], "borderline": False}
    with chromium_page(server + "/", has_touch=True) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("([answer, name]) => render(answer, name)", [answer, "a.png"])
        expect(page.locator("#band")).to_be_visible()
        expect(page.locator("#interval")).to_contain_text("95\u00a0% interval, the hatched band on the bar")
        page.evaluate("([answer, name]) => render(answer, name)", [{**answer, "threshold_ci95": None}, "b.png"])
        expect(page.locator("#band")).to_be_hidden()
        expect(page.locator("#interval")).to_have_text("not known")
        assert not errors, errors


def test_the_first_heatmap_after_start_is_said_to_take_longer_and_a_broken_pytorch_is_named(
        server: str, sample_dir: Path) -> None:
    """The service starts without PyTorch and loads it for the first heatmap: while that upload is analysed the page
    says the first heatmap can take longer (not on later uploads); when PyTorch cannot be loaded, the result comes
    without a heatmap and the heatmap's label says why."""
    import json

    from playwright.sync_api import expect

    xray = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]
    record = ("window.statuses = []; document.addEventListener('DOMContentLoaded', () => new MutationObserver(() => "
              "window.statuses.push(document.getElementById('status').textContent)).observe("
              "document.getElementById('status'), {childList: true, characterData: true, subtree: true}));")
    with chromium_page(server + "/", init_script=record) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        page.evaluate("modelInfo.explain_loaded = false")  # as GET /model says at a fresh start
        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        expect(page.locator("#heatmap")).to_have_attribute("src", re.compile("^data:image/png"))
        first = page.evaluate("window.statuses.splice(0)")
        assert any(s.startswith("Analysing… (the first heatmap after the service started") for s in first), first
        page.set_input_files("#file", str(xray))
        expect(page.locator("#status")).to_have_text("")
        assert "Analysing…" in page.evaluate("window.statuses") and not any(
            "first heatmap" in s for s in page.evaluate("window.statuses"))

        problem = ("Grad-CAM heatmaps need PyTorch, which could not be loaded (ImportError: libtorch_cpu.so); "
                   "predictions are not affected. Reinstall torch and restart the service for heatmaps")

        def broken_model(route: Any) -> None:
            info = route.fetch().json()
            route.fulfill(json={**info, "explain_available": False, "explain_loaded": False,
                                "explain_problem": problem})

        def broken_heatmap(route: Any) -> None:
            if "explain=true" in route.request.url:
                route.fulfill(status=501, content_type="application/json", body=json.dumps({"detail": problem}))
            else:
                route.continue_()

        page.route("**/model", broken_model)
        page.route("**/predict*", broken_heatmap)
        page.set_input_files("#file", str(xray))
        expect(page.locator("#heat-label")).to_have_text(f"Heatmap not available: {problem}", timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#decision")).not_to_be_empty()
        assert not errors, errors


def test_the_page_says_which_ensemble_members_the_heatmap_leaves_out(server: str) -> None:
    """The answer's heatmap_unmapped (an mlp member: no feature map) was not on the page: the heatmap read as the
    whole ensemble's evidence. A sentence under the heatmap now names them, and goes with the next film's answer."""
    from playwright.sync_api import expect

    with chromium_page(server + "/", viewport={"width": 1200, "height": 900}) as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")
        sentence = page.locator("#heat-unmapped")
        page.evaluate("([answer, name]) => render(answer, name)", [{**ANSWER, "heatmap_unmapped": ["mlp"]}, "a.png"])
        expect(sentence).to_have_text("The heatmap leaves out the ensemble's mlp member: no feature map to draw, so "
                                      "its share of the score is not shown in it.")
        page.evaluate("([answer, name]) => render(answer, name)",
                      [{**ANSWER, "heatmap_png_base64": None, "heatmap_empty": True,
                        "heatmap_unmapped": ["mlp", "mlp"]}, "b.png"])
        expect(sentence).to_contain_text("the ensemble's mlp, mlp members: no feature map to draw, so their share")
        page.evaluate("([answer, name]) => render(answer, name)", [{**ANSWER, "heatmap_unmapped": []}, "c.png"])
        expect(sentence).to_be_hidden()
        assert not errors, errors


def test_a_refusal_calls_the_training_films_pediatric_only_for_the_shipped_model(server: str) -> None:
    """The page's box and the guard's reason said 'the frontal pediatric chest X-rays the model was trained on' for
    any model: false for a site's own model trained on adults' films. The shipped model's card says pediatric."""
    from playwright.sync_api import expect

    refused = {**ANSWER, "probability": None, "label": None, "in_distribution": False, "refused_by": "image",
               "refusal_kind": "unlike", "ood_reason": "unlike the chest X-rays this model was trained on",
               "refusal_cause": "unlike the chest X-rays this model was trained on", "heatmap_png_base64": None,
               "heatmap_class": None, "heatmap_empty": None}
    with chromium_page(server + "/") as (page, errors):
        expect(page.locator("#model-line")).to_contain_text("resnet10")  # the fitted model: not the shipped one
        page.evaluate("([answer, name]) => render(answer, name)", [refused, "a.png"])
        box = page.locator("#ood-unlike")
        expect(box).to_contain_text("This image differs from the chest X-rays the model was trained on (scanner")
        page.evaluate("describeModel({...modelInfo, shipped: true})")
        expect(box).to_contain_text("This image differs from the frontal pediatric chest X-rays the model was trained "
                                    "on (scanner")
        assert not errors, errors

