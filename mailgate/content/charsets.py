"""Turning bytes into text when the declared charset may be missing, unknown or lying.

Mail in the wild declares charsets that Python does not know (``iso-gb2312``,
``unicode-1-1-utf-7``), declares ``us-ascii`` over 8-bit text, or declares
``utf-8`` over Windows-1252 bytes. None of that may stop a ticket being made,
so every function here returns text and says whether it had to guess.
"""

from __future__ import annotations

import codecs

# Names seen in real mail that Python's codec registry does not know, or
# knows as a strict subset of what senders actually use (the WHATWG Encoding
# Standard makes the same substitutions, e.g. latin-1 and ascii as windows-1252).
_ALIASES: dict[str, str] = {
    "iso-gb2312": "gb18030",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "unicode-1-1-utf-7": "utf-7",
    "utf7": "utf-7",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "x-sjis": "cp932",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-user-defined": "cp1252",
    "cp-850": "cp850",
    "utf8": "utf-8",
    "x-unicode20utf8": "utf-8",
}

# When a declared East Asian charset fails, the bytes are usually in a sibling
# encoding of the same script (Shift_JIS labelled ISO-2022-JP is common).
_RELATIVES: dict[str, tuple[str, ...]] = {
    "iso2022_jp_ext": ("cp932", "euc_jis_2004", "iso2022_jp_2"),
    "iso2022_jp": ("cp932", "euc_jis_2004", "iso2022_jp_2"),
    "cp932": ("euc_jis_2004",),
    "euc_jp": ("cp932",),
    "gb18030": ("big5hkscs",),
    "big5hkscs": ("gb18030",),
}

# Charset labels that say nothing about the bytes; we guess instead.
_UNKNOWN = {"", "unknown", "unknown-8bit", "x-unknown", "default", "8bit", "binary", "charset"}

_known_cache: dict[str, str | None] = {}


def codec_for(charset: str | None) -> str | None:
    """The Python codec name for a declared charset, or None when unusable."""
    label = (charset or "").strip().strip("\"'").lower()
    cached = _known_cache.get(label)
    if cached is not None or label in _known_cache:
        return cached
    result: str | None
    if label in _UNKNOWN:
        result = None
    else:
        name = _ALIASES.get(label, label)
        try:
            result = codecs.lookup(name).name
        except (LookupError, ValueError):
            result = None
    if len(_known_cache) < 512:
        _known_cache[label] = result
    return result


def guess_decode(data: bytes) -> str:
    """Text from bytes of unknown charset: UTF-8 if valid, else Windows-1252, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte.
        return data.decode("latin-1")


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode ``data`` declared as ``charset``; the flag is True when we had to guess.

    Order: the declared charset strictly, then UTF-8 (the usual liar is a
    client that declares ``us-ascii``/``latin-1`` but writes UTF-8), then
    the declared charset with replacement characters, then Windows-1252.
    """
    if data.isascii():
        # Every charset we accept is an ASCII superset except UTF-7 and
        # ISO-2022 ones, which are written in 7-bit bytes on purpose.
        codec = codec_for(charset)
        if codec is None or not (codec.startswith("iso2022") or codec == "utf-7"):
            return data.decode("ascii"), False
    else:
        codec = codec_for(charset)
    if codec is None:
        return guess_decode(data), charset is not None and charset.strip() != ""
    if codec == "cp1252":
        # Declared ASCII or Latin-1 over 8-bit bytes is most often UTF-8 from a
        # client that lies; genuine Latin-1 text is almost never valid UTF-8.
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(codec), False
    except UnicodeDecodeError:
        pass
    except Exception:  # some codecs raise other errors on bad input
        pass
    if codec != "utf-8":
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            pass
    for relative in _RELATIVES.get(codec, ()):
        try:
            return data.decode(relative), True
        except UnicodeDecodeError:
            pass
    if codec in ("utf-8", "cp1252", "latin-1", "iso8859-1"):
        return guess_decode(data), True
    try:
        return data.decode(codec, "replace"), True
    except Exception:  # stateful codecs may still fail
        return guess_decode(data), True


def surrogates_to_text(value: str, hint: str | None = None) -> tuple[str, bool]:
    """Recover raw 8-bit bytes that compat32 kept as surrogate escapes, and decode them.

    Headers are 7-bit by RFC 5322 but RFC 6532 allows UTF-8, and old clients
    write their local charset raw, usually the one the body declares: that is
    ``hint``. The flag is True when the bytes were not UTF-8.
    """
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    if _mostly_high_bytes(raw) and codec_for(hint) in (None, "cp1252"):
        # Text that is mostly 8-bit bytes is not a Western language with a
        # few accents; Chinese spam writes raw GB2312 whatever the body says.
        try:
            return raw.decode("gb18030"), True
        except UnicodeDecodeError:
            pass
    if hint:
        return decode_bytes(raw, hint)[0], True
    return guess_decode(raw), True


def _mostly_high_bytes(raw: bytes) -> bool:
    """Whether most non-space bytes are above 0x7F (CJK double-byte text)."""
    letters = raw.replace(b" ", b"")
    high = sum(1 for byte in letters if byte > 0x7F)
    return len(letters) >= 4 and high * 10 >= len(letters) * 6
