"""Quote headers and history recognised by their shape, not by a phrase list; sentences kept."""

from __future__ import annotations

import pytest

from mailgate.content.reply import trim_reply

STRUCTURAL = {
    "russian": "ср, 30 апр. 2025 г. в 15:19, Helpdesk <helpdesk@example.com>:",
    "finnish_wrapped": "pe 20. lokakuuta 2017 klo 17.50 Helpdesk\n<helpdesk@example.com> kirjoitti:",
    "yandex": '26.06.2014, 14:41, "Helpdesk" <helpdesk@example.com>:',
    "mail_ru": "Thu, 26 Jun 2014 14:00:51 +0400 от Helpdesk <helpdesk@example.com>:",
    "no_colon": "On Wed, 14 Nov 2018 08:14:43 -0200 Helpdesk <helpdesk@example.com> wrote",
    "korean": "2016. 11. 8. 오후 12:39 Helpdesk <helpdesk@example.com> 작성:",
}


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_quote_header_recognised_by_its_shape(name: str) -> None:
    """A date, the quoted sender's address and a colon make a quote header in any language."""
    text = f"It works now.\n\n{STRUCTURAL[name]}\n\nPlease restart the printer.\n"
    assert "It works now." == trim_reply(text)


def test_sentence_with_an_address_and_a_colon_is_text() -> None:
    """Without a date or time before the address, a line ending in a colon is the sender's text."""
    text = "Please write to the supplier at sales@example.com:\n\nthey know the model.\n"
    assert text.strip() == trim_reply(text)


def test_sent_from_sentence_is_kept() -> None:
    """'Sent from my desk, ...' goes on after a comma: a sentence, not a phone's signature."""
    text = "Here it is.\n\nSent from my desk, which is much easier than my phone.\n"
    assert text.strip() == trim_reply(text)
    assert "Here it is." == trim_reply("Here it is.\n\nSent from my iPhone\n")
    assert "Here it is." == trim_reply("Here it is.\n\nSent from my iPhone, please excuse typos\n")


def test_from_line_with_its_fields_inline_is_a_header() -> None:
    """HTML turned into text can put Outlook's fields on the From line: still a header block."""
    text = "It works now.\n\nFrom: h@example.com Date: Thu, 24 Mar 2016 08:07:12 -0700\nRestart.\n"
    assert "It works now." == trim_reply(text)


def test_quoted_link_broken_across_lines_stays_in_the_quote() -> None:
    """A quoted link the client broke over two lines is still quoted history, not an answer."""
    text = "It works now.\n\n> View ticket (http://example.com/action\n_nonce=3dd518)\n"
    assert "It works now." == trim_reply(text)


def test_wrapped_quoted_line_is_not_an_interleaved_answer() -> None:
    """A long quoted line wrapped without its mark continues the quote; the header goes with it."""
    text = (
        "It works now.\n\nOn Mon, 12 Mar 2024 at 10:20, Helpdesk <h@example.com> wrote:\n"
        "> Please restart the printer on the second floor, the one near the coffee m\n"
        "achine, and tell us.\n>\n"
    )
    assert "It works now." == trim_reply(text)


def test_sign_off_below_the_quote_is_kept() -> None:
    """Text above a quoted block and a short sign-off below it are the reply; the block is not."""
    text = "It works now.\n\nOn 04/19/2011 07:10 AM, Helpdesk wrote:\n\n> Restart it.\n\nRegards, Anke\n"
    assert "It works now.\n\nRegards, Anke" == trim_reply(text)


def test_table_underline_is_not_a_signature() -> None:
    """A dashed rule right under a table heading underlines it; the table stays."""
    text = "Expiring:\n\nService  Date\n-------------------\nRegistration  Jun 27\n"
    assert text.strip() == trim_reply(text)
