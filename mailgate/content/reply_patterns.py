"""What quoted history and signatures look like, line by line, in many languages.

Each pattern is matched against one line with leading quote marks, bold
markers and whitespace removed. Written from what mail clients produce
(Outlook, Gmail, Apple Mail, Thunderbird, phones) in the languages our
requesters write.
"""

# ruff: noqa: RUF001  # Cyrillic, Turkish and CJK letters and colons here are on purpose
from __future__ import annotations

import re

_I = re.IGNORECASE

# "On <date>, <name> wrote:" and its translations end in a verb and a colon
# (after the name in Dutch "schreef X:", German "schrieb am <date>:" and
# Norwegian "skrev X:"). The verbs:
_VERBS = (
    r"wrote|writes|schrieb|schreef|het volgende geschreven|a écrit|a ecrit|escribió|escribio"
    r"|ha scritto|scrisse|escreveu|napisał\(a\)|napisała|napisał|napisal|pisze|написал\(а\)|написала"
    r"|написал|пише|писал|skrev|kirjoitti|írta|napsal|yazdı|写道|寫道|のメッセージ"
)
QUOTE_HEADER = re.compile(rf"(?:^|\s)(?:{_VERBS})(?:\s.{{0,120}})?\s*[:：]\s*$|(?:^|\s)wrote\s*-+\s*$", _I)

# The same verbs closing a header that lacks its colon: "On <date>, <name> <addr> wrote".
QUOTE_HEADER_NO_COLON = re.compile(rf"(?:^|\s)(?:{_VERBS}|sent)\s*$", _I)

# Android and Zoho: "---- John Smith wrote ----".
DASHED_WROTE = re.compile(r"^-{2,}\s*\S.{0,100}\s(?:wrote|написал|schrieb|a écrit)\s*-{2,}$", _I)

# A date or a time of day, the structural mark of a quote header in any
# language: "15:19", "17.50", "2017", "30.09.2017", "04/19/2011".
DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:\d{1,2}[:.]\d{2}(?!\d)|(?:19|20)\d{2}(?!\d)|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})"
)

# Reply text and an English "On <date> ... wrote:" header run together on
# one line ("reply--- On Wed, Apr 4, 2012 ... wrote:"), as some clients join them.
SHARED_LINE_HEADER = re.compile(r"^(?P<reply>.*?[^\s-])\s*(?P<header>-*\s*On\s.{8,300}\swrote:)\s*$")

# Words that open a quote header, for headers wrapped over two or three lines.
QUOTE_HEADER_LEAD = re.compile(r"^(?:-+\s*)?(?:on|op|am|le|el|il|em|w dniu|dnia|den|på|at|\d{1,4}[-/. ])", _I)

# Gmail's localised form starts with a numeric date and names the sender:
# "2013/7/20 sam <info@example.com>" or "2016-10-24 15:36 GMT+02:00 Foo <x@y>:".
DATE_HEADER = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b(?:.{0,160}@.{0,80}"
    r"|\s+\d{1,2}:\d{2}(?::\d{2})?\s+(?:GMT|UTC)[+-]\d{1,2}(?::?\d{2})?\s.{1,120})$"
    # Japanese and Chinese Gmail: "2024年3月12日(火) 10:20 Name <a@b>:".
    r"|^\d{4}年\d{1,2}月\d{1,2}日.{0,160}(?:@.{0,80}|[:：])$"
)
# A line that starts a quote header of its own with a word, not a number.
WORD_LEAD = re.compile(r"^(?:on|op|am|le|el|il|em|w dniu|dnia|den|på|at)\s", re.IGNORECASE)

# Separator lines that Outlook, Thunderbird and webmails put above the
# original message or a forward.
ORIGINAL_MESSAGE = re.compile(
    r"^-*\s*(?:original message|originalnachricht|ursprüngliche nachricht|oorspronkelijk bericht"
    r"|origineel bericht|oorspronkelijk e-mailbericht|message d'origine|message original"
    r"|mensaje original|messaggio originale|mensagem original|ursprungligt meddelande"
    r"|opprinnelig melding|oprindelig meddelelse|alkuperäinen viesti|wiadomość oryginalna"
    r"|oryginalna wiadomość|исходное сообщение|původní zpráva|原始邮件|原始郵件|元のメッセージ"
    r"|forwarded message|doorgestuurd bericht|weitergeleitete nachricht|message transféré"
    r"|mensaje reenviado|messaggio inoltrato|mensagem encaminhada|vidarebefordrat meddelande"
    r"|videresendt melding|przekazana wiadomość|пересылаемое сообщение)\s*-*\s*:?$",
    _I,
)
# Any other separator framed by dashes that names a message, in a language
# the list above lacks: "-------- Oprindelig besked --------", "-----Reply Message-----".
FRAMED_MESSAGE = re.compile(
    r"^-{3,}\s*[^-]{0,30}(?:message|nachricht|bericht|besked|meddelelse|meddelande|melding|mensaje|mensagem"
    r"|messaggio|wiadomość|сообщение|повідомлення|zpráva|správa|viesti|üzenet|mesaj|poruka|sporočilo"
    r"|thư|메시지|メッセージ|邮件|郵件)[^-]{0,30}\s*-{3,}\s*:?$",
    _I,
)
FORWARD_INTRO = re.compile(
    r"^(?:begin forwarded message|anfang der weitergeleiteten nachricht|begin doorgestuurd bericht"
    r"|début du message réexpédié|inicio del mensaje reenviado|inizio messaggio inoltrato"
    r"|início da mensagem reencaminhada|början på vidarebefordrat meddelande)\s*:$",
    _I,
)

# Outlook's header block: a From line followed within a few lines by
# Sent/Date/To/Subject lines, in the client's language.
HEADER_FROM = re.compile(
    r"^(?:from|van|von|de|da|från|fra|od|от|feladó|lähettäjä|发件人|寄件者|差出人)\s*[:：]", _I
)
_FIELD_NAMES = (
    r"sent|date|datum|verzonden|gesendet|envoyé|enviado|enviada|data|skickat|sendt|wysłano"
    r"|отправлено|дата|dato|päivämäärä|lähetetty|发送时间|發送時間|送信日時|to|aan|an|à|a|para|till|til|do|кому|收件人|宛先"
    r"|subject|onderwerp|betreff|objet|asunto|oggetto|assunto|ämne|emne|temat|тема|主题|主旨|件名"
    r"|reply-to|risposta|cc|kopie|copie"
)
HEADER_FIELD = re.compile(rf"^(?:{_FIELD_NAMES})\s*[:：]", _I)
# The same fields run together on the From line, as HTML turned into text
# gives them: "From: bob@example.com Date: Thu, 24 Mar 2016 08:07".
HEADER_FIELD_INLINE = re.compile(rf"\s(?:{_FIELD_NAMES})\s*[:：]\s", _I)

# Device and app signatures ("Sent from my iPhone") in many languages.
DEVICE_SIGNATURE = re.compile(
    r"^[(<]*(?:sent (?:from|via|with|using|on)|envoyé (?:de|depuis|avec|à partir)"
    r"|verzonden (?:vanaf|met|van)|verstuurd (?:vanaf|met|van)|von meinem|gesendet (?:von|mit)"
    r"|enviado (?:desde|do|de|con|com)|inviato da|skickat från|sendt fra|wysłane z"
    r"|отправлено с|get outlook for|diese nachricht wurde von meinem|sent by"
    r"|從我的|发自我的|來自我的)\b.{0,90}$"
    r"|^.{0,40}(?:から送信|傳送|发送)$",
    _I,
)

# A comma or semicolon followed by more words: the line is a sentence...
CLAUSE_BREAK = re.compile(r"[,;]\s+\w")
# ...unless the words only excuse the phone's brevity ("Sent from my iPhone,
# please excuse typos").
SIGNATURE_EXCUSE = re.compile(
    r"[,;]\s+(?:so\s+)?(?:please|pls|excuse|sorry|apologies|forgive|typos|brevity|excusez|désolé"
    r"|excuses|sorry voor|entschuldig|bitte|scusate|perdona|disculpa)\b",
    _I,
)

# A line of one repeated punctuation character ("--", "______", "*****"),
# or Gmail's invisible tracking character U+1427 on its own.
DELIMITER = re.compile(r"^\s*(?:([-_=*#~+])\1+|ᐧ)\s*$")
SIGNATURE_DASHES = re.compile(r"^-- ?$")
INITIALS_QUOTE = re.compile(r"^\s*[A-Za-z]{1,12}>")
# "Label: value" with a short label, the shape of a header field in any language.
LABELLED_FIELD = re.compile(r"^[^\W\d][\w .-]{0,24}[:：]\s*\S")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
CODE_FENCE = re.compile(r"^\s*(?:```|~~~)")
