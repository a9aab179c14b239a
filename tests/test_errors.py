from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

from pneumoscan.errors import (InputError, MissingImagesWarning, check_at_least_one, cli_words, gpu_out_of_memory,
                             option, speaks_python, switch, warn, words)
from pneumoscan.evaluation.metrics import UndefinedMetricWarning


def test_a_count_below_one_is_an_input_error_naming_the_flag() -> None:
    with pytest.raises(InputError, match=r"^--n-boot 0: must be at least 1$"):
        check_at_least_one(0, "n_boot")
    with pytest.raises(InputError, match=r"^n_boot=0: must be at least 1$"):
        speaks_python(check_at_least_one)(0, "n_boot")
    check_at_least_one(1, "n_boot")


def test_options_are_named_as_the_command_line_or_python_takes_them() -> None:
    def said() -> list[str]:
        return [option("use_given_val"), option("epochs", 0), option("model", "cnn"), switch("resume"),
                words("--data DIR", "`data`")]

    assert said() == ["--use-given-val", "--epochs 0", "--model cnn", "--resume", "--data DIR"]
    assert speaks_python(said)() == ["`use_given_val`", "epochs=0", "model='cnn'", "resume=True", "`data`"]
    with cli_words():  # the command line's own call of the code a notebook calls too
        assert speaks_python(said)()[0] == "--use-given-val"
    assert said()[0] == "--use-given-val"  # and nothing is left switched on


def test_a_warning_of_pneumoscan_names_the_callers_line_however_deep_it_was_issued() -> None:
    from pneumoscan.evaluation.bootstrap import summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        summarize([1, 1, 1, 1], [0.9, 0.8, 0.7, 0.6], 0.5, n_boot=5)  # no negatives: specificity, npv undefined
        warn("said here")
    assert {w.category for w in caught} == {UndefinedMetricWarning, UserWarning}
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line), (__file__, line + 1)}


def test_warnings_of_pneumoscan_are_filtered_by_their_category() -> None:
    from pneumoscan.evaluation.bootstrap import summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        summarize([1, 1, 1, 1], [0.9, 0.8, 0.7, 0.6], 0.5, n_boot=5)
    assert caught == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingImagesWarning)
        with pytest.raises(MissingImagesWarning, match="left out"):
            warn(MissingImagesWarning("2 images left out"))


def test_a_warning_issued_while_a_module_is_imported_names_the_line_that_caused_the_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted as warnings.warn counts frames, which passes over importlib's: modules in tmp_path stand for
    pneumoscan's, one importing the other, which warns while it is imported."""
    (tmp_path / "outer_module.py").write_text("import importlib\n\ndef run():\n"
                                              "    importlib.import_module('inner_module')\n")
    (tmp_path / "inner_module.py").write_text("from pneumoscan.errors import warn\n\nwarn('at import')\n")
    monkeypatch.setattr("pneumoscan.errors._PACKAGE", str(tmp_path) + os.sep)
    monkeypatch.syspath_prepend(str(tmp_path))
    import outer_module  # type: ignore[import-not-found]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outer_module.run(); line = sys._getframe().f_lineno  # noqa: E702 - the line that warns
    assert [(str(w.message), w.filename, w.lineno) for w in caught] == [("at import", __file__, line)]


def test_counted_says_one_thing_in_the_singular() -> None:
    from pneumoscan.errors import counted

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "patch", "patches") == "1 patch" and counted(3, "patch", "patches") == "3 patches"


@pytest.mark.parametrize(("value", "digits", "text"), [
    (0.99996, 4, "0.99996"), (0.9995, 3, "0.9995"), (0.9848, 4, "0.9848"), (1.0, 4, "1.0000"), (0.0, 4, "0.0000"),
    (2.42e-05, 4, "2.42e-05"), (0.61512, 4, "0.6151"), (float("nan"), 4, "nan")])
def test_decimals_never_shows_a_rate_below_1_as_1(value: float, digits: int, text: str) -> None:
    from pneumoscan.errors import decimals

    assert decimals(value, digits) == text


def test_evaluate_and_set_threshold_print_by_that_rule() -> None:
    """They printed with .4f: an AUC of 0.99996 read 1.0000, a perfect score it is not."""
    from pneumoscan.evaluation.commands import _borderline_lines
    from pneumoscan.evaluation.bootstrap import summarize
    from pneumoscan.evaluation.local_threshold import LocalThreshold, format_local_threshold

    border = {"interval": [0.5, 0.7], "n": 1, "share": 0.0001, "by_class": {"NORMAL": {"n": 1}, "PNEUMONIA": {"n": 0}},
              "outside": {"n": 9999, "accuracy": 0.99996, "recall": 1.0, "specificity": 0.99993}}
    assert "accuracy 0.99996  recall 1.0000  specificity 0.9999 (n=9999)" in _borderline_lines(border)[1]
    figures = {"n": 30000, "n_negative": 10000, "n_positive": 20000, "threshold": 0.5,
               "confusion_matrix": {"matrix": [[9999, 1], [0, 20000]]},
               **{k: {"value": 0.99996} for k in ("recall", "specificity", "precision", "npv", "accuracy")},
               # how the intervals were drawn, as `summarize` (which set-threshold's figures come from) always records
               "intervals": summarize([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5, n_boot=10)["intervals"]}
    text = format_local_threshold(LocalThreshold(0.5, (0.4, 0.6), 0.95, figures, figures, Path("m"), True, []))
    assert "  recall       0.99996 0.99996" in text
    assert "(95% bootstrap interval 0.4000 to 0.6000, resampled film by film)" in text


@pytest.mark.parametrize(("error", "full"), [
    ("OutOfMemoryError:CUDA out of memory. Tried to allocate 20.00 MiB", True),  # torch's caching allocator
    ("AcceleratorError:CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other "
     "API call, so the stacktrace below might be incorrect.", True),  # C10_CUDA_CHECK: a cudaMalloc outside the cache
    ("RuntimeError:CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", True),
    ("RuntimeError:cuDNN error: CUDNN_STATUS_ALLOC_FAILED", True),
    ("AcceleratorError:CUDA error: an illegal memory access was encountered", False),  # a bug, not a full GPU
    ("RuntimeError:CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, "
     "&alpha, a, lda, b, ldb, &beta, c, ldc)`", False),
    ("RuntimeError:DefaultCPUAllocator: can't allocate memory: you tried to allocate 1024 bytes", False),  # the host's
    ("ValueError:CUDA error: out of memory", False),
])
def test_a_full_gpu_is_told_by_torchs_error_class_or_its_exact_allocation_failure_texts(error: str, full: bool) -> None:
    """torch 2.13's texts (ATen/cuda/Exceptions.h, c10/cuda/CUDAException.cpp): a cuBLAS or cuDNN handle, or a
    cudaMalloc outside torch's cache, fails with a RuntimeError, not OutOfMemoryError. No GPU here: raised by hand."""
    import torch

    kind, text = error.split(":", 1)
    err = getattr(torch, kind, None) or {"RuntimeError": RuntimeError, "ValueError": ValueError}[kind]
    assert gpu_out_of_memory(err(text)) is full


def test_one_line_escapes_every_unprintable_character_that_is_not_whitespace() -> None:
    """A file named `IM\\u200b01.jpeg` (a zero-width space pasted from a web form) was named `IM 01.jpeg`, another
    file; an escape at the limit was cut in two."""
    from pneumoscan.errors import one_line

    assert one_line("IM\u200b01.jpeg:\x1b[31m\tbad\n\r\u2028name\U000e0001") == \
        "IM\\u200b01.jpeg:\\x1b[31m bad name\\U000e0001"
    assert one_line("r\udcf6ntgen.jpeg") == "r\\udcf6ntgen.jpeg"
    name = "abcdef\u200bghij"
    assert [one_line(name, n) for n in (10, 14, 15)] == ["abcdef...", "abcdef...", "abcdef\\u200b..."]
    assert one_line(name, 16) == "abcdef\\u200bghij"


def test_a_command_a_message_gives_on_windows_quotes_a_path_as_cmd_exe_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows every path with a backslash came in POSIX single quotes ('C:\\Users\\amy\\runs\\r1'), which cmd.exe
    keeps as part of the name."""
    from pneumoscan.errors import shell_word

    with monkeypatch.context() as windows:  # left before the asserts: pytest's report makes paths of os.name's kind
        windows.setattr(os, "name", "nt")
        plain, spaced = shell_word("C:\\Users\\amy\\runs\\r1"), shell_word("C:\\Users\\amy\\my runs\\r1")
    assert plain == "C:\\Users\\amy\\runs\\r1"
    assert spaced == '"C:\\Users\\amy\\my runs\\r1"'


def test_one_name_escapes_only_what_breaks_the_line_not_other_spaces() -> None:
    """`ideo\\u3000sp.jpeg` (an ideographic space) printed as `ideo\\\\u3000sp.jpeg`, a name the user could not copy
    or grep; no-break and thin spaces alike."""
    from pneumoscan.errors import one_name

    kept = "ideo\u3000sp \u00a0nb\u2009thin\u202fnarrow.jpeg"
    assert one_name(kept) == kept
    assert one_name("a\nb\tc\r\x1b[31m\x7f\x85\u2028\u2029r\udcf6\ud800.jpeg") == \
        "a\\nb\\tc\\r\\x1b[31m\\x7f\\x85\\u2028\\u2029r\\udcf6\\ud800.jpeg"


def test_a_name_prints_alike_in_every_message_with_what_hides_or_reorders_text_escaped() -> None:
    """`one_line` (most errors) made `ideo\\u3000sp.jpeg` and `a  b.jpeg` into `ideo sp.jpeg` and `a b.jpeg`, other
    files, where `one_name` (predict's rows) kept them; `one_name` printed a right-to-left override (U+202E) and a
    zero-width space as they are, so `x\\u202egpj.exe` showed on a terminal as `xexe.jpg` and `IM\\u200b01.jpeg` as
    `IM01.jpeg`. Now one rule: every code point but the whitespace that breaks a line prints alike in both. The
    format characters that shape text where they stand (a joiner between Persian letters, in an emoji sequence) are
    the only ones that print as they are (`test_joiners_print_where_they_shape_text_...`)."""
    import sys
    import unicodedata

    from pneumoscan.errors import one_line, one_name

    breaking = set("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
    every = "".join(chr(code) for code in range(sys.maxunicode + 1) if chr(code) not in breaking)
    assert one_line(every) == one_name(every)
    assert one_line("a  b\u3000c\u00a0d.jpeg") == one_name("a  b\u3000c\u00a0d.jpeg") == "a  b\u3000c\u00a0d.jpeg"
    assert one_name("x\u202egpj.exe IM\u200b01\u2066\ufeff.jpeg") == "x\\u202egpj.exe IM\\u200b01\\u2066\\ufeff.jpeg"
    printed = one_name(every)
    assert not [c for c in printed if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")]
    assert {c for c in printed if unicodedata.category(c) == "Cf"} <= set("\u200c\u200d")


def test_joiners_print_where_they_shape_text_and_new_code_points_as_they_are() -> None:
    """Every format character printed escaped: `\u0628\u06cc\u0645\u0627\u0631\u200c\u06cc\u06a9.jpeg`
    (a zero-width non-joiner, ordinary Persian spelling) printed as `...\\u200c...`, so `predict DIR | grep -F` with
    the name found no row, and an emoji's joiner alike; unassigned code points (an emoji newer than Python's Unicode,
    U+1FA77) and private-use ones (WSL's and macOS's stand-ins for ':' and '?') printed as `\\U0001fa77`. They print
    as they are; a joiner anywhere else, which only hides a difference, is escaped, as is any other invisible format
    character (`test_a_joiner_prints_only_where_it_spells_a_word...`)."""
    from pneumoscan.errors import one_line, one_name

    kept = ["\u0628\u06cc\u0645\u0627\u0631\u200c\u06cc\u06a9.jpeg", "\u0915\u094d\u200d\u0937.png",
            "\U0001f468\u200d\U0001f469.png", "\u2764\ufe0f\u200d\U0001f525.png", "\U0001fa77.png", "a\uf03ab.png",
            "\U000f0000.png"]
    for name in kept:
        assert one_name(name) == one_line(name) == name
    escaped = {"IM\u200d01.jpeg": "IM\\u200d01.jpeg", "\u200cx\u0628.png": "\\u200cx\u0628.png",
               "\u0628\u200c": "\u0628\\u200c", "a\u200fb.png": "a\\u200fb.png", "\u061cab": "\\u061cab",
               "s\u00adx\u2060y\u2064\U000e0041\ufff9\u180e": "s\\xadx\\u2060y\\u2064\\U000e0041\\ufff9\\u180e",
               "\u05d0\u202e\u2067\u200b": "\u05d0\\u202e\\u2067\\u200b"}
    for name, printed in escaped.items():
        assert one_name(name) == one_line(name) == printed


def test_a_joiner_prints_only_where_it_spells_a_word_and_a_direction_mark_never() -> None:
    """A zero-width (non-)joiner between any two non-ASCII letters, marks or symbols printed as it is, so
    `IMG\u00fc\\u200c\u00fc.jpeg` (Latin), a Cyrillic, Greek, Hebrew or Chinese name showed as another file's; and a
    left-to-right, right-to-left or Arabic letter mark printed as it is in a name with right-to-left letters, so
    `\u05d0\u05d1\\u200f.jpg` showed as `\u05d0\u05d1.jpg` and `\u05d0_2024\\u200f-01-02.jpg` on a bidi terminal as
    `01-02-2024_\u05d0.jpg`. A joiner is kept only where RFC 5892 and UTS #31 let it spell a word (after a virama,
    a non-joiner between letters of a joining script, a joiner between emoji); a direction mark is always escaped."""
    from pneumoscan.errors import one_line, one_name

    kept = ["\u0915\u094d\u200c\u0937.png", "\u0dc1\u0dca\u200d\u0dbb\u0dd3.png", "\u0645\u06cc\u200c\u062e.png",
            "\u0710\u200c\u0712.png", "\u1820\u200c\u1821.png", "\U0001f44d\U0001f3fd\u200d\u2642.png",
            "\U0001f3f3\ufe0f\u200d\U0001f308.png", "\u0628\u064e\u200c\u062a.png"]
    for name in kept:
        assert one_name(name) == one_line(name) == name
    for hiding in ["IMG\u00fc\u200c\u00fc.jpeg", "\u0434\u200d\u0430.png", "\u03b1\u200c\u03b2.png",
                   "\u05d0\u200d\u05d1.jpeg", "\u5831\u544a\u200c\u66f8.jpeg", "a^\u200d^b.png",
                   "\u00e9\u200d\U0001f525.png", "\U0001f525\u200d\u0628.png", "\u0628\u200c\u00e9.png",
                   "\u05d0\u05d1\u200f.jpg", "\u05d0_2024\u200f-01-02.jpg", "\u200e\u05d0\u05d1.png",
                   "\u0627\u061c\u0628.png", "\u200fgpj\u05d0.exe"]:
        printed = one_name(hiding)
        assert one_line(hiding) == printed
        assert not {"\u200c", "\u200d", "\u200e", "\u200f", "\u061c"} & set(printed), hiding
        unescaped = printed
        for mark in ("\\u200c", "\\u200d", "\\u200e", "\\u200f", "\\u061c"):
            unescaped = unescaped.replace(mark, mark.encode().decode("unicode_escape"))
        assert unescaped == hiding


def test_a_joiner_before_a_virama_or_a_head_shake_arrow_prints_and_one_among_symbols_or_unjoined_letters_does_not(
        ) -> None:
    """Bengali RA, ZWJ, virama, YA (ya-phalaa, as the Unicode Standard encodes it: `\u09b0\\u200d\u09cd\u09af`) and
    Sinhala touching letters were escaped (the joiner comes before the virama, not after), as were Emoji 15.1's head
    shakes (`\U0001f642\\u200d\u2194\ufe0f`: the arrow is a math symbol, Sm); a joiner between symbols below U+2000
    or fullwidth forms (`25\xb0\\u200d\xb0`, `\uff3e\\u200d\u25bd`), or a non-joiner beside Thaana or an Arabic
    presentation form (already-shaped glyphs), printed as it is and hid a difference. A joiner before a virama at a
    name's start raised TypeError (no letter before it)."""
    from pneumoscan.errors import one_line, one_name

    for name in ["\u09b0\u200d\u09cd\u09af\u09be\u09ac.jpg", "\u0d9a\u200d\u0dca\u0dc0.jpg",
                 "\U0001f642\u200d\u2194\ufe0f.jpg", "\U0001f642\u200d\u2195\ufe0f.jpg"]:
        assert one_name(name) == one_line(name) == name
    for name in ["25\xb0\u200d\xb0.jpg", "A\xa9\u200d\xa9.jpg", "(\uff3e\u200d\u25bd\uff3e).jpg",
                 "\u078b\u200c\u078b.jpg", "\ufefb\u200c\ufefb.jpg", "\u200d\u09cdx.jpg"]:
        assert one_name(name) == one_line(name) == name.replace("\u200d", "\\u200d").replace("\u200c", "\\u200c")


def test_unassigned_code_points_a_renderer_draws_as_nothing_print_escaped() -> None:
    """Unassigned code points printed as they are, the Default_Ignorable ones too, which a terminal draws as nothing:
    `IM\\u206501.jpeg` showed as `IM01.jpeg`, another file. Those are escaped; any other unassigned code point (an
    emoji newer than Python's Unicode) and every private-use one still print as they are."""
    import unicodedata

    from pneumoscan.errors import one_line, one_name

    for code in (0x2065, 0xFFF0, 0xFFF8, 0xE0000, 0xE0002, 0xE001F, 0xE0080, 0xE00FF, 0xE01F0, 0xE0FFF):
        assert unicodedata.category(chr(code)) == "Cn"
        name = f"IM{chr(code)}01.jpeg"
        assert one_name(name) == one_line(name) == "IM" + ascii(chr(code))[1:-1] + "01.jpeg"
    for other in ("\u0378", "\U0001fa77", "\U000e1000", "\ue000", "\U0010fffd"):
        assert one_name(f"IM{other}01.jpeg") == f"IM{other}01.jpeg"


def test_a_name_prints_inside_a_message_as_it_does_alone() -> None:
    """Whether a direction mark or joiner printed as it is was judged over the whole text, so an error's line and
    `predict`'s row printed one name differently: `x\\u200fy.jpg` alone, `x\u200fy.jpg` in a message holding a
    Hebrew word. Each character is judged by its neighbours alone, which are the same in the message as in the
    name but at its edges, where a joiner is escaped in both."""
    from pneumoscan.errors import one_line, one_name

    names = ["x\u200fy.jpg", "\u05d0\u200d\u05d1.jpg", "\u200d\u00e9.jpg", "\u0628\u200c", "\u200c\u0628.png",
             "\u0645\u06cc\u200c\u062e.png", "\u0915\u094d\u200d", "\U0001f468\u200d\U0001f469.png",
             "IM\u206501\u200b.jpeg"]
    for name in names:
        for message in ("\u05e9\u05d2\u05d9\u05d0\u05d4: '{}': \u0628", "error: {}: not an image", "{} \u00e9"):
            assert one_line(message.format(name)) == message.format(one_name(name)), (message, name)


def test_a_command_a_message_gives_quotes_in_bash_only_what_breaks_the_line() -> None:
    """A name with a no-break or ideographic space came in $'...' with it escaped (`$'ideo\\u3000sp'`); bash reads
    the character itself in plain quotes. An escaped character came as `\\u202e`, which bash decodes only in a
    UTF-8 locale: under LC_ALL=C the pasted word named another file. It comes as its UTF-8 bytes."""
    import shlex
    import subprocess

    from pneumoscan.errors import shell_word

    assert shell_word("ideo\u3000sp/a\u00a0b") == shlex.quote("ideo\u3000sp/a\u00a0b") == "'ideo\u3000sp/a\u00a0b'"
    name = "a\nb\u2028c\x85d\udcf6'e\u202ef\u0628\u200c\u06cc"
    word = shell_word(name)
    assert word == "$'a\\nb\\xe2\\x80\\xa8c\\xc2\\x85d\\xf6\\'e\\xe2\\x80\\xaef\u0628\u200c\u06cc'"
    for locale in ("C", "C.UTF-8"):
        env = {**os.environ, "LC_ALL": locale}
        echoed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, timeout=30, env=env).stdout
        assert echoed == os.fsencode(name)


@pytest.mark.parametrize("path", ["C:\\R&D\\runs\\r1", "C:\\a^b\\r1", "C:\\100%\\r1", "C:\\a|b", "C:\\x<y>", "C:\\(1)",
                                  "C:\\a,b", "C:\\a;b", "C:\\a`b", "C:\\$env", "C:\\it's", "C:\\a\tb", ""])
def test_a_command_a_message_gives_on_windows_quotes_what_cmd_or_powershell_would_read(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`C:\\R&D\\runs\\r1` came unquoted (list2cmdline quotes only for a space or tab): cmd.exe ran `D\\runs\\r1` as a
    second command."""
    from pneumoscan.errors import shell_word

    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        word, ending = shell_word(path), shell_word(path + "\\my dir\\")
    assert word == f'"{path}"'
    assert ending == f'"{path}\\my dir\\\\"'  # a backslash before the closing quote doubled, as the C runtime reads it
