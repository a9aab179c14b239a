from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.report.build import SECTION_IDS, files_folder
from pneumoscan.training.config import run_folders

IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]*)"')


def check_self_contained(html_path: Path) -> str:
    """Every section, only embedded PNGs, nothing that reaches the network; returns the HTML."""
    text = html_path.read_text(encoding="utf-8")
    for sid in SECTION_IDS:
        assert re.search(rf'<section id="{sid}"><h2>[^<]+</h2>', text), f"section {sid} missing"
    for needle in ('src="http', "src='http", 'href="http', "url(", "<script", "<link", "<iframe", "@import"):
        assert needle not in text.lower(), needle
    sources = IMG_SRC.findall(text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    pngs = sorted(files_folder(html_path).glob("*.png"))
    assert len(pngs) == len(sources)
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 100
    return text


def test_report_from_validation_predictions(val_report: Path, odd_run: Path) -> None:
    assert val_report == odd_run / "report.html" and (odd_run / "report_files").is_dir()  # default output
    text = check_self_contained(val_report)
    assert '<b>"x"' not in text and "run &lt;b&gt;&quot;x&quot;&amp;y" in text  # the run name, escaped
    assert "validation predictions of the run" in text
    names = {p.stem for p in files_folder(val_report).glob("*.png")}
    assert {"learning_curves", "confusion_matrix", "roc", "pr", "calibration", "feature_maps"} <= names
    assert any(n.startswith("cases_") for n in names)
    assert "max Youden&#x27;s J" in text and "recall &gt;= 0.95" in text and 'class="highlight"' in text
    assert "recall (sensitivity)" in text and "95% interval" in text
    assert re.search(r"what --prevalence corrects from\)</t[hd]>\s*<td>0\.500</td>", text)  # balanced batches
    # how the validation patients were read, beside their counts
    assert "Validation: patient-aware stratified split of train; patient keys: --patient-key auto (60 by file name)." in text


def test_report_on_a_data_split(tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "test_report.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out", str(out),
                 "--n-boot", "50", "--cases", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    text = check_self_contained(out)
    assert f"test split of {tiny_data}" in text
    n_test = sum(1 for _ in (tiny_data / "test").rglob("*.jpeg"))
    assert f": {n_test} images" in text
    assert "bacteria" in text  # recall by cause from the Kermany file names
    assert "&lt; 500 px" in text  # size bucket of the 48 px synthetic files


def test_report_user_mistakes(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
    assert main(["report", str(tiny_run), "--split", "test", "--out", str(tmp_path / "r.html")]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_a_runs_model_file_stands_for_its_folder(tiny_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`report RUN/model.safetensors` (what --model takes everywhere else) said 'a file where a folder is needed;
    check the path of --out RUN/model.safetensors/report.html', an --out the user never gave."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report*"))
    assert main(["report", str(run / "model.safetensors"), "--n-boot", "5", "--cases", "1"]) == 0
    assert (run / "report.html").is_file()
    capsys.readouterr()
    other = tmp_path / "site.safetensors"
    other.write_bytes((run / "model.safetensors").read_bytes())
    assert main(["report", str(other), "--n-boot", "5"]) == 2
    err = capsys.readouterr().err
    assert "a file, not a run folder" in err and "--out" not in err.split(";")[0]
    assert main(["compare", str(run / "model.safetensors"), "--out", str(tmp_path / "c.html"), "--n-boot", "5"]) == 0


def test_compare_two_runs(tiny_run: Path, odd_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp" / "compare.html"
    assert main(["compare", str(tiny_run), str(odd_run), "--out", str(out), "--n-boot", "50"]) == 0
    # it named the page, CSV and JSON but not the folder it also wrote (compare_files/roc.png), as report names its own
    assert capsys.readouterr().out == (f"comparison: {out}  (table also in compare.csv and compare.json, ROC figure in "
                                       f"{files_folder(out)}/)\n")
    text = out.read_text(encoding="utf-8")
    assert "<script" not in text and 'src="http' not in text
    assert len(IMG_SRC.findall(text)) == 1 and (files_folder(out) / "roc.png").is_file()
    assert "run &lt;b&gt;&quot;x&quot;&amp;y" in text and '<b>"x"' not in text
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["run"] for r in rows] == ["run", 'run <b>"x"&y']
    assert {"model", "params", "loss", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc",
            "train_seconds"} <= set(rows[0])
    data = json.loads(out.with_suffix(".json").read_text())
    assert data[0]["model"] == "resnet10" and data[0]["params"] > 1000
    assert data[0]["roc_auc"] == pytest.approx(data[1]["roc_auc"])  # a copy of the same run
    assert 0 <= data[0]["accuracy"] <= 1 and data[0]["loss"] > 0


def test_compare_tells_runs_of_one_model_apart_by_input_size_and_recipe(tiny_data: Path, tmp_path: Path) -> None:
    """Two cnn runs at 32 and 40 px read alike in the table but for their folder names: it had no input size, nor any
    training setting; the CSV, JSON and page now give them."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    runs = []
    for size, lr in ((32, 3e-3), (40, 1e-3)):
        runs.append(tmp_path / f"cnn{size}")
        train(TrainConfig(data=str(tiny_data), out=str(runs[-1]), model="cnn", image_size=size, epochs=1, lr=lr,
                          batch_size=16, val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    out = tmp_path / "c.html"
    assert main(["compare", *map(str, runs), "--out", str(out), "--n-boot", "10"]) == 0
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [(r["model"], r["image_size"], r["tta"]) for r in rows] == [("cnn", "32", "False"), ("cnn", "40", "False")]
    assert [r["recipe"].split(", ")[:3] for r in rows] == [["epochs 1", "batch_size 16", "lr 0.003"],
                                                         ["epochs 1", "batch_size 16", "lr 0.001"]]
    table = json.loads(out.with_suffix(".json").read_text())
    assert [row["image_size"] for row in table] == [32, 40]
    assert [row["init"] for row in table] == ["random (trained from scratch)"] * 2
    text = out.read_text(encoding="utf-8")
    assert "<th>input (px)</th>" in text and '<td class="num">40</td>' in text
    assert f"<td>{rows[1]['recipe']}</td>" in text


def test_compare_says_whether_the_runs_were_validated_on_the_same_films(tiny_run: Path, odd_run: Path,
                                                                        tmp_path: Path) -> None:
    """Without --data each run is scored on its own validation films: the page said only that splits 'can differ',
    so AUCs of runs validated on other films (another --split-seed) read as a comparison of models alone."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    other = tmp_path / "seed1"
    train(TrainConfig(data=str(tiny_run.parent / "data"), out=str(other), model="cnn", image_size=32, epochs=1,
                      batch_size=16, val_fraction=0.2, split_seed=1, cache_dir=str(tmp_path / "cache")), progress=False)
    films = {run: {row["path"] for row in csv.DictReader((run / "val_predictions.csv").open())}
             for run in (tiny_run, other)}
    assert films[tiny_run] != films[other]
    out = tmp_path / "differ.html"
    assert main(["compare", str(tiny_run), str(other), "--out", str(out), "--n-boot", "20"]) == 0
    text = html.unescape(out.read_text(encoding="utf-8"))
    shared = len(films[tiny_run] & films[other])
    assert (f"The runs were validated on different films: seed1 ({len(films[other])} films, --split-seed 1 vs 0) "
            f"against run ({len(films[tiny_run])} films); {shared} films are in every run's") in text
    # the same data in another place (a second clone of a repository's sample): the same films
    clone = tmp_path / "clone"
    shutil.copytree(tiny_run.parent / "data", clone / "data")
    train(TrainConfig(data=str(clone / "data"), out=str(clone / "run"), model="cnn", image_size=32, epochs=1,
                      batch_size=16, val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    same = tmp_path / "same.html"
    assert main(["compare", str(tiny_run), str(odd_run), str(clone / "run"), "--out", str(same), "--n-boot", "20"]) == 0
    text = same.read_text(encoding="utf-8")
    assert f"All runs were scored on the same {len(films[tiny_run])} validation films." in text
    assert "different films" not in text
    # the paired AUC test takes those films as the note does, by content (it matched paths: 0 paired, n/a)
    clone_row = json.loads(same.with_suffix(".json").read_text())[2]
    assert clone_row["auc_diff_films"] == len(films[tiny_run])


def test_compare_matches_validation_films_by_content(tiny_run: Path, tmp_path: Path) -> None:
    """The note keyed films by their path inside each run's --data: the same files reached as `--data DATA` and
    `--data DATA/train` had '0 films in common', and a copy of the data whose files hold other films' images was 'the
    same films'. An ensemble's folder has no split settings of its own: it named '--val-fraction None vs 0.2'."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    data = tiny_run.parent / "data"
    swapped = tmp_path / "swapped_data"  # the same names, each holding the next file's image
    for folder in sorted((data / "train").iterdir()):
        files = sorted(folder.iterdir())
        for path, other in zip(files, files[1:] + files[:1]):
            (swapped / "train" / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(other, swapped / "train" / folder.name / path.name)
    runs = {}
    for name, folder in (("inner", data / "train"), ("swapped", swapped)):
        runs[name] = tmp_path / name
        train(TrainConfig(data=str(folder), out=str(runs[name]), model="cnn", image_size=32, epochs=1, batch_size=16,
                          val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    n_films = sum(1 for _ in csv.DictReader((tiny_run / "val_predictions.csv").open()))

    def note(*runs: Path) -> str:
        out = tmp_path / f"c{len(list(tmp_path.glob('c*.html')))}.html"
        assert main(["compare", *map(str, runs), "--out", str(out), "--n-boot", "5"]) == 0
        found = re.search(r"All runs were scored on the same \d+ validation films\.|The runs were validated on "
                          r"different films: .*? films are in every run's", html.unescape(out.read_text("utf-8")))
        assert found
        return found.group()

    assert note(tiny_run, runs["inner"]) == f"All runs were scored on the same {n_films} validation films."
    assert note(tiny_run, runs["swapped"]).startswith(f"The runs were validated on different films: swapped "
                                                      f"({n_films} films) against run ({n_films} films); ")
    ensemble = build_ensemble([tiny_run, runs["inner"]], tmp_path / "ens", progress=False).parent
    assert note(runs["inner"], ensemble) == f"All runs were scored on the same {n_films} validation films."
    assert note(runs["swapped"], ensemble).startswith(f"The runs were validated on different films: ens "
                                                      f"({n_films} films) against swapped ({n_films} films); ")


def test_compare_counts_a_film_gone_from_the_data_of_three_runs_once_by_name(tiny_run: Path, tmp_path: Path) -> None:
    """One film gone from the data three runs were validated on read 'as 3 of the films cannot be read now': it
    was counted once per run."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    data = tmp_path / "data"
    shutil.copytree(tiny_run.parent / "data", data)
    runs = [tmp_path / name for name in ("a", "b", "c")]
    for run in runs:  # one data folder, one split: each run's validation films are the same files
        train(TrainConfig(data=str(data), out=str(run), model="cnn", image_size=32, epochs=1, batch_size=16,
                          val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    with (runs[0] / "val_predictions.csv").open(encoding="utf-8") as f:
        film = Path(next(csv.DictReader(f))["path"])
    film.unlink()
    out = tmp_path / "c.html"
    assert main(["compare", *map(str, runs), "--out", str(out), "--n-boot", "5"]) == 0
    text = html.unescape(out.read_text("utf-8"))
    assert "cannot be read now" in text
    assert "as 1 of the films" not in text and "as 3 of the films" not in text
    assert f"(matched by their names inside each run's data, as {film} cannot be read now)" in text


def test_compare_matches_films_by_name_when_a_copy_is_gone_never_counting_them_different(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A film that could not be read was keyed by its absolute path: a run trained on a copy of the data that is gone
    now read 'validated on different films ... 0 films are in every run's'. Films are hashed only for this note:
    with --data it is not made."""
    import pneumoscan.report.compare as compare
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.parent / "data", copy)
    other = tmp_path / "other"  # the same split of the same films, in the copy
    train(TrainConfig(data=str(copy), out=str(other), model="cnn", image_size=32, epochs=1, batch_size=16,
                      val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    copy.rename(tmp_path / "gone")
    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_run), str(other), "--out", str(out), "--n-boot", "5"]) == 0
    gone = [row["path"] for row in csv.DictReader((other / "val_predictions.csv").open())]
    assert (f"All runs were scored on the same {len(gone)} validation films (matched by their names inside each run's "
            f"data, as {len(gone)} of the films, {gone[0]} among them, cannot be read now).") in html.unescape(
        out.read_text("utf-8"))

    def unused(scored: object) -> tuple[list[list[str]], int]:
        raise AssertionError("films hashed for a note that --data leaves out")

    monkeypatch.setattr(compare, "film_keys", unused)
    assert main(["compare", str(tiny_run), str(other), "--data", str(tmp_path / "gone"), "--out",
                 str(tmp_path / "d.html"), "--n-boot", "5"]) == 0


def test_compare_gives_an_ensembles_member_sizes_when_they_differ(tiny_run: Path, tmp_path: Path) -> None:
    """An ensemble of a 32 and a 48 px run showed 'input (px)' 48, its largest member's, as if both took 48 px."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    wide = tmp_path / "wide"
    train(TrainConfig(data=str(tiny_run.parent / "data"), out=str(wide), model="cnn", image_size=48, epochs=1,
                      batch_size=16, val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    ensemble = build_ensemble([tiny_run, wide], tmp_path / "ens", progress=False).parent
    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_run), str(wide), str(ensemble), "--out", str(out), "--n-boot", "5"]) == 0
    # a number, or a list of numbers: '32/48' was a string a JSON consumer could not read as sizes
    assert [row["image_size"] for row in json.loads(out.with_suffix(".json").read_text())] == [32, 48, [32, 48]]
    with out.with_suffix(".csv").open(newline="") as handle:
        assert [row["image_size"] for row in csv.DictReader(handle)] == ["32", "48", "32/48"]
    assert "<td>32/48</td>" in out.read_text("utf-8")


def test_compare_on_data(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    assert main(["compare", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "20"]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert rows[0]["n"] == sum(1 for _ in (tiny_data / "test").rglob("*.jpeg"))
    assert main(["compare", str(tiny_run), "--out", str(tmp_path / "compare.txt")]) == 2


def test_report_and_compare_draw_their_bootstrap_with_seed(tiny_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Both drew their intervals with seed 0 and took no --seed, which evaluate and set-threshold take: the same seed
    gives the same intervals, another seed others, and a negative one is refused before any scoring."""
    def compared(name: str, seed: str) -> list[tuple[float, float]]:
        out = tmp_path / name / "compare.html"
        assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "30", "--seed", seed]) == 0
        return [(row["roc_auc_ci_low"], row["roc_auc_ci_high"]) for row in json.loads(out.with_suffix(".json")
                                                                                     .read_text())]

    def intervals(name: str, seed: str) -> str:
        out = tmp_path / f"{name}.html"
        assert main(["report", str(tiny_run), "--out", str(out), "--n-boot", "30", "--cases", "1", "--seed", seed]) == 0
        page = out.read_text(encoding="utf-8")
        assert f"30 resamples of films within each class drawn with seed {seed} (--n-boot, --seed)" in page
        # the tiny run's validation films are fewer than 10 a class, and the page says what that does
        assert "(--n-boot, --seed); these are unreliable, much too narrow: the bootstrap draws from only " in page
        return page[page.index("95% interval"):page.index("95% intervals: Wilson")]

    assert compared("a", "3") == compared("b", "3") != compared("c", "4")
    assert intervals("a", "3") == intervals("b", "3") != intervals("c", "4")
    capsys.readouterr()
    for argv in (["report", str(tiny_run), "--out", str(tmp_path / "new" / "r.html")],
                 ["compare", str(tiny_run), "--out", str(tmp_path / "new" / "c.html")]):
        assert main([*argv, "--seed", "-1"]) == 2
        assert capsys.readouterr().err.strip() == "pneumoscan: error: --seed -1: must be 0 or more"
    assert not (tmp_path / "new").exists()


# -- pieces ---------------------------------------------------------------------------------------
def test_classification_report_rows() -> None:
    from pneumoscan.evaluation.bootstrap import classification_report_rows

    by_name = {r[0]: r[1:] for r in classification_report_rows([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])}
    assert by_name["PNEUMONIA"] == [pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3), 3]
    assert by_name["accuracy"] == ["", "", pytest.approx(0.6), 5]
    assert list(by_name) == ["NORMAL", "PNEUMONIA", "accuracy", "macro avg", "weighted avg"]


def test_classification_report_rows_keep_the_class_of_an_undefined_precision() -> None:
    """Every film called PNEUMONIA: NORMAL's precision is undefined: NaN (the table's 'n/a') in NORMAL's row."""
    from pneumoscan.evaluation.bootstrap import classification_report_rows

    by_name = {r[0]: r[1:] for r in classification_report_rows([0, 0, 1, 1, 1], [1, 1, 1, 1, 1])}
    precision, *rest = by_name["NORMAL"]
    assert math.isnan(precision) and rest == [0.0, 0.0, 2]
    assert by_name["PNEUMONIA"] == [0.6, 1.0, 0.75, 3]


def test_the_classification_table_shows_a_precision_below_1_as_below_1() -> None:
    """It parsed sklearn's 3-decimal text, so 1,999 of 2,000 PNEUMONIA calls right showed as precision 1.000."""
    from pneumoscan.evaluation.bootstrap import CLASSIFICATION_COLUMNS, classification_report_rows
    from pneumoscan.report import html as h

    rows = classification_report_rows([1] * 1999 + [0] * 2, [1] * 1999 + [1, 0])
    assert rows[1][:2] == ["PNEUMONIA", 1999 / 2000]
    table = h.table(CLASSIFICATION_COLUMNS, rows)
    assert "<td>PNEUMONIA</td><td class=\"num\">0.9995</td>" in table


def test_the_cases_note_says_what_the_overlays_show_of_each_model(tiny_run: Path, tiny_data: Path,
                                                                  tmp_path: Path) -> None:
    """The note read 'bottom: its Grad-CAM overlay, showing the evidence for the predicted class' over an mlp's grids,
    which have no overlay, and over an ensemble's, whose overlays leave out its mlp member."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    mlp = tmp_path / "mlp"
    train(TrainConfig(data=str(tiny_data), out=str(mlp), model="mlp", image_size=32, epochs=1, batch_size=16,
                      val_fraction=0.2, seed=5, cache_dir=str(tmp_path / "cache")), progress=False)
    build_ensemble([tiny_run, mlp], tmp_path / "ens", progress=False)

    def note(run: Path) -> str:
        out = tmp_path / f"{run.name}.html"
        assert main(["report", str(run), "--out", str(out), "--n-boot", "10", "--cases", "1"]) == 0
        text = html.unescape(out.read_text(encoding="utf-8"))
        return text.split("Top: the original image; bottom: ")[1].split("</p>")[0]

    assert note(mlp) == "no Grad-CAM overlay: model 'mlp' has no convolutional layer, so Grad-CAM cannot explain it."
    assert note(tmp_path / "ens") == ("its Grad-CAM overlay, showing the evidence for the predicted class, of model "
                                      "ensemble (not its mlp member: no feature map to draw).")
    assert note(tiny_run) == "its Grad-CAM overlay, showing the evidence for the predicted class."


def test_most_confident_cases() -> None:
    from pneumoscan.report.cases import most_confident

    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    probs = np.array([0.9, 0.6, 0.2, 0.1, 0.3, 0.8, 0.05, 0.55])
    chosen = most_confident(labels, probs, 0.5, 2)
    assert chosen == {"TP": [0, 1], "TN": [3, 4], "FP": [5, 7], "FN": [6, 2]}


def test_subgroups() -> None:
    from pneumoscan.report.subgroups import by_cause, size_bucket

    assert size_bucket((400, 300)) == "< 500 px"
    assert size_bucket((1200, 1900)) == "1500-1999 px"
    assert size_bucket((2000, 10)) == ">= 2000 px"
    assert size_bucket(None) == "unknown"
    causes = ["bacteria", "virus", "virus", None, None]
    rows = by_cause(causes, np.array([1, 1, 1, 0, 1]), np.array([1, 0, 1, 1, 1]))
    assert [(r.group, r.n, r.recall) for r in rows] == [("bacteria", 1, 1.0), ("virus", 2, 0.5), ("unknown", 1, 1.0)]
    # PNEUMONIA images alone: every one a positive, and no specificity (n/a in the table)
    assert all(r.n_positive == r.n and np.isnan(r.specificity) for r in rows)


def test_html_escapes_and_highlights() -> None:
    from pneumoscan.report import html as h

    table = h.table(["a<b"], [["<script>"], [float("nan")], [0.12345]], highlight=[2])
    assert "<script>" not in table and "&lt;script&gt;" in table and "a&lt;b" in table
    assert '<td class="num">n/a</td>' in table and '<tr class="highlight"><td class="num">0.123</td>' in table
    page = h.page('T "1"', "<i>", [("s-1", "A & B", "<p>ok</p>")])
    assert '<section id="s-1"><h2>A &amp; B</h2><p>ok</p></section>' in page and "&lt;i&gt;" in page


def test_a_small_number_is_not_shown_as_zero() -> None:
    """The kept epoch's learning rate late in the cosine decay (2.42e-05) showed as 0.0000."""
    from pneumoscan.report import html as h

    assert h.fmt(2.42e-05, 4) == "2.42e-05" and h.fmt(-0.0004, 3) == "-0.0004"
    assert h.fmt(0.0, 4) == "0.0000" and h.fmt(0.00005, 4) == "0.0001" and h.fmt(0.5, 3) == "0.500"
    assert '<td class="num">2.42e-05</td>' in h.table(["lr"], [[2.42e-05]], digits=4)


def test_a_rate_below_one_is_not_shown_as_one() -> None:
    """Recall 2,039 of 2,040 (0.99951) showed as 1.000 in the metrics table, a perfect score it is not: it gets the
    decimals that tell it from 1; 1 itself and rates that round below 1 keep the usual ones."""
    from pneumoscan.report import html as h

    assert h.fmt(2039 / 2040, 3) == "0.9995" and h.fmt(0.9999996, 4) == "0.9999996" and h.fmt(0.99962, 4) == "0.9996"
    assert h.fmt(1.0, 3) == "1.000" and h.fmt(0.9994, 3) == "0.999" and h.fmt(0.5, 3) == "0.500"
    assert '<td class="num">0.9995</td>' in h.table(["recall"], [[2039 / 2040]])


def test_figures_do_not_show_p_or_a_rate_short_of_certainty_as_0_or_1() -> None:
    """The most confident cases of the shipped model's validation films have P = 0.9999967 and 0.00011, whose case
    tiles read 'P(pneumonia) = 1.000' and '0.000'; a recall of 0.9995 read 1.000 on its bar."""
    from pneumoscan.report import figures as figs
    from pneumoscan.report.cases import tile_label

    assert tile_label(Path("a.jpeg"), 0.9999967).endswith("P(pneumonia) = 0.999997")
    assert tile_label(Path("b.jpeg"), 0.00010965).endswith("P(pneumonia) = 0.00011")
    assert tile_label(Path("c.jpeg"), 0.61234).endswith("P(pneumonia) = 0.612")
    bars = figs.group_bars(["bacteria", "virus"], [2039 / 2040, float("nan")], [2040, 0], "recall", "cause")
    assert [t.get_text() for t in bars.axes[0].texts] == ["0.9995\n(n=2040)", "n/a\n(n=0)"]


def test_a_rerun_leaves_no_stale_figures_and_names_a_site_threshold(tiny_run: Path, tiny_data: Path,
                                                                    tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test",
                 "--out", str(site), "--n-boot", "10"]) == 0
    out = tmp_path / "r.html"
    assert main(["report", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0
    stale = files_folder(out) / "learning_curves.png"
    assert stale.is_file() and not (site / "history.csv").exists()  # a figure the next report does not make
    mine = files_folder(out) / "patient 7.png"
    mine.write_bytes(b"the user's own picture")
    assert main(["report", str(site), "--data", str(tiny_data), "--out", str(out),
                 "--n-boot", "10"]) == 0
    assert not stale.exists()
    assert mine.read_bytes() == b"the user's own picture"  # not a figure of a report: left alone
    mine.unlink()
    text = check_self_contained(out)  # as many PNG files as figures in the page
    assert "chosen by set-threshold for recall" in text and "on validation)" not in text
    assert "<td>recipe</td><td>epochs 3, batch_size 16, lr 0.003" in text  # from the artifact: no config.json here


def test_recipe_of_an_ensemble_points_to_its_members(tiny_run: Path) -> None:
    from dataclasses import replace

    from pneumoscan.report.build import recipe_text
    from pneumoscan.report.run import load_run

    run = load_run(tiny_run)
    assert recipe_text(run).startswith("epochs 3, batch_size 16")
    ensemble = replace(run, config={"ensemble_of": ["a", "b"]},
                       meta=replace(run.meta, training={"members": [{"run": "a"}, {"run": "b"}]}))
    assert recipe_text(ensemble).startswith("an ensemble: each member's recipe")


def test_validation_films_are_found_from_any_folder_or_their_absence_is_said(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    rows = list(csv.DictReader((tiny_run / "val_predictions.csv").open()))
    assert all(Path(r["path"]).is_absolute() for r in rows)  # written absolute: `report` works from anywhere
    old = tmp_path / "old_run"  # as runs before this wrote them: relative to where training ran
    shutil.copytree(tiny_run, old)
    with (old / "val_predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "prob"])
        writer.writerows([["../elsewhere/" + Path(r["path"]).name, r["label"], r["prob"]] for r in rows])
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(old), "--out", str(tmp_path / "r.html"), "--n-boot", "10"]) == 0
    err = capsys.readouterr().err
    assert f"{len(rows)} of {len(rows)} validation images" in err and "not found from here" in err
    assert not any(files_folder(tmp_path / "r.html").glob("cases_*.png"))


def test_an_older_runs_relative_validation_films_are_found_from_the_folder_it_was_trained_in(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    lab = tmp_path / "lab"  # `pneumoscan train --data data --out runs/old` was run here, before paths were absolute
    shutil.copytree(tiny_data, lab / "data")
    old = lab / "runs" / "old"
    shutil.copytree(tiny_run, old)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "out": "runs/old"}))
    rows = list(csv.DictReader((tiny_run / "val_predictions.csv").open()))
    with (old / "val_predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "prob"])
        writer.writerows([[str(Path("data") / Path(r["path"]).relative_to(tiny_data)), r["label"], r["prob"]]
                          for r in rows])
    monkeypatch.chdir(tmp_path)  # not the folder it was trained in
    assert main(["report", str(old), "--out", str(tmp_path / "r.html"), "--n-boot", "10"]) == 0
    assert "not found from here" not in capsys.readouterr().err
    assert any(files_folder(tmp_path / "r.html").glob("cases_*.png"))  # the films were found and drawn
    assert run_folders(old) == [old, lab.resolve()]
    (old / "config.json").write_text(json.dumps({**config, "out": "elsewhere/old"}))  # moved since: not guessed
    assert run_folders(old) == [old]


def test_report_and_compare_name_unreadable_images(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    data = tmp_path / "d"
    shutil.copytree(tiny_data / "test", data)
    (data / "PNEUMONIA" / "broken.jpeg").write_text("not an image")
    for command in ("report", "compare"):
        assert main([command, str(tiny_run), "--data", str(data), "--out", str(tmp_path / f"{command}.html"),
                     "--n-boot", "10"]) == 0
        err = capsys.readouterr().err
        assert "1 unreadable image left out" in err and "broken.jpeg" in err, command


def test_dollar_signs_in_file_and_run_names_are_drawn_as_written(tiny_run: Path, tiny_data: Path,
                                                                 tmp_path: Path) -> None:
    """Two `$` in a name start matplotlib's mathtext: `$5 or $6` drew as `5or6`, and `a$^$b` stopped the figure."""
    import shutil

    from matplotlib.text import Text

    from pneumoscan.report.figures import printable

    for name in ("price $5 or $6.jpeg", "a$^$b.jpeg", "one $ sign.jpeg"):
        assert Text()._preprocess_math(printable(name)) == (name, False)
    run = tmp_path / "run $^$"
    shutil.copytree(tiny_run, run)
    data = tmp_path / "d"
    shutil.copytree(tiny_data / "test", data)
    for folder, name in (("PNEUMONIA", "a$^$b.jpeg"), ("NORMAL", "c$^$d.jpeg")):
        first = sorted((data / folder).iterdir())[0]
        first.rename(first.with_name(name))
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--data", str(data), "--out", str(out), "--n-boot", "10", "--cases", "20"]) == 0
    assert len(list(files_folder(out).glob("cases_*.png"))) >= 2
    assert main(["compare", str(run), str(tiny_run), "--out", str(tmp_path / "c.html"), "--n-boot", "10"]) == 0


def test_learning_curves_say_what_the_training_loss_sums(tiny_run: Path) -> None:
    """history.csv's train_loss is the objective (augmented views, plus 10 x a consistency term by default), not the
    BCE the validation loss is: one axis titled 'binary cross-entropy' for both invited reading the gap as overfitting."""
    from pneumoscan.report import figures as figs
    from pneumoscan.report.build import training_loss_label
    from pneumoscan.report.run import load_run

    run = load_run(tiny_run)
    label = training_loss_label(run.config)
    assert run.config["consistency"] == 10 and "10 x consistency" in label and "augmented" in label
    assert "class-weighted BCE" in training_loss_label({**run.config, "balance": "weighted"})
    assert "label smoothing 0.1" in training_loss_label({**run.config, "label_smoothing": 0.1})
    assert training_loss_label({"augment": 0.0, "consistency": 0.0}) == "training objective: BCE"
    fig = figs.learning_curves(run.history, run.best_epoch, label)
    loss_axes = fig.axes[0]
    assert loss_axes.get_ylabel() == "loss"
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()][:2] == [
        label, "validation loss (binary cross-entropy)"]


def test_the_kept_epoch_table_and_the_curves_name_the_history_columns_for_a_reader(val_report: Path,
                                                                                   tiny_run: Path) -> None:
    """The kept epoch's table was headed with history.csv's names (train_loss, val_auc, ...); it and the learning
    curves now take their names from one mapping."""
    from pneumoscan.report import figures as figs
    from pneumoscan.report.run import load_run

    head = re.search(r"<h3>Kept epoch</h3><table><thead><tr>(.*?)</tr>", val_report.read_text(encoding="utf-8"))
    assert head, "no kept-epoch table"
    assert re.findall(r"<th>(.*?)</th>", head.group(1)) == [
        "epoch", "learning rate", "training loss", "validation loss", "validation ROC AUC",
        "validation accuracy (P &gt;= 0.5)", "seconds (this epoch)"]
    run = load_run(tiny_run)
    fig = figs.learning_curves(run.history, run.best_epoch)
    legends = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert {"validation ROC AUC", "validation accuracy (P >= 0.5)"} <= set(legends), legends


def test_report_scores_data_as_evaluate_does(tiny_run: Path, tiny_data: Path) -> None:
    """`report --data` scored with PyTorch and `evaluate` (--backend auto) with ONNX Runtime: they differ by about 1e-7,
    enough to call a film at the very threshold (one set-threshold chose it on) differently in the two."""
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.report.run import load_run
    from pneumoscan.report.scores import data_scores

    scores = data_scores(load_run(tiny_run), tiny_data, "test", n_boot=10)
    expected = evaluate(Predictor(tiny_run, backend="auto"), tiny_data, "test", n_boot=10)
    np.testing.assert_array_equal(scores.probs, expected.probs)
    assert json.dumps(scores.summary, sort_keys=True) == json.dumps(expected.summary, sort_keys=True)  # NaN == NaN


def test_report_page_says_when_its_films_are_in_sample(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """`evaluate` warns that films the model trained on flatter it; the report only said so on stderr, so the page
    (the thing that gets shared) showed in-sample figures as if they were a test."""
    out = tmp_path / "train.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--split", "train", "--out", str(out),
                 "--n-boot", "10", "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    n = sum(1 for _ in (tiny_data / "train").rglob("*.jpeg"))
    assert f"Warning: {n} of {n} evaluated images are films this model was trained or validated on" in text
    assert f"films the model trained or validated on (in-sample)</td><td>{n} of {n}" in text
    out = tmp_path / "test.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Warning:" not in text and "(in-sample)</td><td>0 of " in text


def test_report_page_says_when_its_patients_were_trained_on(shared_patient_run: Path, tiny_run: Path,
                                                              tiny_data: Path, tmp_path: Path) -> None:
    """Only `audit` told of a patient in both train and test: the page counts the evaluated films' patients who also
    have films in the training data (by DICOM PatientID) and warns when there are any."""
    out = tmp_path / "shared.html"
    assert main(["report", str(shared_patient_run), "--data", str(shared_patient_run.parent / "data"), "--out",
                 str(out), "--n-boot", "10", "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Warning: 2 patients of the evaluated images (2 of 4 films) also have films in the data this model was " \
           "trained on, by DICOM PatientID" in text
    assert "patients also in the data the model was trained on</td><td>2 (2 of 4 films; by DICOM PatientID)" in text
    out = tmp_path / "kermany.html"  # keys from Kermany's file names restart in each split: not "0", not counted
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Warning:" not in text and "patients also in the data the model was trained on</td><td>not counted (" \
        "these films&#x27; patients are keyed by file name" in text


def test_a_large_case_grid_wraps_into_rows() -> None:
    """--cases 20 drew one strip of 20 columns (about 5,400 px wide, shrunk to fit the page: unreadable; 260 took
    minutes and 68,706 px); the grid now wraps at GRID_COLUMNS, each overlay under its own original."""
    import io

    from pneumoscan.report import figures as figs

    rng = np.random.default_rng(0)
    tiles = [figs.Tile(rng.integers(0, 255, (40, 40), dtype=np.uint8), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                       f"case {i}") for i in range(20)]
    fig = figs.case_grid(tiles, "TP: true positives")
    fig.canvas.draw()
    shown = {ax.get_title(): ax for ax in fig.axes if ax.get_title().startswith("case ")}
    assert len(shown) == 20
    columns = {round(ax.get_position().x0, 3) for ax in shown.values()}
    assert len(columns) == figs.GRID_COLUMNS
    overlays = [ax for ax in fig.axes if ax.get_xlabel() == "Grad-CAM overlay"]
    assert len(overlays) == 20
    for i, overlay in enumerate(overlays):  # in reading order, each directly under its original
        top = shown[f"case {i}"].get_position()
        below = overlay.get_position()
        assert below.x0 == pytest.approx(top.x0) and below.y1 < top.y0
        assert not any(o is not overlay and o.get_position().x0 == pytest.approx(top.x0)
                       and below.y1 < o.get_position().y1 < top.y0 for o in overlays)
    with Image.open(io.BytesIO(figs.to_png(fig))) as im:
        assert im.width < 2500


def test_reliability_points_at_0_and_1_are_drawn_whole() -> None:
    """The axes stopped at exactly 0 and 1, so the usual bins at frequency 0 and 1 were cut in half."""
    from pneumoscan.report.figures import reliability

    fig = reliability(np.array([0.02, 0.98]), np.array([0.0, 1.0]), np.array([50, 60]), 0.02,
                      np.array([0, 1]), np.array([0.02, 0.98]))
    ax = fig.axes[0]
    assert ax.get_xlim()[0] < 0 < 1 < ax.get_xlim()[1] and ax.get_ylim()[0] < 0 < 1 < ax.get_ylim()[1]


def test_case_captions_cut_long_file_names_in_the_middle() -> None:
    """A long file name ran into the next column of a case grid."""
    from pneumoscan.report.figures import shortened

    name = "site_A_export_2026-11-26_patient_000123_view_PA_0001.jpeg"
    cut = shortened(name)
    assert len(cut) == 30 and cut.startswith("site_A_export_") and cut.endswith("_0001.jpeg") and "…" in cut
    assert shortened("person1_virus_6.jpeg") == "person1_virus_6.jpeg"


def test_report_counts_the_evaluated_patients_as_the_runs_split_read_them(tiny_run: Path, tmp_path: Path) -> None:
    """Patients of a --data split are keyed by the run's --patient-key (split.json; by name for a run before it):
    DICOM films of one patient under UID names are one patient for an `auto` run."""
    from pneumoscan.report.run import load_run
    from pneumoscan.report.scores import data_scores
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", patients=3, films=2, size=32)
    run = load_run(tiny_run)
    assert run.split["patient_key"] == "auto"
    assert data_scores(run, data, "train", n_boot=10).patients == 6  # N0..N2 and P0..P2
    run.split = {k: v for k, v in run.split.items() if k != "patient_key"}  # a run's split.json before --patient-key
    assert data_scores(run, data, "train", n_boot=10).patients == 12  # each UID-named film its own patient
    run.split["patient_key"] = "folder"  # these films sit right in their class folders: not counted
    assert data_scores(run, data, "train", n_boot=10).patients is None


@pytest.mark.parametrize("command, failing", [("report", "calibration.png"), ("report", "r.html"),
                                              ("compare", "r.html")])
def test_a_failed_report_leaves_the_earlier_files_as_they_were_and_nothing_new(
        command: str, failing: str, tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The figures were written in place, before the page: a full disk left a torn PNG, the new figures (and compare's
    tables) beside the earlier page, and the --out folders it had made."""
    from tests.conftest import disk_full

    write_text, write_bytes = Path.write_text, Path.write_bytes

    def half(path: Path, data: str | bytes) -> None:  # as a full disk does: part of the file, then the error
        (write_text if isinstance(data, str) else write_bytes)(path, data[: len(data) // 2])
        raise disk_full()

    def full_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        return half(self, data) if failing in self.name else write_text(self, data, *args, **kwargs)

    def full_bytes(self: Path, data: bytes) -> int:
        return half(self, data) if failing in self.name else write_bytes(self, data)

    def run(out: Path, *more: str) -> int:
        return main([command, str(tiny_run), "--out", str(out), "--n-boot", "5", *more]
                    + (["--cases", "1"] if command == "report" else []))

    out = tmp_path / "r.html"
    assert run(out) == 0  # from the validation predictions: the second run's figures and tables differ
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert files_folder(out) / "roc.png" in before
    monkeypatch.setattr(Path, "write_text", full_text)
    monkeypatch.setattr(Path, "write_bytes", full_bytes)
    assert run(out, "--data", str(tiny_data), "--split", "test") == 2
    name = files_folder(out) / failing if failing.endswith(".png") else out
    assert capsys.readouterr().err.endswith(f"pneumoscan: error: {name}: cannot be written (No space left on device); "
                                            f"free disk space\n")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # no file new, torn or replaced
    assert run(tmp_path / "new" / "r.html", "--data", str(tiny_data), "--split", "test") == 2
    assert not (tmp_path / "new").exists()  # nor the folders it made


@pytest.mark.parametrize("command, failing", [("report", 3), ("compare", 2)])
def test_a_report_crashed_among_its_renames_is_put_back_by_the_next_one(
        command: str, failing: int, tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The figures (and compare's tables) were renamed into place one by one, and the earlier report's figures this
    one lacks removed after them: a failure or crash among them left new figures beside old ones and the old page,
    read as one report. A failed rename now puts the earlier report back whole; what a crash leaves (here: the undo
    not run), the next report to that file puts back before its work, even when that run then fails."""
    import os

    from pneumoscan import outputs

    out = tmp_path / "r.html"

    def run(*more: str) -> int:
        return main([command, str(tiny_run), "--out", str(out), "--n-boot", "5", *more]
                    + (["--cases", "1"] if command == "report" else []))

    assert run() == 0  # from the validation predictions: the next one, on --data, differs
    mine = files_folder(out) / "patient 7.png"
    mine.write_bytes(b"the user's own picture")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real, calls = os.replace, []

    def replace(src: str, dst: str) -> None:
        if tmp_path in Path(dst).parents:  # os's own: the image cache's renames come here too
            calls.append(dst)
            if len(calls) == failing:  # a figure whose data changed (or a table) is in place, the page not yet
                raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    assert run("--data", str(tiny_data), "--split", "test") == 2
    assert "cannot be written (Input/output error)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    monkeypatch.setattr(outputs.Journal, "undo", outputs.Journal.close)  # as a crash: nothing undone, lock released
    calls.clear()
    assert run("--data", str(tiny_data), "--split", "test") == 2
    capsys.readouterr()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} != before  # a mix, and the journal
    monkeypatch.setattr(outputs.os, "replace", real)
    assert run("--data", str(tmp_path / "no such folder")) == 2  # fails after putting the earlier report back
    assert "an earlier run stopped while replacing it" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_probability_histogram_shows_both_classes_where_they_share_a_bin() -> None:
    """The PNEUMONIA bars were drawn over the NORMAL ones: where both classes had films in a bin (a briefly trained
    model puts all of them in one), the NORMAL bar was hidden and its count unreadable."""
    from pneumoscan.report.figures import reliability

    labels, probs = np.array([0, 0, 0, 1, 1]), np.array([0.66, 0.67, 0.2, 0.66, 0.68])
    fig = reliability(np.array([0.5]), np.array([0.4]), np.array([5]), 0.1, labels, probs)
    bars = [(p.get_x(), p.get_x() + p.get_width(), p.get_height()) for p in fig.axes[1].patches if p.get_height() > 0]
    assert sorted(round(b[2]) for b in bars) == [1, 2, 2]
    assert all(a[1] <= b[0] or b[1] <= a[0] for i, a in enumerate(bars) for b in bars[i + 1:])  # none overlaps


def test_figures_name_the_films_they_are_drawn_on(val_report: Path, tiny_run: Path, tiny_data: Path,
                                                 tmp_path: Path) -> None:
    """The PNGs in the figures folder are read without the page, and their titles did not say whether they showed
    validation or test films (the confusion matrix gave the threshold to 3 decimals, the page to 4)."""
    from pneumoscan.report.figures import confusion_matrix, reliability, roc_curves

    assert confusion_matrix([[3, 1], [0, 4]], ["NORMAL", "PNEUMONIA"], 0.67756, "test split films (n=8)"
                            ).axes[0].get_title() == "Confusion matrix at threshold 0.6776\ntest split films (n=8)"
    fig = reliability(np.array([0.5]), np.array([0.5]), np.array([2]), 0.0, np.array([0, 1]), np.array([0.4, 0.6]),
                      "validation films (n=2)")
    assert fig.get_suptitle() == "Calibration on validation films (n=2)"
    assert roc_curves([], "ROC curve\nvalidation films (n=2)").axes[0].get_title() == "ROC curve\nvalidation films (n=2)"
    n_val = int(re.search(r"(\d+) images \(", val_report.read_text(encoding="utf-8")).group(1))
    for alt in ("confusion matrix on", "ROC curve on", "precision-recall curve on",
                "reliability diagram and probability histogram on", "recall by cause on",
                "recall by original image size on"):
        assert f'alt="{alt} validation films (n={n_val})"' in val_report.read_text(encoding="utf-8")
    out = tmp_path / "test.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    n = sum(1 for _ in (tiny_data / "test").rglob("*.jpeg"))
    text = out.read_text(encoding="utf-8")
    assert f'alt="ROC curve on test split films (n={n})"' in text and f"cases of test split films (n={n})" in text


def test_the_subgroup_charts_name_the_films_they_are_drawn_on() -> None:
    """The recall-by-cause and by-size PNGs had no title at all, so read without the page they did not say which
    films' recall they showed, as every other figure of the films does (their alt texts: the test above)."""
    from pneumoscan.report.figures import group_bars

    fig = group_bars(["virus"], [0.5], [2], "recall", "cause", "Recall by cause\nvalidation films (n=4)")
    assert fig.axes[0].get_title() == "Recall by cause\nvalidation films (n=4)"
    assert group_bars(["virus"], [0.5], [2], "recall", "cause").axes[0].get_title() == ""


def test_the_pages_shared_patient_warning_reads_right_for_one_patient() -> None:
    """One patient's one film read '1 patient of the evaluated images (1 of 1 films) also have films ...: the same
    patients on both sides ... lists them'."""
    from pneumoscan.report.build import _shared_warning

    assert _shared_warning({"patients": 1, "films": 1, "by": ["DICOM PatientID"]}, 1) == (
        "Warning: 1 patient of the evaluated images (the only film) also has films in the data this model was trained "
        "on, by DICOM PatientID: the same patient on both sides, so the figures below are not those of new patients "
        "only; `pneumoscan audit DATA` lists that patient (DATA: the data set both are splits of, or one CSV manifest "
        "listing both with a split column).")
    assert _shared_warning({"patients": 1, "films": 2, "by": ["folder"]}, 2).startswith(
        "Warning: 1 patient of the evaluated images (all 2 films) also has films")
    assert _shared_warning({"patients": 2, "films": 3, "by": ["folder"]}, 5).startswith(
        "Warning: 2 patients of the evaluated images (3 of 5 films) also have films in the data this model was trained "
        "on, by folder: the same patients on both sides, so the figures below are not those of new patients; "
        "`pneumoscan audit DATA` lists them (DATA:")


def test_the_summary_of_a_tta_model_says_what_the_mirror_is_and_what_it_measured(tiny_run: Path) -> None:
    """--tta averages with a left-right mirror training never shows; the summary says so, and the measurement it
    cites holds: every run of bench/results/ablation.json (the model card's ablation table) scored lower validation
    AUC with it."""
    from dataclasses import replace

    from pneumoscan.report.build import TTA_ON, _summary_section
    from pneumoscan.report.run import load_run
    from pneumoscan.report.scores import run_scores

    run = load_run(tiny_run)
    scores = run_scores(run, None, None, n_boot=10, progress=False)
    assert "left-right mirror, a view training never shows" in _summary_section(
        replace(run, meta=replace(run.meta, tta=True)), scores, 1)
    assert TTA_ON not in _summary_section(run, scores, 1)
    rows = json.loads((Path(__file__).parents[2] / "bench/results/ablation.json").read_text())
    rows = [r for r in rows["rows"] if r.get("val_auc_tta") is not None]
    claimed = int(re.search(r"in all (\d+) runs of the ablation table of the shipped model's card", TTA_ON)[1])
    assert len(rows) == claimed and all(r["val_auc_tta"] < r["val_auc"] for r in rows)


def test_report_on_data_of_a_guarded_model_leaves_its_torch_model_unloaded(
        tiny_run: Path, tiny_data: Path, fitted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX export serves `report --data` and `compare --data`; their 'no guard' line loaded the torch model
    (1.1 s for the shipped one) to ask whether a guard could be fitted, even of a model that has one."""
    from pneumoscan.export.onnx import export_artifact
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.report.run import load_run
    from pneumoscan.report.scores import data_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(fitted.with_name("model.ood.safetensors"), run)
    export_artifact(run, run / "model.onnx")
    loads: list[Path] = []
    load = Predictor._load_model
    monkeypatch.setattr(Predictor, "_load_model", lambda self: loads.append(self.path) or load(self))
    scores = data_scores(load_run(run), tiny_data, "test", n_boot=10, progress=False)
    assert scores.guarded and scores.no_guard_fits is None
    assert loads == []


def test_compare_gives_each_runs_paired_auc_difference_from_the_first(tiny_run: Path, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    """compare showed each run's AUC with its own interval only, which cannot say whether two runs differ: the same
    films score both, so their AUCs are correlated. Each run after the first gets DeLong's paired test against it."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    other = tmp_path / "other"
    train(TrainConfig(data=str(tiny_data), out=str(other), model="cnn", image_size=32, epochs=1, batch_size=16,
                      val_fraction=0.2, cache_dir=str(tmp_path / "cache")), progress=False)
    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_run), str(other), "--data", str(tiny_data), "--out", str(out),
                 "--n-boot", "5"]) == 0
    first, second = json.loads(out.with_suffix(".json").read_text())
    assert all(first[c] is None for c in ("auc_diff_vs_first", "auc_diff_ci_low", "auc_diff_ci_high", "auc_diff_p"))
    assert second["auc_diff_vs_first"] == pytest.approx(second["roc_auc"] - first["roc_auc"])
    assert second["auc_diff_ci_low"] < second["auc_diff_vs_first"] < second["auc_diff_ci_high"]
    assert 0.0 < second["auc_diff_p"] <= 1.0
    assert second["auc_diff_films"] == second["n"] == first["n"]
    with out.with_suffix(".csv").open(newline="") as handle:
        assert [row["auc_diff_films"] for row in csv.DictReader(handle)] == ["", str(first["n"])]
    assert "p (DeLong)" in out.read_text("utf-8")


def test_paired_auc_matches_films_by_path_whatever_their_order() -> None:
    """The paired test takes the films both runs scored, each film's two scores side by side."""
    from pneumoscan.evaluation.metrics import delong_auc_difference
    from pneumoscan.report.compare import paired_auc
    from pneumoscan.report.scores import Scores

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 15)
    probs_a, probs_b = rng.random(30), rng.random(30)
    paths = [Path(f"/films/{i}.jpeg") for i in range(30)]
    groups = [f"p{i // 3}" for i in range(30)]
    first = Scores("s", "test", paths, labels, probs_a, 0.5, {}, [None] * 30, groups=groups)
    order = rng.permutation(30)[:25]  # another order, five films left out
    extra = [Path("/films/extra.jpeg")]
    other = Scores("s", "test", [paths[i] for i in order] + extra, np.r_[labels[order], 1],
                   np.r_[probs_b[order], 0.9], 0.5, {}, [None] * 26)
    row = paired_auc(first, other)
    keep = np.sort(order)
    expected = delong_auc_difference(labels[keep], probs_b[keep], probs_a[keep], groups=[groups[i] for i in keep])
    assert row == pytest.approx({"auc_diff_vs_first": expected.difference, "auc_diff_ci_low": expected.ci95[0],
                                 "auc_diff_ci_high": expected.ci95[1], "auc_diff_p": expected.p_value,
                                 "auc_diff_films": 25, "auc_diff_relabelled": 0})


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_out_in_the_run_s_training_data_or_its_data_is_refused(command: str, tiny_run: Path, tiny_data: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """explain, ensemble, train, pretrain and set-threshold refuse an --out among the data's films; report and
    compare wrote their page into the run's training data (DATA/train/NORMAL/r.html) and its figures into
    r_files/ beside it, where the next training took 9 figures for NORMAL films; an --out in the --data evaluated is
    refused alike."""
    run = [str(tiny_run)] if command == "report" else [str(tiny_run), str(shutil.copytree(tiny_run, tmp_path / "copy"))]
    out = tiny_data / "train" / "NORMAL" / "r.html"
    assert main([command, *run, "--out", str(out)]) == 2
    assert f"{out}: is inside the data folder {tiny_data}, where what is written would sit among its labelled films; " \
           "give --out a file outside it, e.g. --out " in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(tiny_data / "test", other / "test")
    out = other / "test" / "PNEUMONIA" / "r.html"
    assert main([command, *run, "--data", str(other), "--out", str(out)]) == 2
    assert f"{out}: is inside the data folder {other}, where " in capsys.readouterr().err
    assert not (tiny_data / "train" / "NORMAL" / "r_files").exists() and not (out.parent / "r_files").exists()


def test_report_at_its_default_place_in_a_split_folder_s_run_is_not_refused_for_the_split_beside_it(
        tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A run `train --data DATA/train --out DATA/train/runs/r` made (as train allows) reported on `--data DATA/test`
    was refused at its default place, RUN/report.html, as inside the data folder DATA (DATA/test's split folder
    beside it): only an --out given is checked against --data."""
    data = tmp_path / "DATA"
    shutil.copytree(tiny_data / "test", data / "test")
    (data / "train").mkdir()
    run = shutil.copytree(tiny_run, data / "train" / "runs" / "r")
    assert main(["report", str(run), "--data", str(data / "test"), "--n-boot", "10", "--cases", "1"]) == 0
    assert (run / "report.html").is_file()


def test_paired_auc_clusters_films_that_either_run_keys_to_one_patient() -> None:
    """The paired test took the first run's patient keys alone: a first run keying no patients (films resampled)
    against one keying patients of three films each counted those films independent, its interval too narrow (the
    bench: 90-91 % coverage, size 8.8 %). Two films are one patient's when either run keys them so."""
    from pneumoscan.evaluation.metrics import delong_auc_difference
    from pneumoscan.report.compare import paired_auc
    from pneumoscan.report.scores import Scores

    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 1] * 8)
    probs_a, probs_b = rng.random(48), rng.random(48)
    paths = [Path(f"/films/{i}.jpeg") for i in range(48)]
    by_three, by_pair = [f"p{i // 3}" for i in range(48)], [f"q{i // 3}" if i % 3 < 2 else None for i in range(48)]

    def scores(probs: np.ndarray, groups: list[str | None] | None) -> Scores:
        return Scores("s", "test", paths, labels, probs, 0.5, {}, [None] * 48, groups=groups)

    expected = delong_auc_difference(labels, probs_b, probs_a, groups=by_three)
    for first_groups, other_groups in ((None, by_three), (by_three, None), (by_pair, by_three)):
        row = paired_auc(scores(probs_a, first_groups), scores(probs_b, other_groups))
        assert (row["auc_diff_ci_low"], row["auc_diff_p"]) == pytest.approx((expected.ci95[0], expected.p_value))


def test_compare_tells_films_labelled_differently_between_runs(tiny_run: Path, tmp_path: Path) -> None:
    """Without --data the runs' validation films are matched by label and content: a film one run's predictions
    label NORMAL and another's PNEUMONIA was silently left out of the paired AUC test, the note calling it another
    film. The note now counts them; an image filed under both labels within each run is not counted."""
    def copy(name: str, edit: Callable[[list[dict[str, str]]], list[dict[str, str]]]) -> Path:
        run = tmp_path / name
        shutil.copytree(tiny_run, run)
        with (run / "val_predictions.csv").open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, edit(list(reader))
        with (run / "val_predictions.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        return run

    def flip(row: dict[str, str]) -> dict[str, str]:
        return {**row, "label": str(1 - int(row["label"]))}

    def note(*runs: Path) -> tuple[str, dict]:
        out = tmp_path / f"c{len(list(tmp_path.glob('c*.html')))}.html"
        assert main(["compare", *map(str, runs), "--out", str(out), "--n-boot", "5"]) == 0
        return html.unescape(out.read_text("utf-8")), json.loads(out.with_suffix(".json").read_text())[1]

    n_films = sum(1 for _ in csv.DictReader((tiny_run / "val_predictions.csv").open()))
    relabelled = copy("relabelled", lambda rows: [flip(rows[0]), flip(rows[1]), *rows[2:]])
    text, row = note(tiny_run, relabelled)
    assert ("The same image labelled differently: 2 films of relabelled's are in run's under the other label; the "
            "paired AUC test leaves such films out.") in text
    assert row["auc_diff_films"] == n_films - 2 and row["auc_diff_relabelled"] == 2
    # one image filed under both labels in each run's predictions: no film is relabelled between the runs
    both = [copy(name, lambda rows: [*rows, flip(rows[0])]) for name in ("both1", "both2")]
    text, _ = note(*both)
    assert f"All runs were scored on the same {n_films + 1} validation films." in text
    text, _ = note(tiny_run, both[0])
    assert "different films" in text and "labelled differently" not in text


def test_compare_replaces_its_table_from_before_the_relabelled_column(tmp_path: Path) -> None:
    """The table gained `auc_diff_relabelled`: one written before it is still compare's own to replace."""
    from pneumoscan.report.compare import COLUMNS, _earlier_table

    before = tmp_path / "c.csv"
    before.write_text(",".join(c for c in COLUMNS if c != "auc_diff_relabelled") + "\n", encoding="utf-8")
    assert _earlier_table(before)
