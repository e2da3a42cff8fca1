"""trim_reply: quoted history and signatures cut in Dutch, German and other languages."""

from __future__ import annotations

import pytest

from mailgate.content.reply import trim_reply

CASES = {
    "dutch_op_schreef": (
        "Dat werkt, bedankt!\n\nOp di 12 mrt. 2024 om 10:20 schreef IT Helpdesk "
        "<helpdesk@example.com>:\n> Probeer de printer opnieuw op te starten.\n"
    ),
    "dutch_op_schreef_wrapped": (
        'Dat werkt, bedankt!\n\nOp 12 mrt. 2024 10:20 schreef "IT Helpdesk" <\n'
        "helpdesk@example.com> het volgende:\n\n> Probeer de printer opnieuw.\n"
    ),
    "dutch_outlook_block": (
        "Dat werkt, bedankt!\n\nVan: IT Helpdesk <helpdesk@example.com>\n"
        "Verzonden: dinsdag 12 maart 2024 10:20\nAan: Jan <jan@example.nl>\n"
        "Onderwerp: [HD-1042] Printer\n\nProbeer de printer opnieuw op te starten.\n"
    ),
    "dutch_iphone": "Dat werkt, bedankt!\n\nVerzonden vanaf mijn iPhone\n\n> Probeer het opnieuw.\n",
    "dutch_oorspronkelijk": (
        "Dat werkt, bedankt!\n\n-----Oorspronkelijk bericht-----\nVan: IT Helpdesk\n"
        "Verzonden: dinsdag 12 maart 2024 10:20\n\nProbeer het opnieuw.\n"
    ),
    "german_am_schrieb": (
        "Dat werkt, bedankt!\n\nAm 12.03.2024 um 10:20 schrieb IT Helpdesk "
        "<helpdesk@example.com>:\n> Bitte neu starten.\n"
    ),
    "german_schrieb_am_wrapped": (
        "Dat werkt, bedankt!\n\nIT Helpdesk <helpdesk@example.com> schrieb am Di., 12. März\n"
        "2024 um 10:20 Uhr:\n\n> Bitte neu starten.\n"
    ),
    "german_outlook": (
        "Dat werkt, bedankt!\n\n-----Ursprüngliche Nachricht-----\nVon: IT Helpdesk\n"
        "Gesendet: Dienstag, 12. März 2024 10:20\nAn: Jan\nBetreff: Drucker\n\nBitte neu starten.\n"
    ),
    "german_mobile": "Dat werkt, bedankt!\n\nVon meinem iPhone gesendet\n",
    "english_original_message": (
        "Dat werkt, bedankt!\n\n-----Original Message-----\nFrom: IT Helpdesk\n"
        "Sent: Tuesday, March 12, 2024 10:20 AM\nTo: Jan\nSubject: Printer\n\nRestart it.\n"
    ),
    "french": "Dat werkt, bedankt!\n\nLe 12 mars 2024 à 10:20, Helpdesk <h@example.com> a écrit :\n> x\n",
    "spanish": "Dat werkt, bedankt!\n\nEl 12 mar 2024, a las 10:20, Helpdesk escribió:\n> x\n",
    "italian": "Dat werkt, bedankt!\n\nIl giorno 12 mar 2024, alle ore 10:20, Helpdesk ha scritto:\n",
    "swedish": "Dat werkt, bedankt!\n\nDen 12 mars 2024 kl. 10:20 skrev Helpdesk <h@example.com>:\n",
    "polish": "Dat werkt, bedankt!\n\nW dniu 12.03.2024 o 10:20 Helpdesk <h@example.com> pisze:\n",
    "portuguese": "Dat werkt, bedankt!\n\nEm 12 de mar. de 2024, às 10:20, Helpdesk escreveu:\n",
    "japanese": "Dat werkt, bedankt!\n\n2024年3月12日(火) 10:20 Helpdesk <h@example.com>:\n> x\n",
    "chinese": "Dat werkt, bedankt!\n\n在 2024年3月12日，10:20，Helpdesk <h@example.com> 写道：\n> x\n",
    "signature_dashes": "Dat werkt, bedankt!\n\n-- \nJan de Vries\nFinanciën\n",
    "trailing_quotes": "Dat werkt, bedankt!\n\n> Probeer de printer opnieuw.\n> Groet\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reply_history_and_signatures_are_cut(name: str) -> None:
    """Each client's quote header, separator or signature ends the new text."""
    assert "Dat werkt, bedankt!" == trim_reply(CASES[name])


def test_sign_off_with_name_is_kept() -> None:
    """'Met vriendelijke groet' and the name below it are the sender's, so they stay."""
    text = "Dat werkt.\n\nMet vriendelijke groet,\nAnke Pieters\n\n> oud bericht\n"
    assert "Dat werkt.\n\nMet vriendelijke groet,\nAnke Pieters" == trim_reply(text)


def test_reply_below_the_quote_is_found() -> None:
    """Bottom-posted replies keep the text written below the quote."""
    text = "Op 12 mrt. 2024 schreef Helpdesk <h@example.com>:\n> Werkt het?\n\nJa, het werkt.\n"
    assert "Ja, het werkt." == trim_reply(text)


def test_interleaved_answers_keep_their_quotes() -> None:
    """An interleaved reply keeps the quoted questions it answers, minus the header line."""
    text = "On Tue, 12 Mar 2024, Helpdesk <h@example.com> wrote:\n> Model?\nHP 400\n> Floor?\n2\n"
    assert "HP 400\n> Floor?\n2" == trim_reply(text)


def test_text_mentioning_wrote_is_not_a_header() -> None:
    """A sentence ending in 'wrote:' without a date or address is text."""
    text = "Here is what my manager wrote:\nplease fix the printer\n"
    assert "Here is what my manager wrote:\nplease fix the printer" == trim_reply(text)


def test_code_fences_protect_delimiters() -> None:
    """Dashes inside a fenced code block are not a signature delimiter."""
    text = "Config:\n```\n--\nkey=value\n```\nThanks"
    assert text == trim_reply(text)


def test_only_quote_is_kept() -> None:
    """A mail that is nothing but a quote keeps it rather than becoming empty."""
    assert "> just this" == trim_reply("> just this\n")
