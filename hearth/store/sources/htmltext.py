"""Plain text from an HTML page, enough to store a license page as a readable text layer.

When the page has an ``<article>`` only its text is kept (the rest of a web page is navigation,
scripts and footers), starting at its first ``<h1>`` (what comes before is breadcrumbs and
banners); block elements become line breaks and list items get a dash.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "nav", "button", "head"})
_BLOCK = frozenset(
    {"p", "div", "section", "br", "tr", "table", "ul", "ol", "blockquote", "pre", "hr"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "article", "header", "footer", "dd", "dt"}
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.all_text: list[str] = []
        self.article_text: list[str] = []
        self._skip_depth = 0
        self._article_depth = 0
        self.article_title_at: int | None = None  # index in article_text of the first <h1>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "article":
            self._article_depth += 1
        if tag == "h1" and self._article_depth and self.article_title_at is None:
            self.article_title_at = len(self.article_text)
        if tag == "li":
            self._emit("\n- ")
        elif tag in _BLOCK:
            self._emit("\n\n" if tag.startswith("h") or tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "article":
            self._article_depth = max(0, self._article_depth - 1)
        if tag in _BLOCK:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        self._emit(re.sub(r"\s+", " ", data))

    def _emit(self, text: str) -> None:
        if self._skip_depth:
            return
        self.all_text.append(text)
        if self._article_depth:
            self.article_text.append(text)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    article = parser.article_text[parser.article_title_at or 0 :]
    raw = "".join(article or parser.all_text)
    lines = (line.strip() for line in raw.splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
