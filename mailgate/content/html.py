"""HTML bodies: sanitising for display and converting to text.

Sanitising uses nh3 (MIT, Rust's ammonia) because the HTML comes from
strangers and is shown to agents; text conversion uses inscriptis
(Apache-2.0), which keeps table and list layout readable.
"""

from __future__ import annotations

import html as html_entities
import re

import lxml.etree
import lxml.html
import nh3
from inscriptis import Inscriptis, get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# Inline images point at other MIME parts with cid: URLs (RFC 2392).
_URL_SCHEMES = set(nh3.ALLOWED_URL_SCHEMES) | {"cid"}

# Above this size we fall back to a crude tag stripper: lxml and inscriptis
# are fast, but not bounded enough for a multi-megabyte newsletter.
MAX_HTML_FOR_LAYOUT = 2 * 1024 * 1024

_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False, display_images=False)
_TAG = re.compile(r"<[^>]*>")
_DROP_BLOCKS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAGS = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


# Opening tags that can stay open for long: everything but void elements and
# the ones parsers close implicitly. Their surplus over closing tags bounds
# how deep the document nests.
_NOT_NESTING = (
    r"(?!(?:br|img|meta|hr|input|link|wbr|col|area|base|source|track|embed|param|p|li|td|tr"
    r"|th|option|dt|dd)\b)[a-zA-Z]"
)
_NESTING_OPEN = re.compile("<" + _NOT_NESTING, re.IGNORECASE)
_NESTING_CLOSE = re.compile("</" + _NOT_NESTING, re.IGNORECASE)
# nh3 (html5ever) takes quadratic time in nesting depth: 400 KB of unclosed
# <div>s take seconds. Real mail nests a few dozen levels.
MAX_UNCLOSED_TAGS = 1000


def _flatten_deep(html: str, defects: list[str] | None) -> str:
    """``html``, or its re-serialisation by libxml2 (which stops at 256 levels) if too deep."""
    unclosed = len(_NESTING_OPEN.findall(html)) - len(_NESTING_CLOSE.findall(html))
    if unclosed <= MAX_UNCLOSED_TAGS:
        return html
    if defects is not None:
        defects.append("HTML nested too deeply, content below 255 levels dropped")
    try:
        document = lxml.html.document_fromstring(html)
        return str(lxml.etree.tostring(document, encoding="unicode", method="html"))
    except Exception:  # lxml refuses empty or binary documents
        return html_entities.escape(_crude_text(html))


def sanitise(html: str, defects: list[str] | None = None) -> str:
    """HTML safe to show in a browser: no scripts, handlers, forms or remote frames."""
    try:
        return nh3.clean(_flatten_deep(html, defects), url_schemes=_URL_SCHEMES)
    except Exception:  # nh3 raises on its own limits; never show raw HTML
        return html_entities.escape(html_to_text(html))


def _crude_text(html: str) -> str:
    """Text by regular expressions, for HTML too large or too broken for a parser."""
    text = _DROP_BLOCKS.sub("", html)
    text = _BLOCK_TAGS.sub("\n", text)
    text = _TAG.sub("", text)
    return html_entities.unescape(text)


def _tidy(text: str) -> str:
    """``text`` with no-break spaces as spaces, no trailing blanks and blank-line runs collapsed."""
    lines = [line.rstrip() for line in text.replace("\xa0", " ").splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body, with blank-line runs collapsed."""
    if not html.strip():
        return ""
    text: str
    if len(html) > MAX_HTML_FOR_LAYOUT:
        text = _crude_text(html)
    else:
        try:
            text = get_text(html, _CONFIG)
        except Exception:  # lxml rejects some documents outright
            text = _crude_text(html)
    return _tidy(text)


def document_to_text(document: lxml.html.HtmlElement) -> str:
    """Readable plain text from an HTML document already parsed, laid out as ``html_to_text`` does."""
    try:
        return _tidy(Inscriptis(document, _CONFIG).get_text())
    except Exception:  # inscriptis has failed on odd trees; the text is still there
        return _tidy(document.text_content())
