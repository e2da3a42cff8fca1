"""HTML replies: the quoted history cut off at its container, before any text exists.

Mail clients wrap the message they answer in a container of their own
(Gmail's ``div.gmail_quote``, Apple Mail's and Thunderbird's
``blockquote type=cite``, Outlook's reply header block, Yahoo's
``yahoo_quoted``). In HTML that boundary is exact; once the HTML is text it
is a guess. So the reply of an HTML-only body is everything before the first
such container, and the text trimmer only handles what the markup does not
mark (Yandex and Mail.ru quote in a plain ``blockquote`` under a header line,
which the text trimmer recognises by its shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import lxml.etree
import lxml.html

from mailgate.content.html import MAX_HTML_FOR_LAYOUT
from mailgate.content.reply import is_quote_header_line
from mailgate.content.reply_patterns import EMAIL, LABELLED_FIELD

# Cheap test before parsing: one of these must occur for a container to exist.
_MARKERS = (
    "gmail_quote",
    "cite",
    "divrplyfwdmsg",
    "appendonsend",
    "stopspelling",
    "yahoo_quoted",
    "outlookmessageheader",
    "border-top",
    "replyheader",
    "blockquote",
)

# Elements that end a line of text when HTML becomes text.
_BLOCKS = frozenset(
    {
        *("p", "div", "blockquote", "table", "tbody", "tr", "td", "th", "ul", "ol", "li", "hr", "pre"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header"),
    }
)


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def _any(*conditions: str) -> lxml.etree.XPath:
    return lxml.etree.XPath("//*[" + " or ".join(conditions) + "]")


# Containers that enclose the quoted message: removed whole, so that text the
# sender wrote below them (a bottom-posted or interleaved answer) stays.
_ENCLOSING = _any(
    # Gmail: div.gmail_quote holds the "On ... wrote:" line and the quote. A
    # lone blockquote.gmail_quote is a passage the sender quoted on purpose.
    f"(self::div and {_has_class('gmail_quote')})",
    _has_class("gmail_quote_container"),
    # Apple Mail and Thunderbird quote with <blockquote type="cite">;
    # Thunderbird's "On ... wrote:" line sits in div.moz-cite-prefix above it.
    "(self::blockquote and translate(@type, 'CITE', 'cite') = 'cite')",
    _has_class("moz-cite-prefix"),
    # Yahoo Mail.
    _has_class("yahoo_quoted"),
    "starts-with(@id, 'yahoo_quoted')",
)

# Markers above a quoted message that is not enclosed: the history is all
# that follows them.
_LEADING = _any(
    # Outlook (desktop and Outlook.com): the From/Sent/To block of the
    # message answered, and the marker Outlook puts right above it.
    "@id = 'divRplyFwdMsg'",
    "@id = 'appendonsend'",
    _has_class("OutlookMessageHeader"),
    # Hotmail (older Outlook.com) separates the history with <hr id=stopSpelling>.
    "@id = 'stopSpelling'",
    # Outlook 2010 and later, Windows Mail: a div with a thin top border
    # holding the answered message's header (checked by _is_header_block).
    "(self::div and contains(translate(@style, 'BORDE-TP ', 'borde-tp'), 'border-top'))",
)
# "From: ... Sent: ..." as one run of text: two labels, one of them first.
_LABEL = re.compile(r"(?:^|\s)[^\W\d][\w-]{1,20}\s?[:\uff1a]\s")
HEADER_BLOCK_CHARS = 600


def _is_header_block(element: lxml.html.HtmlElement) -> bool:
    """Whether a bordered div starts with header fields and names an address, as Outlook's does."""
    if element.get("id") or element.get("class"):
        return True
    # Pieces joined with spaces: a <br> between two fields has no text of its own.
    text = " ".join(" ".join(element.itertext()).split())[:HEADER_BLOCK_CHARS]
    return bool(LABELLED_FIELD.match(text) and EMAIL.search(text) and len(_LABEL.findall(text)) >= 2)


def _elements(found: object) -> list[lxml.html.HtmlElement]:
    if not isinstance(found, list):
        return []
    return [element for element in found if isinstance(element, lxml.html.HtmlElement)]


def _remove(element: lxml.html.HtmlElement) -> None:
    """Remove ``element`` but keep the text that follows it."""
    parent = element.getparent()
    if parent is not None:
        element.drop_tree()


def _cut_from(element: lxml.html.HtmlElement) -> None:
    """Remove ``element`` and everything after it in document order."""
    node: lxml.html.HtmlElement | None = element
    while node is not None:
        parent = node.getparent()
        if parent is None:
            break
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        if node is element:
            # Keep nothing of the container, not even the text after it.
            node.tail = None
            parent.remove(node)
        node = parent


def _trailing_line(parent: lxml.html.HtmlElement, stop: int) -> tuple[str, list[Callable[[], None]]]:
    """The last line of text in ``parent`` before its child number ``stop``, and how to delete it.

    Yandex puts the "<date>, <name> <address>:" line at the end of the
    paragraph above the quote, Mail.ru as loose text between ``<br>``s, others
    in a ``div`` of its own; all three are the line just above the quote.
    """
    pieces: list[str] = []
    removers: list[Callable[[], None]] = []

    def forget_tail(child: lxml.html.HtmlElement) -> Callable[[], None]:
        def forget() -> None:
            child.tail = None

        return forget

    for child in reversed(list(parent)[:stop]):
        if (child.tail and child.tail.strip()) or pieces:
            pieces.append(child.tail or "")
            removers.append(forget_tail(child))
        blank = not "".join(pieces).strip()
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag == "br" or tag in _BLOCKS:
            if not blank:
                break
            if tag == "br":
                continue
            # The line above is the last line inside this block.
            return _trailing_line(child, len(child))
        if isinstance(child, lxml.html.HtmlElement):
            pieces.append(child.text_content())
            removers.append(child.drop_tree)
    else:
        pieces.append(parent.text or "")

        def forget_text() -> None:
            parent.text = None

        removers.append(forget_text)
    return " ".join("".join(reversed(pieces)).split()), removers


def _cut_headed_blockquotes(document: lxml.html.HtmlElement) -> bool:
    """Remove each plain blockquote that a quote header line introduces, with that line.

    Yandex, Mail.ru and many smaller webmails quote in a bare ``<blockquote>``
    under "<date>, <name> <address>:". A blockquote without such a line is a
    passage the sender quoted on purpose and stays. Text after the quote (an
    answer below it) stays too.
    """
    cut = False
    for quote in list(document.iter("blockquote")):
        parent = quote.getparent()
        if parent is None or quote.getroottree().getroot() is not document:
            continue
        header, removers = _trailing_line(parent, parent.index(quote))
        if header and is_quote_header_line(header):
            for remove in removers:
                remove()
            quote.drop_tree()
            cut = True
    return cut


def cut_quoted_html(html: str) -> lxml.html.HtmlElement | None:
    """The document of ``html`` without its quoted history, or None when nothing marks one.

    The document is handed on as a tree: serialising it and parsing it again
    for the text would double the cost of every HTML reply.
    """
    if len(html) > MAX_HTML_FOR_LAYOUT:
        return None
    lowered = html.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return None
    try:
        document = lxml.html.document_fromstring(html)
    except Exception:  # lxml refuses empty or binary documents
        return None
    enclosing = _elements(_ENCLOSING(document))
    leading = [element for element in _elements(_LEADING(document)) if _is_header_block(element)]
    if leading:
        _cut_from(leading[0])
    for element in enclosing:
        # An element inside one removed before is already gone.
        if element.getroottree().getroot() is document:
            _remove(element)
    headed = _cut_headed_blockquotes(document)
    if not enclosing and not leading and not headed:
        return None
    return document
