"""The part of a reply the sender wrote: quoted history and signatures removed.

Each line gets a kind: empty, text, quote (``>``), header (the line that
introduces quoted history: "On ... wrote:", "Op ... schreef ...:", an
Outlook From/Sent block, "-----Original Message-----"), delimiter ("--",
"_____") or device signature ("Sent from my iPhone"). The reply is what
comes before the first header, delimiter or signature, and before a final
block of quotes. Sign-offs with a name ("Met vriendelijke groet,\\nAnke")
are kept: they say who wrote, and nothing marks where a sign-off ends.

Phrase lists only cover the languages someone wrote down, so headers are
also recognised by their shape: a line (or two or three, as clients wrap
it) with a date or time, then the quoted sender's address, then at most a
verb and a colon. Header blocks are recognised by "Label: value" lines with
an address. HTML bodies are cut at their client's quote container before
they reach this module (``html_quote``).
"""

from __future__ import annotations

from bisect import bisect_right

from mailgate.content import reply_patterns as p

# ASCII and full-width (CJK) colons end quote headers.
COLONS = (":", "\uff1a")
EMPTY, TEXT, QUOTE, HEADER, DELIMITER, SIGNATURE = "e", "t", "q", "h", "d", "s"
# Supercite-style quotes ("C> text", from Emacs clients): history when they
# close a reply, but too ambiguous to mark an interleaved reply.
INITIALS_QUOTE = "c"
CUTS = {HEADER, DELIMITER, SIGNATURE}

# Trimming is line-based and linear, but a reply longer than this is not a
# reply; we only look at its beginning for the cut.
MAX_LINES = 20_000
# How far below a From line Outlook's other header fields may start.
HEADER_BLOCK_LINES = 5
# How many lines Outlook's From/Sent/To/Subject block may take.
MAX_FIELD_BLOCK_LINES = 12
# How many lines a wrapped "On ... wrote:" header may run over.
WRAPPED_HEADER_LINES = 6
# A header field's label and colon fit in this many characters ("Päivämäärä:").
FIELD_LABEL_CHARS = 28
# A header recognised by its shape alone may wrap over this many lines.
STRUCTURAL_HEADER_LINES = 3
MAX_HEADER_CHARS = 300
# After the quoted sender's address a header has at most a verb and a colon
# ("> het volgende geschreven:").
MAX_HEADER_TAIL = 40
MAX_HEADER_TAIL_WORDS = 4
# A quoted line this long that is followed by a lower-case line without a
# quote mark was wrapped by a client that did not repeat the mark.
WRAPPED_QUOTE_CHARS = 60
# "Sent from my Samsung Galaxy S21 Ultra 5G smartphone" is about the longest.
MAX_SIGNATURE_WORDS = 10
# Lines below a quoted block that read as a sign-off rather than answers.
MAX_SIGN_OFF_LINES = 2


def _content(line: str) -> str:
    """A line without quote marks, bold/underline markers and outer whitespace."""
    return line.lstrip(" \t>").strip().strip("*_").strip()


def _is_quote_header(text: str) -> bool:
    """Whether ``text`` reads "On <date>, <name> wrote:" in some language."""
    if len(text) > 400 or not (text.endswith(COLONS) or "wrote" in text.lower()):
        return False
    if not p.QUOTE_HEADER.search(text):
        return False
    # "Here is what John wrote:" is text; a real header names a date or an address.
    return any(char.isdigit() for char in text) or "@" in text or bool(p.QUOTE_HEADER_LEAD.match(text))


def _is_structural_header(text: str) -> bool:
    """Whether ``text`` has the shape of a quote header, whatever its language.

    Clients everywhere write "<date> <time>, <name> <address>" and end with a
    colon or a verb: "<weekday>, 30 <month> 2025 <year> 15:19, John <j@x.ru>:",
    "pe 20. lokakuuta 2017 klo 17.50 John <j@x.fi> kirjoitti:". So: a date or
    time, then the quoted sender's address, then at most a few words.
    """
    # The address test first: it is the cheapest, and most lines fail it.
    if "@" not in text or len(text) > MAX_HEADER_CHARS:
        return False
    if not text.endswith(COLONS) and not p.QUOTE_HEADER_NO_COLON.search(text):
        return False
    addresses = list(p.EMAIL.finditer(text))
    if not addresses:
        return False
    last = addresses[-1]
    tail = text[last.end() :]
    if len(tail) > MAX_HEADER_TAIL or len(tail.split()) > MAX_HEADER_TAIL_WORDS:
        return False
    return bool(p.DATE_OR_TIME.search(text, 0, last.start()))


def is_quote_header_line(text: str) -> bool:
    """Whether the one line ``text`` introduces quoted history ("On ... wrote:" or its shape)."""
    text = _content(text)
    return bool(_is_quote_header(text) or p.DATE_HEADER.match(text) or _is_structural_header(text))


def _is_field(text: str) -> bool:
    return bool(p.HEADER_FROM.match(text) or p.HEADER_FIELD.match(text))


def _bare_field_block(contents: list[str], index: int) -> int:
    """Lines of a header block that starts without its From line, or 0.

    Some clients quote "Date: ... / To: ..." alone, others write field names
    in a language we have no list for; either way it is two or more field
    lines in a row, one naming an address. Unknown labels need three lines
    and the address on the first ("Fra: A <a@b.dk>"), so that an ordinary
    "Date: / Time: / Address:" list stays text.
    """
    end = index
    limit = min(len(contents), index + MAX_FIELD_BLOCK_LINES)
    while end < limit and _is_field(contents[end]):
        end += 1
    known = contents[index:end]
    if len(known) >= 2 and any(p.EMAIL.search(line) for line in known):
        return end - index
    if not p.EMAIL.search(contents[index]):
        return 0
    end = index
    while end < limit and p.LABELLED_FIELD.match(contents[end]):
        end += 1
    return end - index if end - index >= 3 else 0


def _field_block(contents: list[str], index: int) -> int:
    """Lines from a separator or From line to the end of its header fields.

    The fields (From/Sent/To/Subject and their wrapped continuations) run
    to the first blank line; a forward separator may be followed directly
    by them.
    """
    end = index + 1
    limit = min(len(contents), index + MAX_FIELD_BLOCK_LINES)
    while end < limit and contents[end]:
        end += 1
    block = contents[index + 1 : end]
    if end == index + 1 or not any(p.HEADER_FROM.match(line) or p.HEADER_FIELD.match(line) for line in block):
        return 1
    return end - index


def _header_span(contents: list[str], index: int, colon_ahead: bool) -> int:
    """How many lines the quote header starting at ``index`` spans, or 0 if none does.

    ``colon_ahead`` says whether one of the next few lines ends in a colon,
    which a header wrapped over several lines needs.
    """
    text = contents[index]
    if not text:
        return 0
    dashed = text.startswith("-")
    if p.ORIGINAL_MESSAGE.match(text) or p.FORWARD_INTRO.match(text):
        return _field_block(contents, index)
    if dashed and p.FRAMED_MESSAGE.match(text):
        return _field_block(contents, index)
    if _is_quote_header(text) or p.DATE_HEADER.match(text) or (dashed and p.DASHED_WROTE.match(text)):
        return 1
    if _is_structural_header(text):
        return 1
    if p.HEADER_FROM.match(text):
        following = contents[index + 1 : index + 1 + HEADER_BLOCK_LINES]
        if any(p.HEADER_FIELD.match(line) for line in following):
            return _field_block(contents, index)
        if p.EMAIL.search(text) and p.HEADER_FIELD_INLINE.search(text):
            return _field_block(contents, index)
    label = text[:FIELD_LABEL_CHARS]
    if (":" in label or "\uff1a" in label) and p.LABELLED_FIELD.match(text):
        block = _bare_field_block(contents, index)
        if block:
            return block
    if colon_ahead and (index == 0 or not contents[index - 1]) and p.DATE_OR_TIME.search(text):
        # A header wrapped by the client, recognised by its shape: no blank
        # line inside, and a blank line (or nothing) above it.
        joined = text
        for extra in range(1, STRUCTURAL_HEADER_LINES):
            if index + extra >= len(contents) or not contents[index + extra]:
                break
            joined = f"{joined} {contents[index + extra]}"
            if _is_structural_header(joined):
                return extra + 1
    if not colon_ahead:
        return 0
    if p.QUOTE_HEADER_LEAD.match(text) or text[:1].isdigit() or p.EMAIL.search(text):
        # Clients wrap long headers, even with blank lines between the pieces:
        # "On Mon, Aug 19, 2013, Some One <" / "x@y> wrote:".
        joined = text
        for extra in range(1, WRAPPED_HEADER_LINES):
            if index + extra >= len(contents):
                break
            if not contents[index + extra]:
                continue
            if p.WORD_LEAD.match(contents[index + extra]):
                # A header starts on that line itself; this one is text above it.
                break
            joined = f"{joined} {contents[index + extra]}"
            if _is_quote_header(joined) or (p.DATE_HEADER.match(joined) and joined.endswith(COLONS)):
                return extra + 1
    return 0


def _reads_as_signature(text: str) -> bool:
    """Whether a line that starts like "Sent from my ..." is a signature, not a sentence.

    "Sent from my desk, which is much easier than my phone." goes on after a
    comma; an app's signature names the device and stops, or at most excuses
    itself ("Sent from my iPhone, please excuse typos"). In doubt the line
    stays: a signature left in is noise, a sentence cut off is lost.
    """
    if len(text.split()) > MAX_SIGNATURE_WORDS:
        return False
    return not p.CLAUSE_BREAK.search(text) or bool(p.SIGNATURE_EXCUSE.search(text))


def _continues_quote(lines: list[str], kinds: list[str], index: int) -> bool:
    """Whether ``lines[index]`` is the rest of a quoted line that lost its quote mark.

    Clients wrap long quoted lines without repeating the mark, and break a
    quoted link across lines: "> View ticket (http://x/action" / "_nonce=3d)".
    """
    if not kinds or kinds[-1] != QUOTE:
        return False
    above = lines[index - 1].rstrip()
    line = lines[index].lstrip()
    if above.count("(") > above.count(")") and ")" in line and " " not in line.split(")", 1)[0]:
        return True
    below = lines[index + 1] if index + 1 < len(lines) else ""
    if line.startswith(("(http", "<http")) and below.startswith(">"):
        return True
    return len(above) >= WRAPPED_QUOTE_CHARS and line[:1].islower()


def _classify(lines: list[str]) -> list[str]:
    """The kind of every line."""
    contents = [_content(line) for line in lines]
    colon_lines = [i for i, text in enumerate(contents) if text.endswith(COLONS)]
    kinds: list[str] = []
    in_code = False
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if p.CODE_FENCE.match(line):
            in_code = not in_code
        if in_code or p.CODE_FENCE.match(line):
            kinds.append(TEXT if stripped else EMPTY)
            index += 1
            continue
        if not stripped:
            kinds.append(EMPTY)
            index += 1
            continue
        after = bisect_right(colon_lines, index)
        colon_ahead = after < len(colon_lines) and colon_lines[after] < index + WRAPPED_HEADER_LINES
        span = _header_span(contents, index, colon_ahead)
        if span:
            # A header inside a block of quoted text is part of the quote.
            last = next((kind for kind in reversed(kinds) if kind != EMPTY), None)
            nested = stripped.startswith(">") and last == QUOTE
            kinds.extend([QUOTE if nested else HEADER] * span)
            index += span
            continue
        if stripped.startswith(">") or _continues_quote(lines, kinds, index):
            kinds.append(QUOTE)
        elif p.INITIALS_QUOTE.match(line):
            kinds.append(INITIALS_QUOTE)
        elif p.SIGNATURE_DASHES.match(line):
            kinds.append(DELIMITER)
        elif p.DELIMITER.match(line):
            # A rule right under a line of text underlines a heading or a
            # table header; a signature or history separator stands apart.
            underline = stripped[0] in "-=" and bool(kinds) and kinds[-1] == TEXT
            kinds.append(TEXT if underline else DELIMITER)
        elif p.DEVICE_SIGNATURE.search(stripped) and _reads_as_signature(stripped):
            kinds.append(SIGNATURE)
        else:
            kinds.append(TEXT)
        index += 1
    return kinds[: len(lines)]


def _strip_blank(lines: list[str]) -> list[str]:
    """``lines`` without leading and trailing blank lines."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _first_cut(kinds: list[str], dropped: set[int]) -> int:
    """The index of the first line that starts history or signature.

    A header followed by quotes and then more text is an interleaved reply
    ("On ... wrote:", "> question", "answer"): the quotes stay as context,
    the header line goes into ``dropped``.
    """
    index = 0
    while index < len(kinds):
        if kinds[index] not in CUTS:
            index += 1
            continue
        if kinds[index] != HEADER:
            return index
        after = index
        while after < len(kinds) and kinds[after] == HEADER:
            after += 1
        header_end = after
        while after < len(kinds) and kinds[after] == EMPTY:
            after += 1
        if after >= len(kinds) or kinds[after] != QUOTE:
            return index
        while after < len(kinds) and kinds[after] in (QUOTE, EMPTY):
            after += 1
        if after >= len(kinds) or kinds[after] != TEXT:
            return index
        below = [kind for kind in kinds[after:] if kind != EMPTY]
        if TEXT in kinds[:index] and len(below) <= MAX_SIGN_OFF_LINES and set(below) == {TEXT}:
            # Text above one quoted block and a sign-off below it ("Regards,
            # Roman"): the block is history, the text around it the reply.
            dropped.update(range(index, after))
        else:
            # Answers between quoted questions keep the questions.
            dropped.update(range(index, header_end))
        index = after
    return len(kinds)


def _trim_lines(lines: list[str], depth: int = 0) -> list[str]:
    lines = _strip_blank(lines)
    if not lines:
        return []
    kinds = _classify(lines)
    # Reply below the quote (or below a stray header): new text after them.
    if kinds[0] == HEADER and depth < 3:
        after = 0
        while after < len(kinds) and kinds[after] in (HEADER, QUOTE, EMPTY):
            after += 1
        if after < len(kinds) and kinds[after] == TEXT:
            return _trim_lines(lines[after:], depth + 1)
    dropped: set[int] = set()
    cut = _first_cut(kinds, dropped)
    # A final block of quotes (and blank lines) below some text is history.
    start = cut
    while start > 0 and kinds[start - 1] in (QUOTE, INITIALS_QUOTE, EMPTY):
        start -= 1
    if start > 0 and TEXT in kinds[:start]:
        cut = start
    return _strip_blank([line for i, line in enumerate(lines[:cut]) if i not in dropped])


def _split_shared_lines(lines: list[str]) -> list[str]:
    """``lines`` with a quote header that shares its line with reply text put on a line of its own."""
    split: list[str] = []
    for line in lines:
        shared = line.endswith("wrote:") and not line.lstrip(" ->").startswith("On ")
        found = p.SHARED_LINE_HEADER.match(line) if shared else None
        if found and not line.lstrip().startswith(">") and _is_quote_header(found["header"].strip("- ")):
            split.extend((found["reply"], found["header"]))
        else:
            split.append(line)
    return split


def trim_reply(text: str) -> str:
    """The new text of a reply: ``text`` without quoted history and signature."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = normalised.split("\n")
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
    lines = _split_shared_lines(lines)
    return "\n".join(_trim_lines(lines)).strip()
