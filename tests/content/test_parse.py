"""parse(): headers, addresses, ids, dates, bodies, charsets and defects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from mailgate.message import Address
from mailgate.parse import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "content"


def fixture(name: str) -> bytes:
    """The bytes of one hand-made fixture mail."""
    return (FIXTURES / name).read_bytes()


def test_outlook_reply_headers_are_decoded() -> None:
    """RFC 2047 subject and names are decoded and addresses lower-cased."""
    parsed = parse(fixture("outlook_reply_dutch.eml"))
    assert "Antw: [HD-1042] Printer op de 2e verdieping" == parsed.subject
    assert Address("anke.pieters@example.nl", "Anke Piëters") == parsed.sender
    assert (Address("helpdesk@example.com", "Helpdesk, IT"),) == parsed.to
    assert ("jan@example.nl", "bram@example.nl") == tuple(a.email for a in parsed.cc)


def test_outlook_reply_ids_and_date() -> None:
    """Message ids come out in <...> form and the date is timezone-aware."""
    parsed = parse(fixture("outlook_reply_dutch.eml"))
    assert "<AM0PR01MB1234@eurprd01.prod.example.com>" == parsed.message_id
    assert ("<hd-1042-ack@example.com>",) == parsed.in_reply_to
    assert ("<hd-1042@example.com>", "<hd-1042-ack@example.com>") == parsed.references
    expected = datetime(2024, 3, 13, 8, 2, 11, tzinfo=timezone(timedelta(hours=1)))
    assert expected == parsed.date


def test_headers_keep_order_and_are_unfolded() -> None:
    """All headers are kept in order, decoded, with folding undone."""
    parsed = parse(fixture("outlook_reply_dutch.eml"))
    assert "From" == parsed.headers[0][0]
    assert "<hd-1042@example.com> <hd-1042-ack@example.com>" == parsed.header("references")
    assert len(fixture("outlook_reply_dutch.eml")) == parsed.size


def test_outlook_reply_new_text_drops_dutch_header_block() -> None:
    """The Van/Verzonden/Aan block and what follows is not part of the new text."""
    parsed = parse(fixture("outlook_reply_dutch.eml"))
    expected = (
        "Hoi,\n\nDe printer werkt weer, dank jullie wel! Zie de foto.\n\n"
        "Met vriendelijke groet,\nAnke Piëters"
    )
    assert expected == parsed.new_text
    assert "Uw melding is ontvangen." in parsed.text


def test_html_is_sanitised_and_keeps_cid_images() -> None:
    """Scripts and event handlers are removed; the cid: image stays and is an inline attachment."""
    parsed = parse(fixture("outlook_reply_dutch.eml"))
    assert parsed.html is not None
    assert "<script" not in parsed.html
    assert "onclick" not in parsed.html
    assert 'src="cid:image001.png@01DA7512.12345670"' in parsed.html
    (image,) = parsed.attachments
    assert ("image001.png", "image/png", True) == (image.filename, image.content_type, image.inline)
    assert "image001.png@01DA7512.12345670" == image.content_id
    assert image.content.startswith(b"\x89PNG")


def test_raw_utf8_headers_and_lying_ascii_body() -> None:
    """Raw UTF-8 headers decode; a body declared us-ascii but written in UTF-8 is read as UTF-8."""
    parsed = parse(fixture("raw_8bit_headers.eml"))
    assert "Drucker druckt nur Kästchen" == parsed.subject
    assert Address("juergen@example.de", "Jürgen Müller") == parsed.sender
    assert "Hallo, der Drucker im Büro druckt nur Kästchen." == parsed.text
    assert "<bare-id@example.de>" == parsed.message_id
    assert parsed.date is None


def test_raw_latin1_headers_use_the_body_charset() -> None:
    """Raw Latin-1 headers are decoded with the body's charset and noted as a defect."""
    parsed = parse(fixture("latin1_8bit_headers.eml"))
    assert "Problème de connexion" == parsed.subject
    assert "René Dupont" == (parsed.sender.name if parsed.sender else None)
    assert "Je n'arrive plus à me connecter." == parsed.text
    assert any("8-bit header" in defect for defect in parsed.defects)


def test_attachment_names_rfc2231_rfc2047_and_paths() -> None:
    """Filenames from RFC 2231, RFC 2047 in quotes, and Windows paths are decoded and cleaned."""
    parsed = parse(fixture("attachments_rfc2231.eml"))
    names = [attachment.filename for attachment in parsed.attachments]
    assert ["Offerte märz 2024.pdf", "Begroting €.xlsx", "notes.txt"] == names
    pdf = parsed.attachments[0]
    assert (b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n", 15) == (pdf.content, pdf.size)
    assert 64 == len(pdf.sha256)
    assert "Zie bijlagen." == parsed.text


def test_oversized_attachment_keeps_metadata_only() -> None:
    """An attachment above the limit has its size and hash but no content, and a defect."""
    parsed = parse(fixture("attachments_rfc2231.eml"), max_attachment_bytes=14)
    pdf = parsed.attachments[0]
    assert (b"", 15) == (pdf.content, pdf.size)
    assert any("exceeds 14" in defect for defect in parsed.defects)
    assert b"PK\x03\x04\x14\x00\x00\x00\x08\x00" == parsed.attachments[1].content


def test_html_only_mail_gets_text() -> None:
    """A mail with only HTML gets its text from the HTML."""
    raw = (
        b"From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p {color: red}</style></head>"
        b"<body><p>Goedemorgen,</p><p>De <b>VPN</b> valt weg.</p></body></html>"
    )
    parsed = parse(raw)
    assert "Goedemorgen,\n\nDe VPN valt weg." == parsed.text


def test_unknown_charset_is_not_fatal() -> None:
    """An unknown charset label falls back to UTF-8 or Windows-1252 with a defect."""
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\ncaf\xe9\r\n"
    parsed = parse(raw)
    assert "café" == parsed.text
    assert any("x-klingon" in defect for defect in parsed.defects)


def test_zammad_style_charset_aliases() -> None:
    """Charset labels Python lacks (iso-gb2312, unicode-1-1-utf-7) still decode."""
    raw = (
        b"From: a@example.com\r\n"
        b"Subject: =?unicode-1-1-utf-7?Q?+ANw-bermittlung?= =?iso-gb2312?B?1tDOxA==?=\r\n\r\nx"
    )
    assert "Übermittlung中文" == parse(raw).subject


def test_broken_base64_is_best_effort() -> None:
    """Base64 with junk and a truncated tail decodes what it can and notes a defect."""
    raw = (
        b"From: a@example.com\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8g!!d29y*bGQ=\r\nQ"
    )
    parsed = parse(raw)
    assert "hello world" == parsed.text
    assert parsed.defects


def test_bare_cr_and_nul_bytes_are_tolerated() -> None:
    """Old Mac line ends parse as lines and NUL characters are removed from the body."""
    raw = b"From: a@example.com\rSubject: Mac\r\rline one\rline\x00 two\r"
    parsed = parse(raw)
    assert "Mac" == parsed.subject
    assert "line one\nline two" == parsed.text
    assert any("NUL" in defect for defect in parsed.defects)


def test_missing_from_falls_back_to_sender_then_reply_to() -> None:
    """Without From the Sender header names the sender, then Reply-To."""
    with_sender = parse(b"Sender: list@example.com\r\nReply-To: r@example.com\r\n\r\nx")
    only_reply_to = parse(b'From: "Nobody" <>\r\nReply-To: r@example.com\r\n\r\nx')
    assert "list@example.com" == (with_sender.sender.email if with_sender.sender else None)
    assert "r@example.com" == (only_reply_to.sender.email if only_reply_to.sender else None)


def test_encoded_name_with_comma_is_one_address() -> None:
    """An unquoted encoded word holding a comma does not split the address list."""
    raw = b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <Smith@Example.com>\r\n\r\nx"
    assert Address("smith@example.com", "Bürling, Andreas") == parse(raw).sender


def test_references_without_brackets_and_duplicates() -> None:
    """References are normalised to <...> form, deduplicated, in order."""
    raw = b"From: a@b.c\r\nReferences: <a@x> <b@x>\r\n <a@x>\r\nIn-Reply-To: c@x\r\n\r\nx"
    parsed = parse(raw)
    assert ("<a@x>", "<b@x>") == parsed.references
    assert ("<c@x>",) == parsed.in_reply_to


def test_date_without_zone_is_utc() -> None:
    """A -0000 date is read as UTC."""
    raw = b"From: a@b.c\r\nDate: Tue, 12 Mar 2024 10:15:00 -0000\r\n\r\nx"
    assert datetime(2024, 3, 12, 10, 15, tzinfo=UTC) == parse(raw).date


def test_mbox_from_line_and_broken_continuations() -> None:
    """An mbox From_ line is skipped and unindented header continuations are joined."""
    raw = (
        b"From someone@example.com Wed Apr 19 20:56:33 2017\n"
        b"Received: from a by b\nwith SMTP; 5 Apr 2017\n"
        b"From: Karoline <k@example.com>\nSubject: AW: Test\n\nbody\n"
    )
    parsed = parse(raw)
    assert ("k@example.com", "AW: Test", "body") == (
        parsed.sender.email if parsed.sender else None,
        parsed.subject,
        parsed.text,
    )
    assert "from a by b with SMTP; 5 Apr 2017" == parsed.header("received")


def test_banner_line_before_headers_is_dropped() -> None:
    """A forwarding tool's banner above the headers does not hide them."""
    raw = b"---- Original email message ----\r\nFrom: x@example.cz\r\nSubject: Contact\r\n\r\nhi"
    parsed = parse(raw)
    assert ("x@example.cz", "Contact") == (
        parsed.sender.email if parsed.sender else None,
        parsed.subject,
    )


def test_attached_message_is_an_eml_attachment() -> None:
    """A message/rfc822 part becomes a .eml attachment named after its subject."""
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\n\nSee attached.\n--b\nContent-Type: message/rfc822\n\n"
        b"From: c@example.com\nSubject: Old mail\n\nold body\n--b--\n"
    )
    parsed = parse(raw)
    (attached,) = parsed.attachments
    assert ("Old mail.eml", "message/rfc822") == (attached.filename, attached.content_type)
    assert b"From: c@example.com\nSubject: Old mail\n\nold body" == attached.content
    assert "See attached." == parsed.text


def test_never_raises_on_garbage() -> None:
    """Non-mail input still gives a ParsedMessage."""
    for raw in (b"", b"\x00\xff" * 100, b":\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        assert len(raw) == parse(raw).size
