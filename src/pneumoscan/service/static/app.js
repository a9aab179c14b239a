// pneumoscan page: upload one X-ray, show P(pneumonia) against the threshold, optional Grad-CAM overlay.
"use strict";
// Addresses are relative to the page ("model", not "/model"): behind a proxy that publishes the service under a
// path (such as /pneumoscan/), requests stay under it.

const $ = (id) => document.getElementById(id);
let modelInfo = null;
let modelRead = 0;  // Date.now() when modelInfo was read
let previewUrl = null;
let latest = 0;  // number of the newest upload: answers to older ones are dropped, never shown
let inFlight = null;  // AbortController of the request under way
let heatWanted = true;  // the clinician's last choice with the heatmap toggle, kept while a film has no heatmap
const BUSY_TRIES = 3;  // a busy service (503) is asked again after the wait it names, this many tries in all
// A dropped network reports nothing for minutes (the browser waits on TCP), and the service's 408 for a stalled
// upload cannot reach a client whose connection is gone: the page keeps its own time.
const STALL_S = 15;  // no upload progress for this long (or the service's idle limit, if shorter): the upload stalled
const ANSWER_S = 30;  // no answer this long after the whole file was sent: the page says so
const PROGRESS_FROM = 1024 * 1024;  // uploads at least this large show how much of them was sent

function show(el, visible) { el.hidden = !visible; }

function setStatus(text) { $("status").textContent = text; }

// Screen readers hear the result in one sentence: the panel that shows it is not a live region. They also hear a
// large upload's progress, by quarters.
function announce(text) { $("announce").textContent = text; }

// Shown in the status, not read out: a live region changing with every percent is read out over and over.
function showQuietly(text) {
  const status = $("status");
  let quiet = status.firstElementChild;
  if (!quiet) {
    quiet = document.createElement("span");
    quiet.setAttribute("aria-hidden", "true");
    status.replaceChildren(quiet);
  }
  quiet.textContent = text;
}

// The error is the alert: nothing said before it (a progress count) is left to be read as current. It is scrolled
// into view: on a phone it comes below the upload button, off the screen, and the page seemed not to react.
function setError(text) {
  $("error").textContent = text || "";
  show($("error"), Boolean(text));
  if (text) {
    announce("");
    $("error").scrollIntoView({ block: "nearest" });
  }
}

// The films the model is meant for (the model card's intended use), then what backs that for this model: before,
// the link to the card, after. The card (GET /model/card) is the shipped model's, and says nothing of another model.
const SHIPPED_SCOPE = [" for pediatric anterior-posterior (AP) chest X-rays, trained on films of children aged one " +
  "to five from one hospital in Guangzhou; it is not validated on adults, lateral views or other hospitals' " +
  "equipment (see its ", "model card", ")"];
const OTHER_SCOPE = [" built with pneumoscan, which is made for pediatric anterior-posterior (AP) chest X-rays, but " +
  "it is not the model shipped with pneumoscan: the ", "model card", " describes that one only, so ask whoever " +
  "trained this model which films it was trained on"];
const UNKNOWN_SCOPE = [" built with pneumoscan, which is made for pediatric anterior-posterior (AP) chest X-rays"];
// The service is down or unreachable: the doctor can only wait or tell IT ("check that it is running" was theirs).
// Said when an upload gets no answer, and in the header when the page could not read the model (GET /model).
const DOWN = "The pneumoscan service did not answer";
const WHAT_TO_DO = "Try again in a minute; if it keeps failing, tell whoever runs pneumoscan at your site " +
  "(IT support).";
const DOWN_NOW = `${DOWN}, so uploads will not work until it does. ${WHAT_TO_DO}`;
// The service starts without PyTorch (its ONNX model predicts) and loads it, for Grad-CAM, when the page asks as it
// opens (warmUp) or a heatmap is first asked for: the first result with a heatmap may take a few seconds more.
const ANALYSING_FIRST = "Analysing… (the first heatmap after the service started can take a few seconds longer)";
const VALIDATION_SOURCE = "The threshold is the model's operating point, chosen on validation data to favour " +
  "sensitivity.";
// A model without the out-of-distribution guard (`pneumoscan fit-guard`) gives a probability for any image.
const NO_GUARD = "This model has no check that an image is a chest X-ray: it gives a probability for any image, a " +
  "photo, a document or an upside-down film too. Upload only frontal chest X-rays.";

// Reads GET /model into `modelInfo` (null when it cannot) and describes that model on the page. Called at start,
// and again when an upload finds it missing or the service answers with other weights or another threshold.
// `keepKnown`: a failed read keeps the model last read, and its description (an upload waiting out a restart's 503
// asks while the service is down: the header said it "did not answer" beside "trying again in 3 s").
async function loadModel(keepKnown = false) {
  try {
    const res = await fetch("model");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    modelInfo = await res.json();
    modelRead = Date.now();
  } catch (err) {
    if (keepKnown && modelInfo !== null) return;
    modelInfo = null;
  }
  describeModel(modelInfo);
}

// Asks the service to load Grad-CAM's model now, in the background, so the first heatmap does not wait for PyTorch.
// Only the page asks: fetching the page itself loads nothing (an uptime monitor's GET / would load it for nobody).
function warmUp() {
  fetch("warm-up", { method: "POST" }).catch(() => {});  // an old service without it, or a failure: no matter
}

function describeModel(info) {
  describeScope(info === null ? UNKNOWN_SCOPE : info.shipped ? SHIPPED_SCOPE : OTHER_SCOPE);
  $("ood-films").textContent = info && info.shipped ? "frontal pediatric chest X-rays" : "chest X-rays";
  $("operating-point").textContent = info ? operatingPoint(info) : "";
  $("threshold-source").textContent = info ? thresholdSource(info) : VALIDATION_SOURCE;
  $("prevalence").textContent = info ? prevalenceText(info.operating_point) : "";
  $("no-guard").textContent = info && info.ood_guard === false ? NO_GUARD : "";
  show($("no-guard"), Boolean($("no-guard").textContent));
  $("model-line").classList.toggle("down", !info);
  if (!info) {
    $("model-line").textContent = DOWN_NOW;
    show($("auc-meaning"), false);
    return;
  }
  $("model-line").replaceChildren(`Model ${info.name} (weights ${info.sha256.slice(0, 12)}), threshold ` +
    `${info.threshold.toFixed(2)}`, ...aucParts(info),
    info.ood_guard ? " · images that do not look like chest X-rays are refused" : "");
}

const AUC_MEANING = "Area under the ROC curve: how well the model's scores rank pneumonia films above normal ones, " +
  "from 0.5 (no better than chance) to 1 (every pneumonia film above every normal one), on films kept out of its " +
  "training.";

// The model's ROC AUC in the header, in words a clinician reads ("AUC 0.985 on its test set"), "AUC" a button that
// shows or hides what it means under the line (a hover tooltip was out of reach by touch and keyboard); the
// validation figure, said to be one, when the model has no test figures; nothing without either.
function aucParts(info) {
  const testAuc = info.test_metrics?.roc_auc?.value, valAuc = info.val_metrics?.roc_auc?.value;
  const meaning = $("auc-meaning");
  if (testAuc === undefined && valAuc === undefined) {
    show(meaning, false);
    return [];
  }
  meaning.textContent = `AUC: ${AUC_MEANING}`;
  const term = document.createElement("button");
  Object.assign(term, { id: "auc", type: "button", className: "term", textContent: "AUC" });
  term.setAttribute("aria-controls", "auc-meaning");
  term.setAttribute("aria-expanded", String(!meaning.hidden));  // a model read again keeps the reader's choice
  term.addEventListener("click", () => {
    show(meaning, meaning.hidden);
    term.setAttribute("aria-expanded", String(!meaning.hidden));
  });
  return testAuc !== undefined ? [", ", term, ` ${Number(testAuc).toFixed(3)} on its test set`]
    : [", ", term, ` ${Number(valAuc).toFixed(3)} on its validation set (no test figures)`];
}

// The notice's words on the films the model is for, with the link to the card (a new tab: the result stays).
function describeScope([before, linked, after]) {
  if (linked === undefined) {
    $("scope").textContent = before;
    return;
  }
  const link = document.createElement("a");
  Object.assign(link, { id: "card-link", href: "model/card", target: "_blank", rel: "noopener", textContent: linked });
  $("scope").replaceChildren(before, link, after);
}

// Where the threshold in use came from (GET /model's operating_point): the model's stored one, or this service's
// --target-recall or --threshold; and the films it was chosen on for which sensitivity.
function thresholdSource(info) {
  const point = info.operating_point, source = info.threshold_source ?? {};
  const reweighted = point.prevalence_from === "prevalence";
  if (point.threshold_from === "threshold") {
    return "The threshold in use was set when this service was started" + (reweighted ? "."
      : ` (the model's own operating point is ${info.stored_threshold.toFixed(2)}).`);
  }
  const films = point.chosen_on === "local"
    ? `this site's own ${source.n_normal + source.n_pneumonia} labelled films (${source.date})` : "validation data";
  const aim = point.target_recall === null ? "to favour sensitivity" : `for a sensitivity of ${point.target_recall}`;
  if (point.threshold_from === "target_recall") {
    return `The threshold was chosen when this service was started, ${aim} on ${films}.`;
  }
  const stored = info.stored_threshold.toFixed(2);
  return `The threshold is the model's operating point, chosen on ${films} ${aim}` +
    (reweighted ? ` (${stored} on the model's own scores, re-weighted with them for the prevalence below).` : ".");
}

// The space before "%" does not break: a phone's line ended in "prevalence of 50" and the next began with "%".
const PCT = "\u00a0%";

// A prevalence as a percentage with up to three significant digits: 0.5 -> "50 %", 0.743 -> "74.3 %".
function percent(p) { return `${Number((p * 100).toPrecision(3))}${PCT}`; }

// The pneumonia prevalence P(pneumonia) assumes: the model's prior, or the one this service was started with.
function prevalenceText(point) {
  return point.prevalence_from === "prevalence"
    ? `The score is re-weighted for a pneumonia prevalence of ${percent(point.prevalence)}, set for the patients ` +
      "of this service when it was started."
    : `The score assumes a pneumonia prevalence of ${percent(point.prevalence)}, the balance the model was trained ` +
      "on, not that of your patients.";
}

// Whether a 200 answer is a prediction, not, say, a proxy's sign-in page after its session ran out.
function isPrediction(body) {
  return typeof body.threshold === "number" && typeof body.model_sha256 === "string" &&
    (body.in_distribution === false || typeof body.probability === "number");
}

// Whether the page's model description is of the weights, threshold and prevalence that gave `result`.
function describes(info, result) {
  return info !== null && info.sha256.slice(0, 12) === result.model_sha256 && info.threshold === result.threshold &&
    info.operating_point.prevalence === result.prevalence;
}

// Whether the threshold in use decides every film as the one the test figures were measured at: the same
// threshold on the model's own scores, or the stored one moved with the scores to another prevalence.
function testedThreshold(info, test) {
  const point = info.operating_point;
  if (point?.threshold_from === "model" && point.prevalence_from === "prevalence") {
    return test.threshold === info.stored_threshold;
  }
  return point?.prevalence_from !== "prevalence" && test.threshold === info.threshold;
}

// Sensitivity and specificity measured on the model's test set at the threshold in use, when it has them.
function operatingPoint(info) {
  const test = info.test_metrics ?? {};
  if (test.recall === undefined || test.specificity === undefined || !testedThreshold(info, test)) return "";
  const sens = test.recall.value, spec = test.specificity.value;
  return `At this threshold, on its test set of ${test.n} films from the training hospital, it flagged ` +
    `${rateText(sens)}${PCT} of pneumonia films and ${rateText(1 - spec)}${PCT} of normal films ` +
    `(sensitivity ${sens.toFixed(digitsApart(sens, sens, 2))}, specificity ${spec.toFixed(digitsApart(spec, spec, 2))}).`;
}

// A share as a whole percentage, with the decimals it takes not to read as none or all: 0.996 is "99.6", not "100".
function rateText(share) {
  let digits = 0;
  const edge = (d) => share > 0 && share < 1 && [0, 100].includes(Number((share * 100).toFixed(d)));
  while (digits < 4 && edge(digits)) digits++;
  return (share * 100).toFixed(digits);
}

// Decimals (at least `min`, at most 6) that tell p from t: "P = 0.98, below the threshold 0.98" reads as a contradiction.
// Nor does a probability short of certainty print as 0 or 1: P = 0.996 is not "P = 1.00".
function digitsApart(p, t, min) {
  return shortOfCertain(p, digitsShared(t, p, min));
}

// `digits`, or more (at most 6) until p short of 0 or 1 does not print as 0 or 1.
function shortOfCertain(p, digits) {
  const certain = (d) => p > 0 && p < 1 && (Number(p.toFixed(d)) === 0 || Number(p.toFixed(d)) === 1);
  while (digits < 6 && certain(digits)) digits++;
  return digits;
}

// Decimals (at least `min`, at most 6) for a threshold or an interval's end `t` printed beside P = p: those that tell
// it from p, not the more p itself may need to fall short of 1 (P = 0.99998 printed the threshold 0.61511, while the
// header and the meter said 0.62 and a film below it 0.615). Equal to p, t takes p's own: P = 0.9995 "at or above
// the threshold 1.00" read as a film flagged below its threshold. Nor does t short of 0 or 1 print as 0 or 1: a
// threshold of 0.9995 is not "1.00", above every P.
function digitsFrom(t, p, min) {
  return shortOfCertain(t, digitsShared(t, p, min));
}

// The decimals (at least `min`, at most 6) from which p and t, each then given the more it needs not to print as 0
// or 1 (`shortOfCertain`), print apart: both must hold at once, or P = 0.99949 and a threshold of 0.9995, apart at 3
// only as "1.000", took a fourth for it and read "P = 0.9995, below the threshold 0.9995". Equal, they take `min`.
function digitsShared(t, p, min) {
  if (p === t) return min;
  const apart = (d) => {
    const shown = Math.max(shortOfCertain(p, d), shortOfCertain(t, d));
    return p.toFixed(shown) !== t.toFixed(shown);
  };
  let digits = min;
  while (digits < 6 && !apart(digits)) digits++;
  return digits;
}

function decisionText(p, threshold, positive) {
  const P = p.toFixed(digitsApart(p, threshold, 2)), T = threshold.toFixed(digitsFrom(threshold, p, 2));
  return positive
    ? `Flagged for pneumonia — P = ${P}, at or above the threshold ${T}`
    : `Not flagged for pneumonia — P = ${P}, below the threshold ${T}`;
}

// The films the threshold and its interval were chosen on: "the 785 validation films", "this site's 120 labelled films".
function chosenOnFilms(info) {
  const point = info?.operating_point, source = info?.threshold_source ?? {};
  if (point?.chosen_on === "local") return `this site's ${source.n_normal + source.n_pneumonia} labelled films`;
  const n = info?.val_metrics?.n;
  return n ? `the ${n} validation films` : "the validation films";
}

// The threshold's interval, each end with the decimals that tell it from p: P = 0.745 is not "within 0.51 to 0.74".
function intervalText(interval, p) {
  const digits = Math.max(digitsFrom(interval[0], p, 2), digitsFrom(interval[1], p, 2));
  return `${interval[0].toFixed(digits)} to ${interval[1].toFixed(digits)}`;
}

function borderlineText(interval, p) {
  return `Borderline: P is within the threshold's uncertainty, ${intervalText(interval, p)}`;
}

// What "near the threshold" means for this result: within the threshold's 95 % interval, when it is known.
function nearText(result, info) {
  const interval = result.threshold_ci95 ?? null;
  if (interval === null) {
    return info?.operating_point?.threshold_from === "threshold"
      ? "This threshold was set by hand, so its uncertainty is not known and no result is marked borderline."
      : "This model does not record how its threshold was chosen (the scores and the sensitivity it was chosen " +
        "for), so its uncertainty is not known and no result is marked borderline.";
  }
  return "A probability within the threshold's uncertainty, " +
    `${intervalText(interval, result.probability)} (its 95${PCT} ` +
    `interval over resamples of ${chosenOnFilms(info)} it was chosen on), is marked borderline.`;
}

// A borderline result: the decision stands, with a box saying it is uncertain and why; the meter's band shows the
// interval for every result.
function renderUncertainty(result, positive) {
  const interval = result.threshold_ci95 ?? null, p = result.probability;
  const borderline = result.borderline === true && interval !== null;
  show($("borderline"), borderline);
  $("decision").classList.toggle("uncertain", borderline);
  if (borderline) {
    $("borderline-text").textContent = borderlineText(interval, p);
    $("borderline-why").textContent = `The decision (${positive ? "flagged" : "not flagged"}) stands, but ` +
      `thresholds chosen the same way on plausible resamples of ${chosenOnFilms(modelInfo)} fall on either side of ` +
      "this film: read it as uncertain.";
  }
  const band = $("band");
  show(band, interval !== null);
  if (interval !== null) {
    band.style.left = `${(interval[0] * 100).toFixed(1)}%`;
    band.style.width = `${((interval[1] - interval[0]) * 100).toFixed(1)}%`;
  }
  // the band's title is a tooltip, out of reach by touch and keyboard: this row says what the band is
  $("interval").textContent = interval === null ? "not known"
    : `${intervalText(interval, p)} (95${PCT} interval, the hatched band on the bar)`;
  $("near").textContent = nearText(result, modelInfo);
  return borderline ? borderlineText(interval, p) : "";
}

// Why the film has no picture of its own, the first words of the note in its place (describeNoPreview).
const FORMAT_NOT_SHOWN = "This format cannot be shown in the browser";
const DEEP_PNG_NOT_SHOWN = "The browser cannot show this 16-bit film's grey levels as the service read them";
let noPreviewWhy = FORMAT_NOT_SHOWN;

// The film is not shown, for the reason `why`: the note says so in its place, and the heatmap, if any, is the picture.
function hideFilm(why) {
  noPreviewWhy = why;
  show($("xray"), false);
  show($("shown-otherwise"), false);
  show($("no-preview"), true);
  $("heatmap").classList.add("standalone");
  describeNoPreview();
}

function showPreview(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const img = $("xray"), url = previewUrl;
  show($("no-preview"), false);
  show($("shown-otherwise"), false);
  show(img, true);
  img.alt = `The uploaded image, ${file.name}`;  // not "chest X-ray": it may be refused as none
  // may come after the answer: the heatmap, if any, becomes the picture from then on
  img.onerror = () => { if (previewUrl === url) hideFilm(FORMAT_NOT_SHOWN); };  // else a newer upload's is shown
  img.src = previewUrl;
}

// The heatmap toggle: with a heatmap, the clinician's choice; without one, unticked and disabled (a greyed tick read
// as "heatmap on"), its label, which is the checkbox's accessible name, saying why it is off.
function setHeatToggle(available) {
  const toggle = $("heat-toggle");
  toggle.disabled = !available;
  toggle.checked = available && heatWanted;
}

// The heatmap and its colour scale are shown together; the scale is printed whenever there is a heatmap.
function showHeat(visible) {
  show($("heatmap"), visible);
  show($("heat-legend"), visible);
  describeNoPreview();
}

// A film the browser cannot show (DICOM, TIFF), or not as read (a `stretched` PNG), with a heatmap: the heatmap is
// then the film's only picture, and the note under it said the format "cannot be shown" right under the film. The hint to switch the heatmap on is for the
// screen only: on paper the heatmap is printed even when off. A refused film has no result to call valid: "the
// result is still valid" beside "No prediction made" read as if there were one.
function describeNoPreview() {
  const heat = $("heatmap"), note = $("no-preview");
  const only = heat.classList.contains("standalone") && heat.hasAttribute("src");
  const refused = !$("ood").hidden;
  note.textContent = noPreviewWhy + (refused ? "." : "; the result is still valid.") +
    (only ? " The heatmap picture is the film as the service read it, with the overlay." : "");
  if (only && heat.hidden) {
    const hint = document.createElement("span");
    Object.assign(hint, { className: "screen-only", textContent: " Switch the heatmap on to see it." });
    note.append(hint);
  }
}

// The guard refused the image: a warning instead of the probability bar and decision. The answer says what the
// refusal means (refusal_kind: not a chest X-ray, such as a photo or a blank image; a film the model cannot read as
// sent, such as a lateral, black-and-white or upside-down one, whose cause says what to upload instead; or unlike
// the training X-rays, as a few real chest X-rays are) and what the guard found (refusal_cause): the guard's causes
// and words are the server's alone.
function renderRejected(result, name) {
  const kind = result.refusal_kind || "unlike";  // none given: the box that has a chest film read without the model
  const cause = result.refusal_cause || result.ood_reason || "";
  $("ood-text").textContent = kind === "not_a_chest_xray"
    ? `Not a chest X-ray — no prediction made: ${cause}`
    : `No prediction made: ${cause}`;
  announce(`Result for ${name}: ${$("ood-text").textContent}`);
  show($("ood-not-xray"), kind === "not_a_chest_xray");
  show($("ood-unlike"), kind === "unlike");
  show($("ood-as-sent"), kind === "as_sent");
  show($("ood"), true);
  show($("scores"), false);
  const heat = $("heatmap");
  heat.removeAttribute("src");
  $("heat-legend").classList.remove("available");
  showHeat(false);
  $("heat-caption").textContent = "";
  setHeatToggle(false);
  show($("heat-note"), false);
  showUnmapped([]);
  $("heat-label").textContent = "No heatmap: no prediction was made";
}

// Says which of an ensemble's members the heatmap leaves out (none: the sentence is hidden), as `explain` does.
function showUnmapped(members) {
  const names = members.join(", ");
  $("heat-unmapped").textContent = members.length === 0 ? "" :
    `The heatmap leaves out the ensemble's ${names} member${members.length > 1 ? "s" : ""}: no feature map to ` +
    `draw, so ${members.length > 1 ? "their" : "its"} share of the score is not shown in it.`;
  show($("heat-unmapped"), members.length > 0);
}

// A film the service stretched (`stretched`: a 12-bit film in a 16-bit PNG) that is still shown, as no heatmap took its
// place (none asked for or made, an empty map, a refusal), is drawn by the browser from its stored grey levels: near
// black when stored low, nearly white when stored high, flat grey when narrow. The note under it, on screen and on
// paper, says which, as the answer's `shown` does (all three when it does not say).
const SHOWN_HOW = {
  darker: "This 16-bit film is shown darker here than the service read it",
  paler: "This 16-bit film is shown paler here than the service read it",
  flatter: "This 16-bit film is shown flatter (with less contrast) here than the service read it",
};
const SHOWN_ANY_WAY = "This 16-bit film looks different here from how the service read it (darker, paler or flatter)";

function noteShownOtherwise(result) {
  $("shown-how").textContent = SHOWN_HOW[result.shown] || SHOWN_ANY_WAY;
  show($("shown-otherwise"), result.stretched === true && !$("xray").hidden);
}

// Shows the result, scrolled into view when it is not (on a phone it starts below the upload button).
function reveal() {
  show($("result"), true);
  $("panel").scrollIntoView({ block: "nearest" });
}

// A thumbnail (the service's size_warning): the result, or the refusal, is shown with a box saying that the film is
// too small to read reliably and to send the original. Returns the box's words ("" when there is none).
function renderSmall(result) {
  const warning = result.size_warning ?? null;
  show($("small"), warning !== null);
  $("small-text").textContent = warning === null ? "" : `This film is ${warning}.`;
  return $("small-text").textContent;
}

// When the service analysed the film: the answer's analysed_at (UTC, by the service's clock, not this computer's) in
// this computer's time zone, named, ISO-like and 24 h, with its offset from UTC ("2026-11-27 14:05 UTC+01:00
// (Central European Standard Time), by the service's clock"): a printed result is a record (the offset keeps it
// unambiguous across a clock change or a time zone), and its "Processing time" says how long it took, not when.
function analysedText(analysedAt) {
  const when = new Date(typeof analysedAt === "string" ? analysedAt : NaN);
  if (Number.isNaN(when.getTime())) return "not given by the service";
  const two = (n) => String(n).padStart(2, "0");
  const east = -when.getTimezoneOffset();  // minutes ahead of UTC at that moment
  const offset = `UTC${east < 0 ? "-" : "+"}${two(Math.floor(Math.abs(east) / 60))}:${two(Math.abs(east) % 60)}`;
  // the zone's name at that moment ("Central European Summer Time"): its IANA id can be an old alias (Asia/Calcutta)
  const zone = new Intl.DateTimeFormat("en", { timeZoneName: "long" }).formatToParts(when)
    .find((part) => part.type === "timeZoneName")?.value;
  return `${when.getFullYear()}-${two(when.getMonth() + 1)}-${two(when.getDate())} ` +
    `${two(when.getHours())}:${two(when.getMinutes())} ${offset}${zone ? ` (${zone})` : ""}, by the service's clock`;
}

// `name` is the uploaded file's: the result always says which film it belongs to.
function render(result, name) {
  $("file-name").textContent = name;
  $("analysed").textContent = analysedText(result.analysed_at);
  $("model").textContent = `${result.model_name} · weights ${result.model_sha256}`;
  $("latency").textContent = `${Math.round(result.latency_ms)} ms`;
  $("request-id").textContent = result.request_id || "";
  const small = renderSmall(result);
  if (result.in_distribution === false) {
    renderRejected(result, name);
    noteShownOtherwise(result);
    if (small) announce(`${$("announce").textContent}. ${small}`);
    reveal();
    return;
  }
  show($("ood"), false);
  show($("scores"), true);
  const positive = modelInfo ? result.label === modelInfo.class_names[modelInfo.class_names.length - 1]
                             : result.probability >= result.threshold;
  const decision = $("decision");
  decision.textContent = decisionText(result.probability, result.threshold, positive);
  decision.className = "decision " + (positive ? "positive" : "negative");

  $("fill").style.width = `${(result.probability * 100).toFixed(1)}%`;
  $("fill").className = "fill " + (positive ? "positive" : "negative");
  $("marker").style.left = `${(result.threshold * 100).toFixed(1)}%`;
  // near either end the label lies on the meter's side of the marker: centred, it ran off a phone's screen
  $("marker").classList.toggle("label-start", result.threshold < 0.2);
  $("marker").classList.toggle("label-end", result.threshold > 0.8);
  // the decision line's decimals: the header's 0.62, and never 1.00 for 0.9995
  const marked = result.threshold.toFixed(digitsFrom(result.threshold, result.probability, 2));
  $("marker-label").textContent = `threshold ${marked}`;

  const digits = digitsApart(result.probability, result.threshold, 3);
  $("prob").textContent = result.probability.toFixed(digits);
  $("meter").setAttribute("aria-valuenow", $("prob").textContent);  // P as the figures print it: 0.9996, not 1.000
  $("label").textContent = result.label;
  $("threshold").textContent = result.threshold.toFixed(digitsFrom(result.threshold, result.probability, 3));
  const uncertain = renderUncertainty(result, positive);
  // read out instead of the marker's text inside the meter, which would otherwise pass for its value
  $("meter").setAttribute("aria-valuetext", `${$("prob").textContent}, threshold ${$("threshold").textContent}` +
    (uncertain ? `; ${uncertain}` : ""));
  announce(`Result for ${name}: ${decision.textContent}` + (uncertain ? `. ${uncertain}` : "") +
           (small ? `. ${small}` : ""));

  const heat = $("heatmap"), toggle = $("heat-toggle");
  if (result.heatmap_class && modelInfo) modelInfo.explain_loaded = true;  // a heatmap was made: Grad-CAM is loaded
  showUnmapped(result.heatmap_unmapped || []);
  if (result.heatmap_png_base64) {
    heat.src = `data:image/png;base64,${result.heatmap_png_base64}`;
    setHeatToggle(true);
    $("heat-label").textContent = `Show heatmap: where the model saw evidence for ${result.heatmap_class} ` +
      "(brighter = stronger, relative to this image)";
    $("heat-caption").textContent = "Heatmap (the film with the Grad-CAM overlay): where the model saw evidence " +
      `for ${result.heatmap_class} (brighter = stronger, relative to this image).`;
    heat.alt = `Grad-CAM heatmap of ${name}: where the model saw evidence for ${result.heatmap_class}`;
    // A film the service stretched (a 12-bit film in a 16-bit PNG) is drawn by the browser from its stored grey
    // levels, often near black: its heatmap, the film as read, takes its place. Only then: a film without a heatmap
    // (refused, or none made) is shown as the browser draws it, rather than not at all.
    if (result.stretched === true) hideFilm(DEEP_PNG_NOT_SHOWN);
    // Without a browser preview (DICOM, TIFF) the overlay is the only picture: show it in the flow.
    heat.classList.toggle("standalone", $("xray").hidden);
    $("heat-legend-class").textContent = result.heatmap_class;
    $("heat-legend").classList.add("available");
    showHeat(toggle.checked);
    show($("heat-note"), true);
  } else {
    heat.removeAttribute("src");
    $("heat-caption").textContent = "";
    setHeatToggle(false);
    show($("heat-note"), false);
    // an all-zero map would draw as the bare film, which reads as evidence nowhere or a drawing fault: say so
    $("heat-label").textContent = result.heatmap_empty
      ? `Heatmap empty: Grad-CAM found no positive evidence for ${result.heatmap_class} in this film`
      : modelInfo && modelInfo.explain_problem ? `Heatmap not available: ${modelInfo.explain_problem}`
      : "Heatmap not available for this model";
    $("heat-legend").classList.remove("available");
    showHeat(false);
  }
  noteShownOtherwise(result);
  reveal();
}

// Seconds to wait before asking a busy service again: its Retry-After header, kept within 1-30 s.
function retryAfter(res) {
  const seconds = Number.parseInt(res.header("Retry-After") ?? "", 10);
  return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 1), 30) : 5;
}

// Resolves after `ms`, or rejects with an AbortError as soon as `signal` aborts (a newer upload replaced this one).
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("replaced by a newer upload", "AbortError"));
    }, { once: true });
  });
}

// A failed upload whose message is the whole sentence the page shows (what happened, what to do).
class ConnectionProblem extends Error {}

// No answer came: the connection was refused, or dropped after the whole file was sent.
class NoAnswer extends ConnectionProblem {}

// Whether an answer is the service's own: its errors are JSON with a `detail` sentence (and an X-Request-ID). A reverse
// proxy's page (nginx's "503 Service Temporarily Unavailable" HTML) or empty body is not.
function fromService(res) {
  return /json/i.test(res.header("Content-Type") ?? "") && typeof res.body.detail === "string";
}

// Whether the hospital's network, not the service, failed the upload: the service never answers 502 or 504, and its
// own 503s are JSON (fromService); a gateway's 502, 503 or 504 means it could not reach the service.
function gatewayFailed(res) {
  return res.status === 502 || res.status === 504 || (res.status === 503 && !fromService(res));
}

// What the page says for gatewayFailed(res): not the service's fault, nor the file's.
function unreachable(status) {
  return "The pneumoscan service could not be reached through the hospital's network or proxy, so this file was " +
    "not analysed (nothing is wrong with it). Try again in a minute; if it keeps failing, tell IT support (the " +
    `network or proxy answered HTTP ${status} in place of the service).`;
}

// The proxy's upload limit that lets every request the service takes through, in whole MB (nginx's "m" is the
// service's MB, 1,048,576 bytes): GET /model's max_request_mb, a whole /predict/batch body or a /predict file of
// max_upload_mb with its multipart envelope. An older service does not give it: the per-file limit plus 1 MB, which
// covers that envelope. The service's per-file limit alone turned away batches of 50 to 100 MB.
function proxyLimitMb(info) {
  const largest = typeof info.max_request_mb === "number" ? info.max_request_mb
    : Math.max(info.max_batch_mb, info.max_upload_mb + 1);
  return Math.ceil(largest);
}

// What the page says when an upload's refusal is not the service's own (fromService): the hospital's proxy answered in
// its place, typically its upload limit (nginx's client_max_body_size is 1 MB unless raised, below one DICOM film) or
// an expired sign-in. "request failed (HTTP 413)" told the clinician nothing. `info`: GET /model's answer, or null.
function proxyRefused(status, info) {
  const notAnalysed = "so this file was not analysed (nothing is wrong with it).";
  if (status === 413) {
    const mb = info ? proxyLimitMb(info) : NaN;  // NaN: the limits are not known
    return "The hospital's network or proxy refused this file as too large before it reached the pneumoscan " +
      `service, ${notAnalysed} Tell IT support: the proxy's upload limit ` +
      (Number.isFinite(mb) ? `must be at least ${mb} MB (nginx: client_max_body_size ${mb}m), `
          : "(nginx's client_max_body_size) must be at least ") +
      "the largest request the service takes.";
  }
  if (status === 401 || status === 403 || status === 407) {
    return `The hospital's network or proxy did not let this upload through (HTTP ${status}), ${notAnalysed} ` +
      "Reload the page, sign in if asked, and choose the file again; if it keeps failing, tell IT support.";
  }
  return `The hospital's network or proxy answered HTTP ${status} in place of the pneumoscan service, ${notAnalysed} ` +
    `Try again in a minute; if it keeps failing, tell IT support (HTTP ${status}).`;
}

const NOT_ANALYSED = "so this file was not analysed (nothing is wrong with it). Check the network connection, then " +
  "choose the file again.";

const NO_ANSWER = `${DOWN}, so this file was not analysed (nothing is wrong with it). ${WHAT_TO_DO}`;

// Seconds without upload progress after which the upload is given up: STALL_S, or the service's own idle limit when
// shorter (it has dropped the upload by then).
function stallSeconds() {
  const idle = modelInfo?.upload_idle_s;
  return typeof idle === "number" && idle > 0 ? Math.min(STALL_S, idle) : STALL_S;
}

// POSTs `form` to `url` with XMLHttpRequest, which (unlike fetch) reports upload progress. Resolves with
// {status, ok, header(name), body} (body: the parsed JSON, or {}); rejects with a ConnectionProblem when no upload
// progress comes for stallSeconds() or no answer within ANSWER_S of the whole file being sent, with an Error when
// the connection fails, and with an AbortError when `signal` aborts. `onProgress(loaded, total)` follows the upload.
function post(url, form, signal, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let timer = null, settled = false, loaded = 0, sent = false;
    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(value);
    };
    const giveUp = (message) => {
      settle(reject, new ConnectionProblem(message));
      xhr.abort();
    };
    const stall = stallSeconds();
    const waitFor = (seconds, message) => {
      clearTimeout(timer);
      timer = setTimeout(() => giveUp(message), seconds * 1000);
    };
    const stalled = () => waitFor(stall, `The upload stalled: nothing more of the file could be sent for ${stall} s ` +
      `(the network connection has probably dropped), ${NOT_ANALYSED}`);
    xhr.upload.addEventListener("progress", (e) => {
      loaded = e.loaded;
      stalled();
      if (onProgress) onProgress(e.loaded, e.total);
    });
    xhr.upload.addEventListener("load", () => {
      sent = true;
      waitFor(ANSWER_S, `No answer came within ${ANSWER_S} s of sending the file (the network connection may have ` +
        `dropped, or the service is overloaded), ${NOT_ANALYSED}`);
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON: the caller says what it got */ }
      settle(resolve, { status: xhr.status, ok: xhr.status >= 200 && xhr.status < 300,
                        header: (name) => xhr.getResponseHeader(name), body });
    });
    xhr.addEventListener("error", () => settle(reject, loaded > 0 && !sent
      ? new ConnectionProblem(`The upload was cut off before the whole file was sent, ${NOT_ANALYSED}`)
      : new NoAnswer(NO_ANSWER)));
    signal.addEventListener("abort", () => {
      settle(reject, new DOMException("replaced by a newer upload", "AbortError"));
      xhr.abort();
    }, { once: true });
    xhr.open("POST", url);
    stalled();
    xhr.send(form);
  });
}

// Follows the upload `mine` for post(): an upload of PROGRESS_FROM or more shows the share sent with every percent,
// and is read out at its start, at each quarter and when sent in full ("Analysing…").
function progressReporter(mine) {
  let heard = null;  // the quarter last read out
  return (loaded, total) => {
    if (mine !== latest || total < PROGRESS_FROM) return;
    if (loaded >= total) {
      if (heard !== 100) setStatus(modelInfo && modelInfo.explain_available && !modelInfo.explain_loaded
        ? ANALYSING_FIRST : "Analysing…");
      announce("");
      heard = 100;
      return;
    }
    const share = Math.floor((100 * loaded) / total), quarter = Math.floor(share / 25) * 25;
    showQuietly(`Uploading… ${share}${PCT} sent`);
    if (quarter !== heard) announce(`Uploading… ${quarter}${PCT} sent`);
    heard = quarter;
  };
}

// Whether heatmaps, off because the service ran out of memory loading Grad-CAM, are tried again by now: GET /model
// then says whether the next upload asks for one (else the page would not ask again until reloaded).
function heatmapsBack() {
  const wait = modelInfo.explain_retry_s;
  return !modelInfo.explain_available && typeof wait === "number" && Date.now() >= modelRead + wait * 1000;
}

// The first of `files` (a FileList); several at once are refused, so that no film goes unanalysed unnoticed.
async function analyse(files) {
  const file = files[0];
  if (!file) return;
  const mine = ++latest;
  if (inFlight) inFlight.abort();
  inFlight = null;
  setStatus("");
  setError("");
  announce("");
  show($("result"), false);
  if (files.length > 1) {
    setError(`${files.length} files were dropped; drop one X-ray at a time, so that each result is ` +
             "shown with its own film.");
    return;
  }
  if (!modelInfo || heatmapsBack()) {  // not known (GET /model failed as the page opened), or may be back
    await loadModel();
    if (mine !== latest) return;
  }
  const limitMb = modelInfo ? modelInfo.max_upload_mb : null;
  if (limitMb && file.size > limitMb * 1024 * 1024) {
    setError(`${file.name}: this file is ${(file.size / 1048576).toFixed(1)} MB, above the ${limitMb} MB limit; ` +
             "export a smaller image (downscaled or compressed) and try again.");
    return;
  }
  showPreview(file);
  setStatus("Analysing…");
  $("status").scrollIntoView({ block: "nearest" });  // on a phone it is under the upload button, off the screen
  const controller = new AbortController();
  inFlight = controller;
  const form = new FormData();
  form.append("file", file, file.name);
  let explain = modelInfo ? modelInfo.explain_available : false;
  if (explain && !modelInfo.explain_loaded) setStatus(ANALYSING_FIRST);  // PyTorch may still be loading for it
  try {
    let res, body;
    let waiting = null;  // after a 503 that names a wait: {wait, said}, the seconds and what the status said
    const waitOut = async () => {
      setStatus(waiting.said);
      await sleep(waiting.wait * 1000, controller.signal);
      setStatus("Analysing…");
    };
    // A 503 with Retry-After means the service is busy (its memory for uploads is full), not that the file is wrong:
    // ask again after the wait it names, so that a busy moment costs the clinician a few seconds rather than a second
    // drop.
    for (let tries = 1; ; tries++) {
      try {
        res = await post(`predict?explain=${explain}`, form, controller.signal, progressReporter(mine));
      } catch (err) {
        // no service yet, after a 503 that named a wait: a restart taking longer than it said, waited out the same
        // way (within the same tries) rather than "did not answer" with tries left
        if (!(err instanceof NoAnswer) || waiting === null || tries >= BUSY_TRIES || mine !== latest) throw err;
        await waitOut();
        continue;
      }
      body = res.body;
      if (mine !== latest) return;
      if (explain && (res.status === 501 || (res.status === 503 && fromService(res)))) {
        // 501: restarted with a model Grad-CAM cannot explain; 503 while heatmaps are off for a while (memory ran
        // short loading Grad-CAM's model: GET /model says so): ask without a heatmap. Another 503 is waited out below,
        // a stopping service's too, whose GET /model fails (the model last read is kept): asked again at once, it
        // had not restarted yet.
        await loadModel(true);
        if (mine !== latest) return;
        if (res.status === 501 || (modelInfo && !modelInfo.explain_available)) {
          explain = false;
          continue;
        }
      }
      // after a 503 that named a wait, a proxy failing to reach the service (gatewayFailed: nginx's 502 or 504 while
      // it restarts) is that restart taking longer than it said, waited out as no answer is, within the same tries
      const named = res.status === 503 && res.header("Retry-After") != null;
      if (!named && gatewayFailed(res) && waiting !== null && tries < BUSY_TRIES) {
        await waitOut();
        continue;
      }
      // A 503 without Retry-After is a fault of the service (its model file changed or gone, damaged weights, the
      // audit log) or a proxy failing to reach it (gatewayFailed): asking again at once changes nothing.
      if (res.status !== 503 || tries >= BUSY_TRIES || res.header("Retry-After") == null) break;
      const wait = retryAfter(res);
      // a proxy's 503 that names a wait (a maintenance page, a load balancer) is waited out too, said as the network
      waiting = { wait, said: gatewayFailed(res)
        ? `The service could not be reached through the hospital's network or proxy; trying again in ${wait} s…`
        : `The service is busy or restarting; trying again in ${wait} s…` };  // a stop's 503 is waited out too
      await waitOut();
    }
    if (!res.ok) {
      const detail = typeof body.detail === "string" ? body.detail : `request failed (HTTP ${res.status})`;
      if (gatewayFailed(res)) {
        setStatus("");
        setError(unreachable(res.status));
        return;
      }
      if (res.status === 503 && res.header("Retry-After") == null) {
        setStatus("");
        setError(`The service has a problem of its own, so this file was not analysed (nothing is wrong with it); ` +
                 `tell whoever runs pneumoscan (IT support): ${detail}`);
        return;
      }
      if (res.status === 503) {
        setStatus("");
        setError(`The service is busy, so this file was not analysed (nothing is wrong with it): ${detail}`);
        return;
      }
      if (res.status === 408) {  // the upload stopped arriving: the connection, not the file
        setStatus("");
        setError(`The upload did not reach the service in full, so this file was not analysed (nothing is wrong ` +
                 `with it): ${detail}`);
        return;
      }
      if (!fromService(res)) {  // a proxy's page or empty body: its status alone says nothing to a clinician
        setStatus("");
        setError(proxyRefused(res.status, modelInfo));
        return;
      }
      throw new Error(detail);
    }
    if (!isPrediction(body)) {
      throw new Error("the answer was not a pneumoscan result (perhaps a sign-in page of the hospital's proxy); " +
                      "reload the page, sign in if asked, and try again");
    }
    if (!describes(modelInfo, body)) {  // restarted with other weights or threshold: describe those instead
      await loadModel();
      if (mine !== latest) return;
    }
    setStatus("");
    render(body, file.name);
  } catch (err) {
    if (mine !== latest) return;  // aborted or overtaken by a newer upload
    setStatus("");
    setError(err instanceof ConnectionProblem ? err.message : `Could not analyse this file: ${err.message}`);
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

function init() {
  const drop = $("drop"), input = $("file");
  input.addEventListener("change", () => {
    analyse(input.files);
    input.value = "";  // choosing the same file again analyses it again
  });
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  // A file dropped anywhere on the page is analysed (the zone's drops arrive here too): left to the browser, a drop
  // beside the zone opens the film in this tab, leaving the page, or saves a DICOM file to the Downloads folder.
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    analyse(e.dataTransfer.files);
  });
  $("heat-toggle").addEventListener("change", (e) => {
    heatWanted = e.target.checked;
    if ($("heatmap").src) showHeat(e.target.checked);
  });
  warmUp();
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);
