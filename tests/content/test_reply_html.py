"""HTML replies are cut at the client's quote container before they become text."""

from __future__ import annotations

from base64 import b64encode

import pytest

from mailgate.parse import parse


def _html_mail(html: str) -> bytes:
    return (
        b"From: Anke <anke@example.nl>\r\nTo: helpdesk@example.com\r\nSubject: Re: [HD-7] Printer\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64encode(html.encode("utf-8")) + b"\r\n"
    )


# The quoted part starts with a line no text rule knows ("Helpdesk:"), so
# only the container can tell where the history begins.
CONTAINERS = {
    "gmail": '<div dir="ltr">It works now.</div><div class="gmail_quote"><div class="gmail_attr">'
    "Helpdesk:</div><blockquote>Please restart the printer.</blockquote></div>",
    "apple": '<div>It works now.</div><blockquote type="cite"><div>Helpdesk:</div>'
    "<div>Please restart the printer.</div></blockquote>",
    "thunderbird": '<p>It works now.</p><div class="moz-cite-prefix">Helpdesk:</div>'
    '<blockquote type="cite">Please restart the printer.</blockquote>',
    "outlook": '<div>It works now.</div><hr><div id="divRplyFwdMsg"><b>Van:</b> Helpdesk</div>'
    "<div>Please restart the printer.</div>",
    "outlook_com": '<div>It works now.</div><div id="appendonsend"></div><div>Helpdesk:</div>'
    "<div>Please restart the printer.</div>",
    # Turkish Outlook: field names no list of ours knows, in the bordered header div.
    "outlook_border": '<div>It works now.</div><div style="border:none;border-top:solid #E1E1E1 1.0pt">'
    "<p><b>Kimden:</b> Helpdesk &lt;helpdesk@example.com&gt;<br><b>Konu:</b> Printer</p></div>"
    "<p>Please restart the printer.</p>",
    "hotmail": '<div>It works now.</div><hr id="stopSpelling">Helpdesk:<br>Please restart the printer.',
    "yahoo": '<div>It works now.</div><div class="yahoo_quoted"><div>Helpdesk:</div>'
    "<div>Please restart the printer.</div></div>",
}


@pytest.mark.parametrize("client", sorted(CONTAINERS))
def test_quote_container_is_cut(client: str) -> None:
    """Each client's quote container and what it holds leave the reply; the answer above stays."""
    message = parse(_html_mail(CONTAINERS[client]))
    assert "It works now." == message.new_text
    assert "Please restart the printer." in message.text


def test_bordered_div_without_header_fields_stays() -> None:
    """A div with a top border that is not a header block (a note, a table) is the sender's text."""
    html = '<div>It works now.</div><div style="border-top:1px solid #ccc">Note: ask anke@example.nl</div>'
    assert "Note: ask anke@example.nl" in parse(_html_mail(html)).new_text


HEADED_BLOCKQUOTES = {
    # Yandex: the header ends the paragraph above a bare blockquote.
    "yandex": '<p>It works now.<br /><br />26.06.2014, 14:41, "Helpdesk" &lt;<a href="mailto:h@example.com">'
    "h@example.com</a>&gt;:</p><blockquote>Please restart the printer.</blockquote><p>Also the scanner.</p>",
    # Mail.ru: the header is loose text between line breaks.
    "mail_ru": "<p>It works now.</p><br>Thu, 26 Jun 2014 14:00:51 +0400 от Helpdesk &lt;h@example.com&gt;:"
    "<br>"
    '<blockquote style="border-left:1px solid #0857A6">Please restart the printer.</blockquote>'
    "<p>Also the scanner.</p>",
}


@pytest.mark.parametrize("client", sorted(HEADED_BLOCKQUOTES))
def test_blockquote_under_a_quote_header_is_cut_and_answer_below_kept(client: str) -> None:
    """A bare blockquote under a quote header goes with its header; what the sender wrote below stays."""
    message = parse(_html_mail(HEADED_BLOCKQUOTES[client]))
    assert "Also the scanner." in message.new_text
    assert "It works now." in message.new_text
    assert "Please restart" not in message.new_text
    assert "Helpdesk" not in message.new_text


def test_answer_below_a_container_is_kept() -> None:
    """A bottom-posted answer below Apple's cite blockquote is the reply."""
    html = '<blockquote type="cite">Helpdesk:<br>Please restart.</blockquote><div>Done, it works.</div>'
    assert "Done, it works." == parse(_html_mail(html)).new_text


def test_a_passage_quoted_on_purpose_stays() -> None:
    """Gmail's quote button makes a lone blockquote.gmail_quote; that is the sender's text."""
    html = 'As the manual says:<blockquote class="gmail_quote">Press reset twice.</blockquote>No help.'
    assert "Press reset twice." in parse(_html_mail(html)).new_text
