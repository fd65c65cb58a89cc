"""Every output format escapes what it prints. Names are safe by construction (bench.cards
SAFE_NAME); descriptions, file names and notes come from users and are text, never markup."""

from __future__ import annotations

import re

import pandas as pd

_LATEX = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}",
    "±": r"$\pm$",
    "ε": r"$\epsilon$",
    "Δ": r"$\Delta$",
    "\n": " ",
    "\r": " ",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX))
_MARKDOWN_RE = re.compile(r"([\\`*_\[\]<>|#!])")
CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def latex_text(value) -> str:
    """Text in a LaTeX document: every special character literal, one line."""
    return _LATEX_RE.sub(lambda m: _LATEX[m.group()], str(value))


def markdown_text(value) -> str:
    """Text in Markdown (a paragraph or a table cell): one line, its markup characters and HTML
    literal (GitHub renders inline HTML)."""
    one_line = " ".join(str(value).split())
    return _MARKDOWN_RE.sub(r"\\\1", one_line.replace("&", "&amp;"))


def markdown_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A table's text cells with '|' escaped (tabulate's github format leaves it to split the row)."""
    return df.map(lambda v: v.replace("|", r"\|") if isinstance(v, str) else v)


def code_block(text: str, language: str = "") -> list[str]:
    """A fenced code block whose fence is longer than any backtick run inside (text is shown
    verbatim there, markup included, and cannot close the block)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def csv_cell(value):
    """A string a spreadsheet would run as a formula starts with a quote instead (OWASP)."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA):
        return "'" + value
    return value


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    text = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    if not text:
        return df
    return df.assign(**{c: df[c].map(csv_cell) for c in text})
