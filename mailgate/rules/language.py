"""Which language a mail is written in, from its most common little words.

Helpdesk mail is short and informal, so statistical n-gram models trained on
prose gain little over counting function words ("the", "het", "der", "les"),
and they cost milliseconds and megabytes. The lists below hold words that are
frequent in one language and rare in the others; words shared by two of them
("in", "die", "de", "son") are left out on purpose, so every hit is evidence.
"""

from __future__ import annotations

SUPPORTED: tuple[str, ...] = ("en", "nl", "de", "fr", "es", "it", "pt")

_STOP_WORDS: dict[str, str] = {
    "en": """the and is are was were you your have has not this that with for what
        which would could should there their they we our it's i'm don't can't please
        thanks thank hello hi dear regards does did been from about when will just
        can any how why my me of to""",
    "nl": """het een niet ik je jij u uw wij we zijn is was heb hebt heeft hebben
        ook maar nog wel naar voor met dat dit deze bij als dan kan kunnen graag
        alvast bedankt dank groet groeten hallo beste vriendelijke werkt mijn
        onze geen wat waarom hoe wanneer moet zou zal even vandaag morgen gisteren
        er op aan uit over""",
    "de": """der das ist nicht ich du sie wir ein eine einen und mit für auf den
        dem des sich auch noch nur bitte danke vielen gruß grüße hallo sehr
        geehrte funktioniert mein meine unser kein keine was warum wie wann
        muss würde wird heute morgen gestern gibt habe haben hat oder aber""",
    "fr": """le la les est et je vous nous pas une un des du avec pour sur dans
        que qui mon ma mes notre ne plus merci bonjour cordialement madame
        monsieur fonctionne pourquoi comment quand aujourd'hui hier demain
        c'est j'ai il elle sont avons avez peut être très""",
    "es": """el los las es y yo usted nosotros una un con por para que del al
        mi mis nuestro muy gracias hola saludos estimado estimada funciona
        porque cómo cuándo hoy ayer mañana tengo tiene tenemos está están
        pero también puede hay esto esta""",
    "it": """il lo gli è e io noi una con per che della delle degli non mio mia
        nostro molto grazie ciao buongiorno saluti cordiali gentile funziona
        perché come quando oggi ieri domani ho ha abbiamo sono anche può c'è
        questo questa""",
    "pt": """o os é eu você nós uma um com por para que do da dos das não meu
        minha nosso muito obrigado obrigada olá bom dia atenciosamente prezado
        funciona porquê como quando hoje ontem amanhã tenho tem temos está
        estão mas também pode há isso isto""",
}


def _build_index() -> dict[str, str]:
    """Map each word to its one language, dropping words claimed by two."""
    seen: dict[str, set[str]] = {}
    for language, words in _STOP_WORDS.items():
        for word in words.split():
            seen.setdefault(word, set()).add(language)
    return {word: next(iter(langs)) for word, langs in seen.items() if len(langs) == 1}


_INDEX = _build_index()
# Punctuation and digits become spaces, then str.split() cuts the words: a
# third of the time of a Unicode-aware word regex, which matters because
# every message is detected. Apostrophes stay ("c'est", "it's").
_SEPARATORS = str.maketrans(
    dict.fromkeys(
        # Curly quotes and dashes are spelled out so they cannot be mistaken.
        '.,;:!?()[]{}<>"«»¿¡“”\u2018\u2019\u2013\u2014/\\*#…|=+_~^%$&@0123456789',
        " ",
    )
)
# Enough text to decide; more only costs time on long threads and logs.
_SAMPLE = 800
# Below this many hits, or without a clear lead, we would be guessing.
_MIN_HITS = 2
_MIN_SHARE = 0.5


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, or None when unsure."""
    counts: dict[str, int] = {}
    index = _INDEX
    for word in text[:_SAMPLE].lower().translate(_SEPARATORS).split():
        language = index.get(word)
        if language is not None:
            counts[language] = counts.get(language, 0) + 1
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    best, hits = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    if hits < _MIN_HITS or hits <= runner_up or hits < _MIN_SHARE * sum(counts.values()):
        return None
    return best
