"""Words for search: lowercase, split, drop stop words, stem per language.

Snowball stemmers (snowballstemmer, pure Python, BSD) for English and Dutch,
so "printers"/"printing" and "wachtwoorden"/"wachtwoord" meet. A stem is
remembered once computed: the same few thousand words recur in every mail,
and the cache is what keeps a suggestion under a millisecond or two.
"""

from __future__ import annotations

import re

import snowballstemmer

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Short lists of function words that say nothing about a problem (our own
# selection). Words such as "not", "cannot", "kan", "niet" are kept out of
# these lists on purpose: "cannot connect" is the problem.
_EN_STOP = """a an the and or but if of to in on at by for from with about as into is are was were be been
being am do does did have has had having i me my mine we our you your he she it its they them their
this that these those there here what which who whom when where why how all any both each few more
most other some such only own same so than too very s t can will just should now please hi hello
dear thanks thank regards best kind would could also get got since again still really one
help helpdesk team know let us morning afternoon"""
_NL_STOP = """de het een en of maar als dan van voor naar in op aan bij met door over uit om tot te is zijn
was waren ben bent wordt worden werd heb hebt heeft hebben had ik mij me mijn wij we ons onze jij je
jou jouw u uw hij zij ze het hun hen dit dat deze die daar hier wat welke wie waar waarom hoe
alle ook nog al er zo zeer erg even graag groet groeten vriendelijke bedankt dank alvast hallo
beste goedemorgen goedemiddag hoi help helpdesk iemand weten sinds vandaag gisteren"""
STOP_WORDS = {"en": frozenset(_EN_STOP.split()), "nl": frozenset(_NL_STOP.split())}
_STEMMERS = {"en": snowballstemmer.stemmer("english"), "nl": snowballstemmer.stemmer("dutch")}
_CACHE: dict[str, dict[str, str]] = {lang: {} for lang in _STEMMERS}
_CACHE_LIMIT = 200_000


def language_of(language: str | None) -> str:
    """The stemming language for a ticket's language (English when we have none for it)."""
    return language if language in _STEMMERS else "en"


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def terms(text: str, language: str) -> list[str]:
    """The stemmed, meaningful words of ``text``, in order (repeats kept)."""
    lang = language_of(language)
    stop = STOP_WORDS[lang]
    cache = _CACHE[lang]
    stemmer = _STEMMERS[lang]
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in stop or (len(word) < 2 and not word.isdigit()):
            continue
        stem = cache.get(word)
        if stem is None:
            stem = stemmer.stemWord(word)
            if len(cache) < _CACHE_LIMIT:
                cache[word] = stem
        found.append(stem)
    return found
