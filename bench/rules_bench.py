"""How long routing takes with a large rules file.

Builds a 1,000-rule file that looks like a big organisation's (customer
domains, subject keywords, queue addresses, headers, a few regexes and
combinators), then routes sample messages that mostly match *late or not at
all*, the worst case, because every rule before the match is tested.

    .venv/bin/python bench/rules_bench.py [--rules 1000] [--rounds 3000]

Prints the median and 99th percentile per message, and the share spent on
language detection. tests/rules/test_speed.py imports this file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from mailgate.message import Address, Attachment, Envelope, ParsedMessage
from mailgate.rules import RuleContext, RuleSet, load_rules_text
from mailgate.rules.language import detect_language

_QUEUES = ("general", "network", "hardware", "accounts", "facilities")
_WORDS = (
    "printer",
    "vpn",
    "laptop",
    "password",
    "wifi",
    "invoice",
    "badge",
    "monitor",
    "mailbox",
    "license",
    "teams",
    "phone",
    "docking",
    "backup",
    "server",
)


def build_rules(count: int = 1000) -> str:
    """A rules file with ``count`` rules of mixed kinds, none a catch-all."""
    lines = [
        "version: 1",
        "defaults: {queue: general, priority: normal, ack: ack}",
        "business_hours:",
        "  office:",
        "    timezone: Europe/Amsterdam",
        '    days: {mon-fri: "08:30-17:30"}',
        "rules:",
    ]
    for index in range(count):
        queue = _QUEUES[index % len(_QUEUES)]
        word = _WORDS[index % len(_WORDS)]
        kind = index % 8
        lines.append(f"  - name: rule {index}")
        if kind == 0:
            domains = f'["*.customer{index}.com", "customer{index}.nl"]'
            lines.append(f"    if: {{from.domain: {domains}}}")
        elif kind == 1:
            lines.append(f'    if: {{subject: "{word} {index}"}}')
        elif kind == 2:
            lines.append(f'    if: {{recipient: "{word}{index}@example.com"}}')
        elif kind == 3:
            lines.append(f'    if: {{header: {{name: X-Customer-Id, equals: "C{index}"}}}}')
        elif kind == 4:
            lines.append(f'    if: {{subject: {{regex: "^\\\\[ticket-{index}\\\\]"}}}}')
        elif kind == 5:
            lines.append(
                f'    if: {{all: [{{from: "*@dept{index}.example.com"}}, {{body: "{word}-{index}"}}]}}'
            )
        elif kind == 6:
            lines.append(
                f'    if: {{any: [{{to: "team{index}@example.com"}}, {{cc: "team{index}@example.com"}}]}}'
            )
        else:
            lines.append(f'    if: {{from: "boss{index}@example.com", outside_hours: office}}')
        lines.append(f"    then: {{queue: {queue}, tags: [{word}]}}")
    return "\n".join(lines) + "\n"


def _message(
    subject: str,
    sender: str,
    body: str,
    headers: tuple[tuple[str, str], ...] = (),
    attachments: tuple[Attachment, ...] = (),
) -> ParsedMessage:
    return ParsedMessage(
        message_id=f"<{abs(hash(subject))}@bench>",
        in_reply_to=(),
        references=(),
        subject=subject,
        sender=Address(sender),
        to=(Address("helpdesk@example.com"),),
        cc=(Address("alice@example.org"),),
        reply_to=(),
        date=None,
        headers=(("From", sender), ("To", "helpdesk@example.com"), ("Subject", subject), *headers),
        text=body,
        new_text=body,
        html=None,
        attachments=attachments,
        size=1800 + len(body),
    )


def sample_messages() -> list[tuple[ParsedMessage, Envelope, RuleContext]]:
    """Typical helpdesk mail: short, some Dutch, one attachment, no early match."""
    body_en = (
        "Hello, since this morning my laptop cannot connect to the docking station. "
        "I have tried restarting it twice. Could you please have a look? Thanks, Ann\n"
    ) * 3
    body_nl = (
        "Hallo, sinds vanochtend werkt mijn laptop niet meer met het dockingstation. "
        "Ik heb hem al twee keer opnieuw opgestart. Kunnen jullie even kijken? "
        "Alvast bedankt, groeten Jan\n"
    ) * 3
    pdf = Attachment("scan.pdf", "application/pdf", 120_000, "0" * 64)
    messages = [
        _message("Laptop won't dock", "ann@corp.example.net", body_en),
        _message("Laptop doet het niet", "jan@gemeente.example.nl", body_nl, (("X-Customer-Id", "C999999"),)),
        _message("RE: [ticket-99999] printer", "piet@example.org", body_nl, (), (pdf,)),
        _message("Invoice question", "billing@customer998.com", body_en),  # late match
    ]
    envelope = Envelope(
        "ann@corp.example.net", ("helpdesk@example.com",), "smtp", datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    )
    context = RuleContext(our_addresses=frozenset({"helpdesk@example.com"}), now=envelope.received_at)
    return [(message, envelope, context) for message in messages]


def measure(ruleset: RuleSet, rounds: int) -> tuple[float, float]:
    """(median, p99) seconds per decision over ``rounds`` decisions."""
    samples = sample_messages()
    timings: list[float] = []
    clock = time.perf_counter
    for index in range(rounds):
        message, envelope, context = samples[index % len(samples)]
        start = clock()
        ruleset.decide(message, envelope, context)
        timings.append(clock() - start)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    start = time.perf_counter()
    ruleset = load_rules_text(build_rules(args.rules), "bench.yaml")
    load_ms = (time.perf_counter() - start) * 1000
    median, p99 = measure(ruleset, args.rounds)
    text = sample_messages()[1][0].text
    start = time.perf_counter()
    for _ in range(1000):
        detect_language(text)
    detect_us = (time.perf_counter() - start) * 1000
    print(f"rules: {args.rules}, loaded and validated in {load_ms:.0f} ms")
    print(
        f"routing: median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us per message ({args.rounds} decisions)"
    )
    print(f"language detection: {detect_us:.1f} us per message")


if __name__ == "__main__":
    main()
