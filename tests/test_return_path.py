"""The sender an MTA recorded: one reading for IMAP, the pipe and imports."""

from __future__ import annotations

from mailgate.ingest.files import envelope_sender, return_path


def test_return_path_as_recorded_in_any_line_ending() -> None:
    assert "Bob@Example.org" == return_path(b"Return-Path: <Bob@Example.org>\nFrom: a@b.c\n\nbody\n")
    assert "bob@example.org" == return_path(b"Return-Path: bob@example.org\r\n\r\nbody")
    assert "" == return_path(b"Return-Path: <>\r\nFrom: MAILER-DAEMON@x.org\r\n\r\n")
    # Only the header block counts: a quoted header in the body is not the envelope.
    assert None is return_path(b"From: a@b.c\n\nReturn-Path: <evil@x.org>\n")


def test_envelope_sender_is_unknown_without_return_path_and_null_only_when_recorded() -> None:
    """No Return-Path: unknown (None), whatever From says; ``<>``: null ("")."""
    assert "bob@example.org" == envelope_sender(b"Return-Path: <Bob@Example.org>\n\n")
    assert None is envelope_sender(b"From: Alice <Alice@example.org>\n\nhi\n")
    assert "" == envelope_sender(b"Return-Path: <>\nFrom: MAILER-DAEMON@x.org\n\n")
    # qmail's double-bounce reverse-path is a recorded null too.
    assert "" == envelope_sender(b"Return-Path: <#@[]>\n\n")
    # An empty field records nothing: unknown, not null.
    assert None is envelope_sender(b"Return-Path: \r\nFrom: a@b.c\r\n\r\n")


def test_a_folded_return_path_is_read_whole() -> None:
    """A value on the continuation line is the address, not an empty (null) path."""
    raw = b"Return-Path:\r\n <carol@example.org>\r\nTo: x@y.z\r\n\r\n"
    assert "carol@example.org" == envelope_sender(raw)
    # Bare CR line ends (sisimai's lhost-gmx-01): the next header is not the value.
    assert None is envelope_sender(b"Return-Path: \rReceived: from mx by x\rFrom: a@b.c\r\r")
