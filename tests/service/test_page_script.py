"""The clinicians' page's script in Node, with the few browser objects an upload touches stubbed: fast checks of what
the page says for answers a browser test would need a hospital's proxy for (tests/service/test_browser.py runs the
page in Chromium)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import pneumoscan

APP_JS = Path(pneumoscan.__file__).parent / "service" / "static" / "app.js"
NODE = shutil.which("node")

# Elements that keep what the script writes; XMLHttpRequest answering every upload with STATUS, HEADERS and BODY;
# GET /model answering MODEL. Prints the error box's text once the upload is answered.
HARNESS = r"""
const vm = require("vm"), fs = require("fs");
const [status, headers, body, model] = JSON.parse(process.argv[2]);
const elements = {};
const element = () => ({ textContent: "", hidden: false, style: {}, classList: { add() {}, remove() {}, toggle() {},
  contains() { return false; } }, setAttribute() {}, removeAttribute() {}, hasAttribute() { return false; },
  scrollIntoView() {}, replaceChildren() {}, append() {}, addEventListener() {}, firstElementChild: null });
class XMLHttpRequest {
  constructor() { this.upload = { listeners: {}, addEventListener(t, f) { this.listeners[t] = f; } }; this.on = {}; }
  addEventListener(t, f) { this.on[t] = f; }
  open() {}
  getResponseHeader(name) { return headers[name.toLowerCase()] ?? null; }
  abort() {}
  send() {
    setTimeout(() => {
      this.upload.listeners.load?.();
      Object.assign(this, { status, responseText: body });
      this.on.load();
    }, 0);
  }
}
const context = vm.createContext({
  document: { getElementById: (id) => (elements[id] ??= element()), addEventListener() {},
              createElement: element },
  XMLHttpRequest, FormData: class { append() {} }, URL: { createObjectURL: () => "blob:x", revokeObjectURL() {} },
  fetch: async () => ({ ok: true, status: 200, json: async () => model }),
  setTimeout, clearTimeout, console, DOMException, AbortController, Intl, Date, Number, Math, JSON, Promise,
});
vm.runInContext(fs.readFileSync(process.argv[3], "utf8"), context);
if (process.argv[4] !== undefined) {  // an expression: its value
  process.stdout.write(JSON.stringify(vm.runInContext(process.argv[4], context)));
} else {
  vm.runInContext("analyse([{ name: 'film.dcm', size: 5 * 1048576 }])", context).then(() => {
    process.stdout.write(JSON.stringify({ error: elements.error.textContent, hidden: elements.error.hidden }));
  });
}
"""

MODEL = {"name": "resnet10", "sha256": "32fbb6fd063d" + "0" * 52, "class_names": ["NORMAL", "PNEUMONIA"],
         "threshold": 0.615, "stored_threshold": 0.615, "threshold_source": {}, "shipped": True, "ood_guard": True,
         "operating_point": {"threshold": 0.615, "threshold_from": "model", "target_recall": 0.95,
                             "chosen_on": "validation", "prevalence": 0.5, "prevalence_from": "model_prior"},
         "max_upload_mb": 50.0, "explain_available": False, "explain_loaded": False, "explain_retry_s": None}
NGINX_413 = ("<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request "
             "Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def run_harness(tmp_path: Path, answer: list[object], *expression: str) -> object:
    """What the harness printed: the upload's error box, or EXPRESSION's value."""
    script = tmp_path / "harness.js"
    script.write_text(HARNESS)
    run = subprocess.run([NODE, str(script), json.dumps([*answer, MODEL]), str(APP_JS), *expression],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(run.stdout)


def upload_error(tmp_path: Path, status: int, headers: dict[str, str], body: str) -> str:
    """The page's error box after an upload answered STATUS with HEADERS and BODY."""
    shown = run_harness(tmp_path, [status, headers, body])
    assert isinstance(shown, dict) and not shown["hidden"], shown
    return shown["error"]


pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def test_a_proxys_413_says_the_proxy_refused_the_file_and_what_it_then_needs(tmp_path: Path) -> None:
    """nginx refuses bodies over 1 MB unless told otherwise: the page said "request failed (HTTP 413)"."""
    assert upload_error(tmp_path, 413, {"content-type": "text/html"}, NGINX_413) == (
        "The hospital's network or proxy refused this file as too large before it reached the pneumoscan service, so "
        "this file was not analysed (nothing is wrong with it). Tell IT support: the proxy's upload limit (nginx's "
        "client_max_body_size) must be at least the service's 50 MB.")


@pytest.mark.parametrize("status", [401, 403])
def test_a_proxys_sign_in_refusal_says_to_sign_in_again(status: int, tmp_path: Path) -> None:
    error = upload_error(tmp_path, status, {"content-type": "text/html"}, "<html>Forbidden</html>")
    assert error.startswith(f"The hospital's network or proxy did not let this upload through (HTTP {status})")
    assert "sign in if asked, and choose the file again" in error


def test_the_services_own_refusal_keeps_its_detail(tmp_path: Path) -> None:
    """The service's 413 is JSON with a sentence of its own: that sentence is shown, not the proxy's."""
    detail = "film.dcm: 30000 x 30000 px is over the 150 megapixel limit; downscale it and send it again"
    error = upload_error(tmp_path, 413, {"content-type": "application/json"}, json.dumps({"detail": detail}))
    assert error == f"Could not analyse this file: {detail}"


def test_a_confident_probability_does_not_lengthen_the_threshold(tmp_path: Path) -> None:
    """P = 0.99998 needs five decimals not to read as 1; the threshold beside it took them too ("0.61511"), unlike the
    header's and the meter's 0.62 and another film's 0.615, as if the threshold had changed."""
    shown = run_harness(tmp_path, [200, {}, "{}"], "[decisionText(0.99998, 0.6151051, true), "
                        "intervalText([0.5068493, 0.7443878], 0.99998), decisionText(0.004, 0.6151051, false), "
                        "decisionText(0.6151, 0.6151051, false), digitsApart(0.99998, 0.6151051, 3)]")
    assert shown == ["Flagged for pneumonia — P = 0.99998, at or above the threshold 0.62", "0.51 to 0.74",
                     "Not flagged for pneumonia — P = 0.004, below the threshold 0.62",
                     "Not flagged for pneumonia — P = 0.61510, below the threshold 0.61511", 5]
