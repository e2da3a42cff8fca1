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

import lxml.etree
import lxml.html

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
    # whose first words are the answered message's header ("From: a@b").
    "(self::div and contains(translate(@style, 'BORDE-TP ', 'borde-tp'), 'border-top')"
    " and contains(substring(string(.), 1, 400), '@')"
    " and contains(substring(normalize-space(string(.)), 1, 24), ':'))",
)


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


def cut_quoted_html(html: str) -> str | None:
    """``html`` without its quoted history, or None when no quote container marks one."""
    lowered = html.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return None
    try:
        document = lxml.html.document_fromstring(html)
    except Exception:  # lxml refuses empty or binary documents
        return None
    enclosing = _elements(_ENCLOSING(document))
    leading = _elements(_LEADING(document))
    if not enclosing and not leading:
        return None
    if leading:
        _cut_from(leading[0])
    for element in enclosing:
        # An element inside one removed before is already gone.
        if element.getroottree().getroot() is document:
            _remove(element)
    return str(lxml.etree.tostring(document, encoding="unicode", method="html"))
