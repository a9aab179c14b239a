"""Errors raised for user mistakes: the CLI prints them as one line, never a traceback; and `warn`, which every
warning of pneumoscan goes through."""
from __future__ import annotations

import math
import os
import re
import sys
import warnings
import unicodedata
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any, ParamSpec, TypeVar


class PneumoscanError(Exception):
    """Base class for errors that are the user's to fix (bad path, bad file, bad option)."""


class InputError(PneumoscanError):
    """An input file or folder cannot be used; the message names it and says what to do."""


class WriteError(InputError):
    """An output file could not be written (a full disk, a read-only folder); the file that was there is kept whole.
    The CLI adds how to continue a training run that stopped on one."""


class RefusedFilm(InputError):
    """The model's chest X-ray guard refused the film (e.g. a photo, or a dithered print): no prediction was made.
    Not a mistake in the command, so the CLI exits 1 for it, as `predict` does for a film it refuses."""


class NotAnImage(InputError):
    """A readable file that holds no image: a DICOM object without pixel data (a structured report, a DICOMDIR). The
    service answers 415, as for any other file that is not an image."""


class MissingDecoder(InputError):
    """A film this installation may lack the decoder for (a compressed DICOM): the message ends with the pip command
    that installs it, for whoever runs pneumoscan; `for_staff` says to ask IT support instead, for a reader who cannot
    act on pip (the service's answers, shown to doctors on its page)."""

    def __init__(self, message: str, for_staff: str | None = None) -> None:
        super().__init__(message)  # one argument, so a copy made from its text (a worker process's) is made alike
        self.for_staff = message if for_staff is None else for_staff


class ImageTooLarge(InputError):
    """An image has more pixels than the decoder's limit (the service answers 413, like an oversized upload)."""


class DecodeOutOfMemory(InputError):
    """A film, `width` x `height` px (None when not known), whose decoding ran out of the machine's memory: not the
    file's fault, but a film that large may never decode on that machine. Commands stop on it rather than skip the
    film as unreadable; the service answers 503 to retry while other requests hold memory, else 413."""

    def __init__(self, message: str, label: str, width: int | None = None, height: int | None = None) -> None:
        super().__init__(message)
        self.label, self.width, self.height = label, width, height


class ModelFileChanged(InputError):
    """The model file changed since a Predictor (the service's too) read it, so its weights are not those predicting:
    not the input's fault (the service answers 503, not 422 blaming the upload, and logs the file)."""


class ModelFileGone(ModelFileChanged):
    """The model file was removed or cannot be read since a Predictor read it (`reason`: what reading it again
    raised, in words without its path): the model's fault, not the input's, as for a changed one."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DamagedModel(InputError):
    """The model gave no probability (NaN): its weights are damaged, not the input (the service answers 503 and logs
    the model file, not 422 blaming the upload)."""


class UnknownModelError(InputError, KeyError):
    """A model name that is not in the registry; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ModelConfigError(InputError, TypeError):
    """A model option its builder does not take; the message lists the ones it does."""


class ModelOptionError(InputError, TypeError):
    """A model option given a value of a kind its builder's signature does not take: "model 'cnn': `problem`", the
    problem naming the option, the value and what it takes."""

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(f"model {model!r}: {problem}")
        self.problem = problem


class ModelOptionValueError(ModelOptionError, ValueError):
    """A model option given a value its builder refuses (`dropout=1.5`): "model 'cnn': `problem`", the problem naming
    the option and the builder's own reason."""


class ModelBuildError(ModelOptionValueError):
    """Options without a default given, with which a model does not build (`width=-3`): "model 'req' `problem`",
    the problem naming them and the builder's reason; whether the builder refused them or has a bug of its own
    cannot be told apart."""

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(model, problem)
        self.args = (f"model {model!r} {problem}",)


class ArgumentTypeError(InputError, TypeError):
    """An argument of a Python API function of a kind it does not take; the message names the function, the
    argument, what it got and what it takes."""


def first_few(items: list[str], n: int = 3) -> str:
    """The first `n` items joined by '; ', and ' ...' when there are more: examples in a one-line message."""
    return "; ".join(items[:n]) + (" ..." if len(items) > n else "")


def first_names(names: list[str], shown: int, joiner: str = ", ") -> str:
    """The first `shown` of `names` joined by `joiner`, then ` (and N more)` when there are more."""
    rest = len(names) - shown
    return joiner.join(names[:shown]) + (f" (and {rest} more)" if rest > 0 else "")


# Whom the messages made now are for: "cli" (the command line, `cli_words`), "python" (a caller of the Python API,
# `speaks_python`) or None (the code's own callers, as tests: the command line's words).
_WORDS: ContextVar[str | None] = ContextVar("pneumoscan_words", default=None)
_BARE = object()  # `option` without a value
_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def _words(kind: str) -> Iterator[None]:
    token = _WORDS.set(kind)
    try:
        yield
    finally:
        _WORDS.reset(token)


def cli_words() -> AbstractContextManager[None]:
    """Within it, messages name options as the command line takes them (`--resume`), even where the code is that of
    the Python API (a `Predictor`): the CLI's `main` runs in it."""
    return _words("cli")


def speaks_python(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """`function`, whose messages and warnings name options as the Python API takes them (`resume=True`,
    `epochs=0`), not as the command line (`--resume`, `--epochs 0`), unless it runs for the command line
    (`cli_words`): for the functions of the Python API."""
    @functools.wraps(function)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if _WORDS.get() == "cli":
            return function(*args, **kwargs)
        with _words("python"):
            return function(*args, **kwargs)

    return call


def in_python() -> bool:
    """Whether a message made now is for a caller of the Python API (`speaks_python`)."""
    return _WORDS.get() == "python"


def counted(n: int, one: str, many: str | None = None) -> str:
    """`n` things, in the singular for one: '1 image', '3 images' (`many`: the plural when not `one` + 's')."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def decimals(value: float, digits: int) -> str:
    """`value` with `digits` decimals, or 3 significant digits when those would show a value that is not zero as 0
    (2.42e-05), or more decimals when they would show a rate below 1 as 1 (an AUC of 0.99996 is not perfect); the
    rule of every printed figure (`report.html.fmt`, `evaluate`, `set-threshold`). NaN prints as 'nan'."""
    if math.isfinite(value) and 0 < abs(value) < 0.5 * 10.0 ** -digits:
        return f"{value:.3g}"
    places = digits
    while 0.5 < value < 1 and float(f"{value:.{places}f}") == 1.0 and places < 17:
        places += 1
    return f"{value:.{places}f}"


def shell_word(path: str | os.PathLike[str]) -> str:
    """`path` as a command in a message gives it, to be pasted into a shell: quoted when a shell would not read it
    as one word ('my runs/r1' -> "'my runs/r1'"), as it is otherwise; one with a character `_unshown` (a
    newline, a right-to-left override) in bash's $'...' quoting with that character escaped, so the message stays
    one line and in order (any other
    character, a no-break space too, as it is). On Windows in double quotes, and only when needed (POSIX quotes
    would wrap every path, for its backslashes, in single quotes, which cmd.exe keeps as part of the name): for an
    empty word or one holding a space, a tab or a character cmd.exe or PowerShell would read (`R&D`, `a^b`, `100%`).
    cmd.exe still expands an %VAR% between double quotes: no quoting can stop that."""
    import shlex

    text = os.fspath(path)
    if os.name == "nt":  # Windows forbids control characters and double quotes in names: no escapes needed
        if text and not any(c in _WINDOWS_SPECIAL for c in text):
            return text
        return '"' + text + "\\" * (len(text) - len(text.rstrip("\\"))) + '"'  # \" would be a quote
    hidden = _unshown(text)
    if not any(hidden):
        return shlex.quote(text)
    return "$'" + "".join(_shell_escaped(c, escape) for c, escape in zip(text, hidden)) + "'"


_WINDOWS_SPECIAL = " \t&|<>^%(),;`$'"  # cmd.exe's and PowerShell's operators, separators and variables


def _shell_escaped(char: str, escape: bool) -> str:
    """A character of a name in bash's $'...' quoting, `escape`d when `_unshown`: a byte that is not UTF-8
    (`os.fsdecode`'s lone surrogate) as that byte, `\\xf6`, any other character as its UTF-8 bytes (`\\xe2\\x80\\xae`),
    which bash reads in any locale (its `\\u202e` gives the character only in a UTF-8 one: under LC_ALL=C another
    name)."""
    code = ord(char)
    if char in "\\'":
        return "\\" + char
    if not escape:
        return char
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return _WHITESPACE.get(char) or "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))


def option(name: str, value: Any = _BARE) -> str:
    """Option `name` (its Python name: 'use_given_val') as a message names it, with `value` when given: on the
    command line '--use-given-val' or '--epochs 0'; in the Python API '`use_given_val`' or 'epochs=0'."""
    if in_python():
        return f"`{name}`" if value is _BARE else f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
    flag = "--" + name.replace("_", "-")
    return flag if value is _BARE else f"{flag} {value}"


def switch(name: str) -> str:
    """The on/off option `name` switched on, as a message names it: '--resume' on the command line, 'resume=True'
    in the Python API."""
    return option(name, True) if in_python() else option(name)


def words(cli: str, python: str) -> str:
    """`cli` in a message for the command line, `python` for a caller of the Python API: for a phrase that
    `option` cannot make ('pass --model RUN_DIR')."""
    return python if in_python() else cli


def check_at_least_one(value: int, name: str) -> None:
    """InputError naming option `name` (its Python name, e.g. 'n_boot') unless the count `value` is at least 1."""
    if value < 1:
        raise InputError(f"{option(name, value)}: must be at least 1")


def check_seed(value: int, name: str = "seed") -> None:
    """InputError naming option `name` unless `value` can seed numpy's generators (which refuse a negative one, and
    only after the work before the draw)."""
    if value < 0:
        raise InputError(f"{option(name, value)}: must be 0 or more")


def raise_if_interrupted(err: ImportError) -> None:
    """Raise the Ctrl+C that `err` stands for, if it does: a C extension's initialisation (pybind11's, ONNX Runtime's
    and onnx's) reports a KeyboardInterrupt that arrives during it as ImportError('initialization failed'), which an
    optional import's `except ImportError` would take for the package missing. Call it first in such a handler."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            raise cause
        cause = cause.__cause__ or cause.__context__


class MissingImagesWarning(UserWarning):
    """Images left out of an evaluation, or of a report's pictures or figures: not found, or unreadable."""


class PluginWarning(UserWarning):
    """A model plugin (entry point group `pneumoscan.models`) that failed to load: its models are left out."""


class PluginVersionWarning(UserWarning):
    """A plugin's model whose weights load, but from another version of its package than it was trained with."""


MAX_REASON: int = 120
"""Characters of a quoted reason (a decoder's or the OS's) kept in a one-line message."""


def one_line(text: str, limit: int | None = None) -> str:
    """Free text (an OS's or a decoder's reason) on one line: each run of whitespace that breaks the line or the
    layout (a newline, a tab, U+2028...) becomes a space, and every character `_unshown` is escaped as Python writes
    it (a zero-width space as `\\u200b`, an ESC as `\\x1b`); any other character, a run of spaces or an ideographic
    space too, as `one_name` prints it. A `limit` cut ('...') never splits an escape. A file name goes through
    `one_name`, which escapes a newline (`\\n`) rather than making it a space that names another file."""
    units = _LINE_BREAKING_SPACE.sub(" ", str(text)).strip(" ")
    pieces = [_escaped(c) if hidden else c for c, hidden in zip(units, _unshown(units))]
    if limit is not None and sum(map(len, pieces)) > limit:
        kept, room = [], limit - 3
        for piece in pieces:
            room -= len(piece)
            if room < 0:
                break
            kept.append(piece)
        return "".join(kept) + "..."
    return "".join(pieces)


# the whitespace str.split() splits on, but for the spaces (category Zs), which are printed as they are
_LINE_BREAKING_SPACE = re.compile(r" *[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029][ \t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]*")


def one_name(name: str) -> str:
    """A file name on one line, as the user can copy and grep it, and unable to hide or reorder the text around it:
    every character `_unshown` is escaped as Python writes it in a string (a newline as `\\n`, a tab as `\\t`, an
    ESC as `\\x1b`, a byte that is not UTF-8 as `\\udcf6`, a right-to-left override as `\\u202e`, a zero-width
    space as `\\u200b`); every other character, any space (no-break, ideographic) too, is kept. Not always distinct: a
    name with a backslash and an n prints as one with a newline does (backslashes are left as they are: Windows
    paths)."""
    text = str(name)
    return "".join(_WHITESPACE.get(c) or _escaped(c) if hidden else c for c, hidden in zip(text, _unshown(text)))


def _unshown(text: str) -> list[bool]:
    """Whether each character of `text` is escaped when a message prints it (`one_name`, `one_line`, `shell_word`):
    what breaks the line (control characters, Cc; U+2028, U+2029), a lone surrogate (`os.fsdecode`'s byte that is
    not UTF-8), the format characters (Cf) that reorder text on a terminal (the bidi embeddings, overrides,
    isolates and marks, U+202A-E, U+2066-9, U+200E, U+200F, U+061C) or hide a difference (a zero-width space,
    U+2060-4, U+FEFF, tags, a soft hyphen...), and the unassigned code points a renderer draws as nothing
    (`_IGNORABLE_UNASSIGNED`). A zero-width non-joiner or joiner (U+200C, U+200D) is kept only where it spells a
    word, judged by its two neighbours alone (`_joins`): so a name prints alike alone and inside a message, but for
    a joiner at its very start or end (not after a virama), which `one_name` escapes (nothing on that side within
    the name) and a message judges by the character before or after the name there (a quote, a space: escaped
    too). Other unassigned and private-use code points print as they are (an emoji newer than Python's Unicode;
    WSL's and macOS's stand-ins for ':' and '?')."""
    if text.isascii() and text.isprintable():  # most names: nothing to judge (printable ASCII is never escaped)
        return [False] * len(text)
    return [_hides(text[i - 1 : i], char, text[i + 1 : i + 2]) for i, char in enumerate(text)]


def _hides(before: str, char: str, after: str) -> bool:
    """Whether `char` is escaped (`_unshown`) between `before` and `after` (each one character, or '' at an edge)."""
    if char in "\u200c\u200d":
        return not _joins(before, char, after)
    category = unicodedata.category(char)
    if category == "Cn":
        return any(low <= ord(char) <= high for low, high in _IGNORABLE_UNASSIGNED)
    return category in ("Cc", "Cs", "Cf") or char in "\u2028\u2029"


def _joins(before: str, joiner: str, after: str) -> bool:
    """Whether a zero-width non-joiner or joiner between `before` and `after` spells a word, in the contexts of
    RFC 5892's CONTEXTJ rules and UTS #31 section 2.3: either one right after a virama (Indic conjuncts); a joiner
    between a letter and a virama (Bengali ya-phalaa `\u09b0\\u200d\u09cd\u09af`, Sinhala touching letters); a
    non-joiner between two letters or marks of a cursive joining script (Persian `می\\u200cخ`); a joiner between
    emoji (after a symbol, a skin tone or U+FE0F, before a symbol). Anywhere else it only hides a difference:
    `IMGü\\u200cü.jpeg` shows as `IMGüü.jpeg`, another file."""
    if before and unicodedata.combining(before) == 9:  # canonical combining class Virama: a half form, as RFC 5892
        return True
    if not before or not after:
        return False
    if joiner == "\u200d" and unicodedata.combining(after) == 9 and unicodedata.category(before)[0] == "L":
        return True
    if joiner == "\u200c":
        return all(_cursive(c) for c in (before, after))
    return (before == "\ufe0f" or _emoji_symbol(before)) and _emoji_symbol(after)


# scripts whose letters join: Arabic, Syriac, Mandaic, N'Ko, Mongolian, Phags-pa, Manichaean, Psalter Pahlavi,
# Hanifi Rohingya, Sogdian, Old Uyghur, Chorasmian, Adlam (the blocks of the letters with Joining_Type D, L or R in
# Unicode's ArabicShaping.txt; not Thaana or Samaritan, nor the presentation forms, whose glyphs are already shaped)
_CURSIVE = ((0x0600, 0x077F), (0x07C0, 0x07FF), (0x0840, 0x08FF), (0x1800, 0x18AF), (0xA840, 0xA87F),
            (0x10AC0, 0x10AFF), (0x10B80, 0x10BAF), (0x10D00, 0x10D3F), (0x10F30, 0x10FDF), (0x11660, 0x1167F),
            (0x1E900, 0x1E95F))


def _cursive(char: str) -> bool:
    """Whether `char` is a letter or mark of a script whose letters join (`_CURSIVE`)."""
    code = ord(char)
    return unicodedata.category(char)[0] in "LM" and any(low <= code <= high for low, high in _CURSIVE)


def _emoji_symbol(char: str) -> bool:
    """Whether `char` is a symbol (So, Sk: an emoji, a skin tone U+1F3FB-F; the arrows of Emoji 15.1's head shakes,
    Sm) that an emoji joiner can join; not one below U+2000 (`^`, `©`, `°`) or a fullwidth form (`＾`), which no emoji
    sequence joins and where a joiner only hides a difference."""
    code = ord(char)
    if code < 0x2000 or 0xFF00 <= code <= 0xFFEF:
        return False
    return unicodedata.category(char) in ("So", "Sk") or char in _EMOJI_MATH


_EMOJI_MATH = "\u2194\u2934\u2935"  # emoji of category Sm: left right arrow, the two curving arrows


# the unassigned code points that are Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt), which a
# renderer draws as nothing: `IM\\u206501.jpeg` would show as `IM01.jpeg`; only the Cn ones in them are escaped here
_IGNORABLE_UNASSIGNED = ((0x2065, 0x2065), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))


_WHITESPACE = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    """A character `_unshown`, as Python writes it in a string."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an error's text, after torch's 'Error(s) in loading state_dict for X:' heading,
    cut to `limit` characters ('...' marks a cut): for one-line messages that quote an error from torch or a
    plugin's code."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = next((line for line in lines if not line.startswith("Error(s) in loading")), lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def names_file(err: OSError, path: os.PathLike[str] | str) -> bool:
    """Whether the OSError `err` is about the file `path` (its `filename`, resolved as `path` is)."""
    from pathlib import Path

    try:
        return err.filename is not None and Path(os.fsdecode(err.filename)).resolve() == Path(path).resolve()
    except (TypeError, ValueError, OSError):  # a filename that is no path (an int file descriptor)
        return False


# torch's texts for GPU allocations that fail outside its caching allocator (whose failure is OutOfMemoryError):
# C10_CUDA_CHECK on cudaErrorMemoryAllocation (a torch.AcceleratorError), TORCH_CUDABLAS_CHECK on a cuBLAS handle or
# workspace (each new thread's first matrix product makes a handle), AT_CUDNN_CHECK on a cuDNN one
GPU_ALLOCATION_FAILED = ("CUDA error: out of memory", "CUDA error: CUBLAS_STATUS_ALLOC_FAILED",
                         "cuDNN error: CUDNN_STATUS_ALLOC_FAILED")


def gpu_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is torch's report that the GPU had no memory left: an OutOfMemoryError, or a RuntimeError with
    one of the texts of GPU_ALLOCATION_FAILED (never so when torch was not imported)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(err, getattr(torch, "OutOfMemoryError", ())) or (
        isinstance(err, RuntimeError) and any(text in str(err) for text in GPU_ALLOCATION_FAILED))


# torch's text for a CPU tensor it could not allocate (a RuntimeError, not a MemoryError): c10's alloc_cpu
CPU_ALLOCATION_FAILED = "DefaultCPUAllocator: can't allocate memory"


def host_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is the host out of memory: Python's MemoryError (numpy's allocations too), or torch's CPU
    allocator failing (a RuntimeError with CPU_ALLOCATION_FAILED; never so when torch was not imported)."""
    return isinstance(err, MemoryError) or (
        "torch" in sys.modules and isinstance(err, RuntimeError) and CPU_ALLOCATION_FAILED in str(err))


def memory_reason(err: BaseException) -> str:
    """A `host_out_of_memory` error's words: from "can't allocate memory" on for torch's (its '[enforce fail at
    alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: ' says nothing to a user, and would crowd out the amount)."""
    text = str(err)
    return text[text.find(CPU_ALLOCATION_FAILED) + len("DefaultCPUAllocator: "):] if CPU_ALLOCATION_FAILED in text \
        else text


def out_of_memory_text(err: BaseException, ways: list[str]) -> str:
    """One line for work the GPU ran out of memory in: torch's reason, then `ways` out ('a, b, or c')."""
    choices = ways[-1] if len(ways) < 2 else f"{', '.join(ways[:-1])}, or {ways[-1]}"
    return f"the GPU ran out of memory ({first_line(err, 120)}); {choices}"


_PACKAGE = os.path.dirname(__file__) + os.sep  # as the code objects of its modules name their files


def warn(message: str | Warning, category: type[Warning] | None = None) -> None:
    """`warnings.warn(message, category)` attributed to the first caller outside pneumoscan: a notebook shows the
    user's cell and line, not the package's (what Python 3.12's skip_file_prefixes does). The category is the
    message's class when `message` is a Warning, else `category` (default UserWarning)."""
    warnings.warn(message, category, stacklevel=_outside_stacklevel(sys._getframe(1)))


def _outside_stacklevel(frame: FrameType) -> int:
    """The stacklevel, counted from a function that `frame` (pneumoscan's) called, of the first frame outside the
    package and the import machinery (which a lazy import puts between pneumoscan's frames); the outermost frame
    when there is none. Counted as warnings.warn counts: without importlib's bootstrap frames."""
    level = 2
    while _ours(frame.f_code.co_filename):
        caller = _next_counted(frame)
        if caller is None:
            break
        frame, level = caller, level + 1
    return level


def _ours(filename: str) -> bool:
    """Whether a frame of `filename` is pneumoscan's or importlib's, which a warning is not attributed to."""
    return filename.startswith(_PACKAGE) or _importlib(filename)


def _importlib(filename: str) -> bool:
    """Whether `filename` is importlib's: importlib/__init__.py and its frozen bootstrap modules."""
    return f"{os.sep}importlib{os.sep}" in filename or filename.startswith("<frozen importlib.")


def _next_counted(frame: FrameType) -> FrameType | None:
    """The frame below `frame` that warnings.warn counts: it passes over importlib's bootstrap frames."""
    caller = frame.f_back
    while caller is not None and "importlib" in caller.f_code.co_filename and \
            "_bootstrap" in caller.f_code.co_filename:
        caller = caller.f_back
    return caller


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a job scheduler's stop) during a command that takes it as Ctrl+C (`raise_terminated`)."""


def interruption(err: KeyboardInterrupt) -> tuple[str, int]:
    """How an interrupted command says what stopped it, and its exit code: ' by SIGTERM' and 143, or '' and 130."""
    return (" by SIGTERM", 143) if isinstance(err, Terminated) else ("", 130)


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: stop the command as Ctrl+C does, as `Terminated`."""
    raise Terminated
