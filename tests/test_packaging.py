"""The wheel a user installs holds what the package reads at run time (the shipped model and its guard, its model
card, the service page's static files, py.typed, the bundled sample's train films, which `export` checks on) and
every module, and the installed package finds its sample and card and predicts with its shipped model with no
source tree around; the sdist holds the test suite and every source of the wheel. Builds the wheel from a copy of the source (about 5 s)."""
from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import pneumoscan

# `source` copies sample/, test/ films too (the sdist ships them); the wheel's tests run pneumoscan in other
# processes, on the sample's train films only
pytestmark = pytest.mark.lists_sample_test_films(reason="the source tree is copied whole for the sdist and wheel "
                                                        "builds; no model sees a test/ film")
ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MODEL_CARD.md", "src", "sample")
# What MANIFEST.in adds to the sdist: the test suite and what it reads
SUITE = ("MANIFEST.in", "Makefile", "tests", "docs", "bench")
LEFT_OUT = ("__pycache__", "*.py[cod]", "*.tmp", "*.egg-info")
# The texts of the top a pip install has (`pneumoscan card`, `pneumoscan docs GUIDE`): each at its path in the wheel
TOP_TEXTS = {name: f"pneumoscan/docs/{name}" for name in
             ["MODEL_CARD.md", "README.md",
              *sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))]}
# A Markdown link's target, less its #anchor: [text](target) and [text]: target
LINK = re.compile(r"\]\(([^)\s]+)(?:\s[^)]*)?\)|^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the tracked sources (no build/ or egg-info of an earlier build)."""
    try:
        setuptools_major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        setuptools_major = 0
    if setuptools_major < 77:  # pyproject's build requirement; building offline uses the installed one
        pytest.skip("setuptools 77 or later is not installed (pip install -e '.[dev]' installs it): the wheel "
                    "cannot be built without the network")
    tree = tmp_path_factory.mktemp("source")
    for name in SOURCES + SUITE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns(*LEFT_OUT))
        else:
            shutil.copy2(source, tree / name)
    return tree


def _built_wheel(tree: Path, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(tree)], check=True, capture_output=True, text=True)
    (out / "build.log").write_text(done.stdout + done.stderr)
    (built,) = out.glob("pneumoscan-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built_wheel(source, tmp_path_factory.mktemp("wheel"))


def test_building_warns_of_no_package_setuptools_would_ignore(wheel: Path) -> None:
    """The folders of data files (weights/, service/static/, the sample's class folders) are listed as packages:
    otherwise every `pip install` (`make demo`'s too, under --quiet) printed some 250 lines of setuptools'
    "Package would be ignored" warnings, which read like a failed install."""
    log = (wheel.parent / "build.log").read_text()
    assert "Package would be ignored" not in log and "absent from the `packages` configuration" not in log, log


def test_the_wheel_holds_every_module_and_the_files_read_at_run_time(wheel: Path) -> None:
    """Of the bundled sample, the train films only (`export` checks on them, `sample_image_paths`): its 60 test films,
    films of the official test split (0.4 MB), shipped too, though nothing installed has read them since the check
    moved to the train films; the demo and the README's quick start use the source tree's sample/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "src"
    expected = {path.relative_to(src).as_posix() for path in (src / "pneumoscan").rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert {"pneumoscan/py.typed", "pneumoscan/weights/default.safetensors", "pneumoscan/weights/default.onnx",
            "pneumoscan/weights/default.ood.safetensors", "pneumoscan/service/static/index.html"} <= expected
    assert sorted(expected - names) == []
    films = {name for name in names if name.startswith("pneumoscan/sample/chest_xray/")}
    tracked = {"pneumoscan/sample/" + path.relative_to(ROOT / "sample").as_posix()
               for path in (ROOT / "sample" / "chest_xray" / "train").rglob("*.jpeg")}
    assert len(tracked) == 200 and films == tracked
    assert "pneumoscan/sample/README.md" in names  # the sample's licence (CC BY 4.0) and source
    shipped = expected | tracked | {"pneumoscan/sample/README.md"} | set(TOP_TEXTS.values())
    assert sorted(name for name in names if ".dist-info/" not in name and name not in shipped) == []  # no tests, .pyc


def test_the_licence_metadata_covers_the_bundled_films(wheel: Path) -> None:
    """The wheel ships the sample's 200 train films, which are CC BY 4.0 (sample/README.md), but its metadata said MIT
    only: licence scanners and SBOMs of a hospital's installs saw nothing to attribute. The expression names both, and
    the sample's README, which gives the films' source, ships among the licence files."""
    assert "CC BY 4.0" in (ROOT / "sample" / "README.md").read_text()
    archive = zipfile.ZipFile(wheel)
    info = f"pneumoscan-{pneumoscan.__version__}.dist-info"
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "\nLicense-Expression: MIT AND CC-BY-4.0\n" in metadata
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/sample/README.md"} <= set(archive.namelist())


def test_the_long_description_says_how_to_read_what_its_relative_links_name(wheel: Path) -> None:
    """README.md is the long description a package index shows, where its relative links (MODEL_CARD.md,
    docs/*.md) lead nowhere: each names a text the wheel ships, and the README says, in its opening, which commands
    print them."""
    import email

    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(
        f"pneumoscan-{pneumoscan.__version__}.dist-info/METADATA"))
    readme = metadata.get_payload()
    assert metadata["Description-Content-Type"] == "text/markdown" and readme.strip() == \
        (ROOT / "README.md").read_text().strip()
    links = set(re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme))
    assert "MODEL_CARD.md" in links and "docs/training.md" in links and sorted(links - set(TOP_TEXTS)) == []
    opening = readme.split("\n## ", 1)[0]
    (said,) = [part for part in opening.split("\n\n") if "package index" in part]
    assert "`pneumoscan card`" in said and "`pneumoscan docs`" in said


def test_the_classifiers_say_what_the_package_is(wheel: Path) -> None:
    """The metadata had no classifier: an index's searches by audience, topic or Python version missed pneumoscan.
    No licence classifier (PEP 639: License-Expression says it; setuptools refuses both); the Python versions named
    are within Requires-Python, its floor among them; Typing :: Typed as py.typed ships."""
    import email

    from packaging.specifiers import SpecifierSet

    archive = zipfile.ZipFile(wheel)
    metadata = email.message_from_bytes(archive.read(f"pneumoscan-{pneumoscan.__version__}.dist-info/METADATA"))
    classifiers = metadata.get_all("Classifier") or []
    assert {"Intended Audience :: Healthcare Industry", "Intended Audience :: Science/Research",
            "Topic :: Scientific/Engineering :: Medical Science Apps.",
            "Topic :: Scientific/Engineering :: Image Recognition"} <= set(classifiers)
    assert [c for c in classifiers if c.startswith("License ::")] == [] and metadata["License-Expression"]
    requires = SpecifierSet(metadata["Requires-Python"])
    versions = [c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert min(spec.version for spec in requires) in versions and all(requires.contains(v) for v in versions)
    assert ("Typing :: Typed" in classifiers) == ("pneumoscan/py.typed" in archive.namelist())
    assert len([c for c in classifiers if c.startswith("Development Status ::")]) == 1


def test_the_shipped_model_files_stay_well_under_25_mb(wheel: Path) -> None:
    """The default model, its ONNX export and its guard (about 11.4 MB together); a wheel of hundreds of MB would be
    refused by package indexes and slow every install."""
    weights = [info for info in zipfile.ZipFile(wheel).infolist() if info.filename.startswith("pneumoscan/weights/")]
    assert sum(info.file_size for info in weights) < 25e6


def test_the_wheel_holds_the_model_card_and_guides_as_they_are_and_nothing_else_of_the_top(wheel: Path) -> None:
    """MODEL_CARD.md was not in the wheel, so `pneumoscan card` and GET /model/card had nothing to show a user who
    installed pneumoscan with pip; nor were docs/*.md, which `--help` and messages cited (`pneumoscan docs` prints
    them now). Their installed folder is the top of the source tree: nothing else of it ships."""
    archive = zipfile.ZipFile(wheel)
    assert len(TOP_TEXTS) == 8
    assert sorted(name for name in archive.namelist() if name.startswith("pneumoscan/docs/")) == \
        sorted(TOP_TEXTS.values())
    assert all(archive.read(installed) == (ROOT / name).read_bytes() for name, installed in TOP_TEXTS.items())


def relative_links(text: str) -> list[str]:
    """The targets of `text`'s Markdown links that are paths (no URL, mail address or #anchor of the same file),
    less their #anchor."""
    targets = (first or second for first, second in LINK.findall(text))
    return [target.split("#")[0] for target in targets
            if target and not target.startswith("#") and not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_relative_links_are_found_as_written() -> None:
    text = ("[a](../README.md) [b](MODEL_CARD.md#model) [c](https://x.org/a.md) [d](#local)\n"
            "[f]: training.md#tta\n[g](mailto:a@b.org) `[h](not/a/link.md)` [i](bench/results/ablation.md \"t\")")
    assert relative_links(text) == ["../README.md", "MODEL_CARD.md", "training.md", "not/a/link.md",
                                    "bench/results/ablation.md"]


def test_every_relative_link_of_an_installed_guide_and_the_readme_resolves_in_the_package(wheel: Path,
                                                                                          tmp_path: Path) -> None:
    """Six guides' "Back to the [README](../README.md)" led nowhere in an installed pneumoscan (README.md was not
    installed); a link to a file of the source tree only (bench/, tests/, sample/) would lead nowhere as well."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    package = (tmp_path / "pneumoscan").resolve()
    texts = sorted((package / "docs").rglob("*.md"))
    broken = {f"{text.relative_to(package)}: {link}" for text in texts
              for link in relative_links(text.read_text(encoding="utf-8"))
              if not ((target := (text.parent / link).resolve()).is_relative_to(package) and target.exists())}
    assert sorted(broken) == []
    assert len(texts) == len(TOP_TEXTS)
    linked = {link for text in texts for link in relative_links(text.read_text(encoding="utf-8"))}
    assert {"../README.md", "MODEL_CARD.md", "docs/training.md"} <= linked  # the check sees the links it is for


def test_the_installed_package_finds_its_sample_card_and_guides_with_no_source_tree(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    code = "from pneumoscan.export.onnx import sample_image_paths; print(*sample_image_paths(), sep='\\n')"
    env = {**os.environ, "PYTHONPATH": str(site)}
    shown = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    assert len(shown) == 8
    assert all(Path(path).is_relative_to(site / "pneumoscan" / "sample") for path in shown)
    card = subprocess.run([sys.executable, "-m", "pneumoscan", "card"], cwd=elsewhere, env=env, check=True,
                          capture_output=True).stdout
    assert card == (site / "pneumoscan" / "docs" / "MODEL_CARD.md").read_bytes()
    guide = subprocess.run([sys.executable, "-m", "pneumoscan", "docs", "training"], cwd=elsewhere, env=env,
                           check=True, capture_output=True).stdout
    assert guide == (site / "pneumoscan" / "docs" / "docs" / "training.md").read_bytes()
    readme = subprocess.run([sys.executable, "-m", "pneumoscan", "docs", "README.md"], cwd=elsewhere, env=env,
                            check=True, capture_output=True).stdout
    assert readme == (site / "pneumoscan" / "docs" / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    where = "from pneumoscan.card import model_card_path; print(model_card_path())"
    assert subprocess.run([sys.executable, "-c", where], cwd=elsewhere, env=env, check=True, capture_output=True,
                          text=True).stdout.strip() == str(site / "pneumoscan" / "docs" / "MODEL_CARD.md")
    version = subprocess.run([sys.executable, "-m", "pneumoscan", "--version"], cwd=elsewhere, env=env, check=True,
                             capture_output=True, text=True).stdout.split()
    metadata = zipfile.ZipFile(wheel).read(f"pneumoscan-{pneumoscan.__version__}.dist-info/METADATA").decode()
    assert version == ["pneumoscan", pneumoscan.__version__] and f"\nVersion: {pneumoscan.__version__}\n" in metadata


def test_the_installed_package_predicts_with_its_shipped_model_and_serves_its_page(wheel: Path, tmp_path: Path) -> None:
    """What `pip install pneumoscan` promises: `predict IMAGE` with no --model uses the model, ONNX export and guard
    shipped inside the package, and `serve` finds its page's files there, with no source tree around."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    film = shutil.copy(min((ROOT / "sample" / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg")), elsewhere)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    code = ("import sys; from pneumoscan import Predictor; from pneumoscan.service.app import STATIC_DIR; "
            "p = Predictor(); (r,) = p.predict_files([sys.argv[1]]); "
            "print(p.path, p.backend, r.in_distribution, r.label, STATIC_DIR, sep='\\n')")
    shown = subprocess.run([sys.executable, "-c", code, film], cwd=elsewhere, env=env, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    installed = site / "pneumoscan"
    assert shown[:4] == [str(installed / "weights" / "default.safetensors"), "onnx", "True", "PNEUMONIA"]
    assert {path.name for path in Path(shown[4]).iterdir()} >= {"index.html", "app.js", "style.css"}
    assert Path(shown[4]).is_relative_to(installed)


def test_the_sdist_holds_the_test_suite_and_every_source_of_the_wheel(source: Path, tmp_path: Path) -> None:
    """The sdist held only the tests/test*.py at the top of tests/ (setuptools' default), without conftest.py or the
    folders of tests: `pytest` in an unpacked sdist stopped at collection. It holds the whole suite, the files the
    suite reads, and every file the wheel is built from (so the sdist builds the same wheel). Its list is the
    manifest that `egg_info` writes and `sdist` packs (0.5 s; packing the sdist takes seconds more)."""
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "egg_info", "-e", str(tmp_path)],
                   cwd=source, check=True, capture_output=True)
    manifest = (tmp_path / "pneumoscan.egg-info" / "SOURCES.txt").read_text().split()
    held = {os.path.normpath(name) for name in manifest}  # ./MODEL_CARD.md: the card's package folder is the top
    wanted = {path.relative_to(ROOT).as_posix() for name in SOURCES + SUITE for path in
              ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
              if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in path.relative_to(ROOT).parts
                                            for pattern in LEFT_OUT)}
    assert {"tests/conftest.py", "tests/__init__.py", "tests/data/test_dicom.py", "sample/README.md"} <= wanted
    assert sorted(wanted - held) == []


def test_the_package_version_has_one_source() -> None:
    """pyproject.toml takes the version from pneumoscan.__version__ (what `--version` prints), never a second copy."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pneumoscan.__version__"}


def test_python_multipart_floor_has_the_module_the_service_imports() -> None:
    """service/uploads.py imports `python_multipart`, the module name python-multipart has had since 0.0.13 (before,
    `multipart`). The floor was 0.0.9, so pip kept an installed 0.0.9-0.0.12: `serve` started and every POST /predict
    then failed on the import. 0.0.18 also fixes CVE-2024-53981, a denial of service in the parser reading uploads."""
    from packaging.requirements import Requirement

    assert "from python_multipart" in (ROOT / "src" / "pneumoscan" / "service" / "uploads.py").read_text()
    (requirement,) = [Requirement(text) for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                      ["dependencies"] if Requirement(text).name == "python-multipart"]
    assert not requirement.specifier.contains("0.0.12") and not requirement.specifier.contains("0.0.17")
    assert requirement.specifier.contains(importlib.metadata.version("python-multipart"))


def test_the_dev_extra_holds_the_build_requirement_so_the_wheel_tests_run() -> None:
    """The wheel tests build offline with the installed setuptools and skip below 77, the build requirement. A venv
    of Python 3.11 comes with setuptools 65.5 and `make test` installed only '.[dev]' into it, which did not name
    setuptools: on a fresh machine (and in CI) every test here that builds was skipped."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (build,) = [Requirement(text) for text in project["build-system"]["requires"] if text.startswith("setuptools")]
    dev = [Requirement(text) for text in project["project"]["optional-dependencies"]["dev"]]
    assert [str(requirement.specifier) for requirement in dev if requirement.name == "setuptools"] == \
        [str(build.specifier)]
    assert "'.[dev]'" in (ROOT / "Makefile").read_text()  # what `make test` installs


def test_the_top_folder_holds_no_python_module() -> None:
    """pyproject maps the top folder as the package `pneumoscan.docs` (it ships MODEL_CARD.md) and docs/ as
    `pneumoscan.docs.docs` (the guides): setuptools would ship any module there with them (a `conftest.py` or
    `noxfile.py` as `pneumoscan/docs/...`), so there must be none. The wheel fixture copies chosen files only, so this
    checks the real folders."""
    assert sorted(p.name for p in [*ROOT.glob("*.py"), *(ROOT / "docs").glob("*.py")]) == []
