"""Self-contained HTML: inline CSS, figures as base64 PNG data URIs, every text escaped, no network."""
from __future__ import annotations

import base64
import html
import math
from typing import Iterable, Sequence

from pneumoscan.errors import decimals

CSS = """
:root { --ink: #1b1f24; --muted: #5a6270; --rule: #d0d5dc; --accent: #0072B2; --hl: #fff4d6; --hl-edge: #E69F00; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0; background: #f4f6f8; }
header { background: #ffffff; border-bottom: 3px solid var(--accent); padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 32px; background: #ffffff; border-bottom: 1px solid var(--rule); font-size: 14px;
      display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 24px 40px; }
section { background: #ffffff; border: 1px solid var(--rule); border-radius: 6px; padding: 8px 24px 18px; margin: 18px 0; }
h2 { font-size: 20px; border-bottom: 1px solid var(--rule); padding-bottom: 6px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--rule); padding: 4px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef1f4; }
tr.highlight td { background: var(--hl); font-weight: 600; }
tr.highlight td:first-child { border-left: 4px solid var(--hl-edge); }
table.kv td:first-child { color: var(--muted); }
table.kv td { text-align: left; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 13px; }
.grid { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.grid > * { flex: 1 1 420px; min-width: 0; }
pre { background: #f7f8fa; border: 1px solid var(--rule); padding: 8px 12px; font-size: 13px; overflow-x: auto; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 12px; }
"""


def esc(value: object) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A number with `digits` decimals ('n/a' for NaN/None), or 3 significant digits when those decimals would show a
    value that is not zero as 0 (a late epoch's learning rate, 2.42e-05), or more decimals when they would show a
    rate below 1 as 1 (recall 0.9995: not perfect); other values as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return decimals(value, digits) if math.isfinite(value) else "n/a"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, alt: str, caption: str = "") -> str:
    """An <figure> with the PNG embedded."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, highlight: Iterable[int] = (),
          css_class: str = "", digits: int | Sequence[int] = 3) -> str:
    """An HTML table; numbers formatted with `fmt` (`digits` for all or per column), `highlight` rows emphasised."""
    marked = set(highlight)
    places = [digits] * len(headers) if isinstance(digits, int) else list(digits)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="highlight"' if i in marked else ""
        cells = "".join(
            f'<td class="num">{esc(fmt(cell, d))}</td>' if _is_number(cell) else f"<td>{esc(fmt(cell, d))}</td>"
            for cell, d in zip(row, places + [3] * (len(row) - len(places)))
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    klass = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column table of labels and values."""
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def paragraph(text: str, note: bool = False) -> str:
    return f'<p class="note">{esc(text)}</p>' if note else f"<p>{esc(text)}</p>"


def section(section_id: str, title: str, body: str) -> str:
    """A report section: <section id=...> with its <h2>."""
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], footer: str = "") -> str:
    """A complete HTML document from (id, title, body) sections, with an in-page table of contents."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(stitle)}</a>' for sid, stitle, _ in sections)
    body = "".join(section(sid, stitle, content) for sid, stitle, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main><footer>{esc(footer)}</footer></body></html>\n"
    )
