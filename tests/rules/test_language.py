"""Stop-word language detection for short helpdesk mails."""

from __future__ import annotations

import pytest

from mailgate.rules.language import detect_language

SAMPLES = {
    "en": "Hello, my printer has not been working since this morning. Could you please help?",
    "nl": "Goedemorgen, mijn printer werkt sinds vanochtend niet meer. Kunnen jullie helpen?",
    "de": "Guten Morgen, mein Drucker funktioniert seit heute früh nicht. Können Sie helfen?",
    "fr": "Bonjour, mon imprimante ne fonctionne plus depuis ce matin. Merci de votre aide.",
    "es": "Hola, mi impresora no funciona desde esta mañana. ¿Pueden ayudarme? Gracias.",
    "it": "Buongiorno, la mia stampante non funziona da stamattina. Grazie per l'aiuto.",
    "pt": "Bom dia, a minha impressora não funciona desde hoje. Obrigado pela ajuda.",
}


@pytest.mark.parametrize(("language", "text"), SAMPLES.items())
def test_detects_each_supported_language(language: str, text: str) -> None:
    """One or two sentences are enough to tell the language."""
    assert language == detect_language(text)


@pytest.mark.parametrize("text", ["thanks!", "", "VPN down", "12345 ---", "Printer kapot"])
def test_too_little_text_is_unknown(text: str) -> None:
    """A word or two is not enough to guess."""
    assert None is detect_language(text)


def test_mixed_text_goes_with_the_majority() -> None:
    """A Dutch mail with an English error message quoted is still Dutch."""
    text = (
        "Hallo, ik krijg steeds deze melding als ik wil inloggen: 'The password is "
        "incorrect'. Wat moet ik doen? Alvast bedankt, groeten Piet"
    )
    assert "nl" == detect_language(text)
