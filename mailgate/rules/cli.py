"""``mailgate rules check`` and ``mailgate rules test``, as plain functions.

The click wiring lives with the rest of the CLI; these functions take paths
and an output stream and return the exit code, so tests call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mailgate.ingest.files import reverse_path
from mailgate.message import Envelope, ParsedMessage
from mailgate.rules.engine import RuleSet, default_ruleset
from mailgate.rules.expect import FIELDS, apply_given, load_expectation, mismatches, sidecar
from mailgate.rules.loader import load_rules
from mailgate.rules.model import Decision, RuleContext, RulesError

ContextFactory = Callable[[ParsedMessage, Envelope], RuleContext]
# The guard stage, when the caller has one: (message, envelope, raw) ->
# (kind, may_auto_reply, reasons). It decides whether an acknowledgement
# can go out at all, whatever the rules chose.
GuardCheck = Callable[[ParsedMessage, Envelope, bytes], tuple[str, bool, tuple[str, ...]]]
# The requester policy, when the caller has one: (message, envelope,
# decision) -> the choice as JSON-ready data (tickets/requester.py).
RequesterCheck = Callable[[ParsedMessage, Envelope, Decision], dict[str, object]]
# The knowledge base, when one is configured: (message, decision) -> the
# articles the acknowledgement would offer and why (mailgate/kb/mailflow.py).
KbCheck = Callable[[ParsedMessage, Decision], dict[str, object]]


def run_check(
    rules_path: Path,
    known_queues: set[str] | None,
    known_templates: set[str] | None,
    out: TextIO,
    known_articles: set[str] | None = None,
) -> int:
    """Validate a rules file: 0 when good, 1 with one problem per line."""
    try:
        ruleset = load_rules(rules_path, known_queues, known_templates, known_articles)
    except RulesError as error:
        for problem in error.problems:
            print(problem, file=out)
        return 1
    levels = f", service levels: {', '.join(ruleset.service_levels)}" if ruleset.service_levels else ""
    print(f"{rules_path}: OK, {len(ruleset.rules)} rules{levels}", file=out)
    return 0


def envelope_for_file(message: ParsedMessage, received_at: datetime | None = None) -> Envelope:
    """The envelope a saved mail most likely had.

    A saved .eml has no SMTP envelope; Postfix records the envelope recipient
    in Delivered-To / X-Original-To, and the Date header is the best guess at
    arrival, which keeps business-hours rules stable in regression runs.
    """
    recipients = tuple(
        value.strip().lower()
        for name in ("x-original-to", "delivered-to")
        for value in message.header_all(name)
        if "@" in value
    )
    # The Return-Path a delivery agent wrote, else unknown (not null: a
    # saved mail without one is no bounce; the guard reads From instead).
    recorded = message.header("Return-Path")
    sender = None if recorded is None else reverse_path(recorded.lower())
    arrival = received_at or message.date or datetime.now(UTC)
    if arrival.tzinfo is None:
        arrival = arrival.replace(tzinfo=UTC)
    return Envelope(sender, tuple(dict.fromkeys(recipients)), "import", arrival)


def _mail_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.eml")) if path.is_dir() else [path])
    return found


def run_test(
    rules_path: Path | None,
    mail_paths: list[Path],
    as_json: bool,
    context_factory: ContextFactory,
    out: TextIO,
    guard_check: GuardCheck | None = None,
    *,
    language: str = "en",
    requester_check: RequesterCheck | None = None,
    kb_check: KbCheck | None = None,
) -> int:
    """Show what the rules would do with saved mails; 1 on any problem.

    ``language`` is the helpdesk's, for the built-in rules without a file.
    """
    from mailgate.parse import parse  # Imported late: the parse stage is heavy.

    try:
        ruleset = load_rules(rules_path) if rules_path is not None else default_ruleset(language=language)
    except RulesError as error:
        for problem in error.problems:
            print(problem, file=out)
        return 1
    files = _mail_files(mail_paths)
    if not files:
        print("no mail files found (a folder is searched for *.eml)", file=out)
        return 1
    status = 0
    results: list[Result] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as error:
            print(f"{path}: cannot read: {error.strerror}", file=out)
            status = 1
            continue
        result = _route(ruleset, path, parse(raw), context_factory)
        if guard_check is not None:
            result = replace(
                result, guard=guard_check(result.message, envelope_for_file(result.message), raw)
            )
        if requester_check is not None and result.decision.action == "accept" and not _is_reply(result):
            envelope = envelope_for_file(result.message)
            result = replace(result, requester=requester_check(result.message, envelope, result.decision))
        if kb_check is not None and result.decision.action == "accept" and not _is_reply(result):
            result = replace(result, kb=kb_check(result.message, result.decision))
        results.append(result)
    if any(result.failures for result in results):
        status = 1
    detailed = len(mail_paths) == 1 and not mail_paths[0].is_dir()
    if as_json:
        payload = [result.as_dict() for result in results]
        json.dump(payload[0] if detailed and payload else payload, out, indent=2)
        out.write("\n")
    elif detailed and results:
        _print_detail(ruleset, results[0], out)
    else:
        _print_table(results, out)
    return status


@dataclass(frozen=True)
class Result:
    """One mail's decision, and how it compares with its .expect.yaml if any."""

    path: Path
    message: ParsedMessage
    decision: Decision
    checked: bool
    failures: tuple[str, ...]
    guard: tuple[str, bool, tuple[str, ...]] | None = None
    requester: dict[str, object] | None = None
    is_reply: bool = False
    # The level and due moments the mail would get (docs/sla.md), or None.
    service_level: dict[str, object] | None = None
    # The knowledge-base articles the acknowledgement would offer, or None.
    kb: dict[str, object] | None = None

    @property
    def acknowledgement(self) -> tuple[str | None, str]:
        """The template that would go out (or None) and why."""
        if self.decision.ack_template is None or self.decision.action != "accept":
            return None, self.decision.ack_reason
        requester = self.requester or {}
        if requester.get("forwarded_by") and not self.decision.acknowledge_forwards:
            return None, "defaults.acknowledge_forwards is false"
        if requester.get("unmailable"):
            return None, f"the requester cannot be mailed: {requester['unmailable']}"
        # The guard's noreply verdict is about From; another requester may be answered.
        answers_other = requester.get("source") in ("reply_to", "sender")
        refused = self.guard is not None and not self.guard[1]
        if self.guard is not None and refused and not (answers_other and self.guard[0] == "noreply"):
            kind, _, reasons = self.guard
            return None, f"the guard says {kind}: {'; '.join(reasons)}"
        return self.decision.ack_template, self.decision.ack_reason

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"file": str(self.path), **self.decision.as_dict()}
        template, why = self.acknowledgement
        data["acknowledgement"] = {"template": template, "reason": why}
        if self.guard is not None:
            data["guard"] = {
                "kind": self.guard[0],
                "may_auto_reply": self.guard[1],
                "reasons": list(self.guard[2]),
            }
        if self.requester is not None:
            data["requester"] = self.requester
        data["service_level"] = self.service_level
        if self.kb is not None:
            data["kb_suggestions"] = self.kb
        if self.checked:
            data["expectation_failures"] = list(self.failures)
        return data


def _route(ruleset: RuleSet, path: Path, message: ParsedMessage, context_factory: ContextFactory) -> Result:
    envelope = envelope_for_file(message)
    context = context_factory(message, envelope)
    expectation_path = sidecar(path)
    if not expectation_path.exists():
        decision = ruleset.decide(message, envelope, context)
        return Result(
            path,
            message,
            decision,
            False,
            (),
            is_reply=context.is_reply,
            service_level=_level(ruleset, decision, envelope),
        )
    expectation = load_expectation(expectation_path)
    context = apply_given(context, expectation.given)
    decision = ruleset.decide(message, envelope, context)
    failures = tuple(mismatches(decision, expectation))
    return Result(
        path,
        message,
        decision,
        True,
        failures,
        is_reply=context.is_reply,
        service_level=_level(ruleset, decision, envelope),
    )


def _is_reply(result: Result) -> bool:
    """Replies keep their ticket's requester; the policy is for new tickets only."""
    return result.is_reply


def _level(ruleset: RuleSet, decision: Decision, envelope: Envelope) -> dict[str, object] | None:
    from mailgate.sla.promise import preview

    return preview(
        ruleset.service_levels, decision.sla, decision.priority, envelope.received_at, decision.language
    )


def _print_detail(ruleset: RuleSet, result: Result, out: TextIO) -> None:
    path, message, decision = result.path, result.message, result.decision
    sender = message.sender.email if message.sender is not None else "(no sender)"
    print(f"mail:    {path}", file=out)
    print(f"from:    {sender}", file=out)
    print(f"subject: {message.subject}", file=out)
    print(f"rules:   {ruleset.source} ({len(ruleset.rules)} rules)", file=out)
    print("", file=out)
    width = max((len(entry.name) for entry in decision.trace), default=0)
    for entry in decision.trace:
        verdict = "MATCH" if entry.matched else "no   "
        print(f"  line {entry.line:<4} {entry.name:<{width}}  {verdict}  {entry.reason}", file=out)
    if not decision.trace:
        print("  (no rules evaluated)", file=out)
    print("", file=out)
    fields = decision.as_dict()
    # The fields an expectation file can name; the acknowledgement is shown
    # below, and the matched rules are the trace above.
    for name in (field for field in FIELDS if field not in ("ack", "matched", "changed")):
        print(f"  {name:<16} {_show(fields[name])}", file=out)
    if result.guard is not None:
        kind, _may_reply, reasons = result.guard
        print(f"\nguard:           {kind}" + (f" ({'; '.join(reasons)})" if reasons else ""), file=out)
    if result.requester is not None:
        _print_requester(result.requester, out)
    if result.service_level is not None:
        _print_level(result.service_level, out)
    template, why = result.acknowledgement
    ack = f'template "{template}"' if template else "none"
    to = f" to {result.requester['address']}" if template and result.requester is not None else ""
    print(f"{'' if result.guard is not None else chr(10)}acknowledgement: {ack}{to} ({why})", file=out)
    if result.kb is not None:
        _print_kb(result.kb, template is not None, out)
    elif decision.kb_by:
        said = "on" if decision.kb_suggest else "off" if decision.kb_suggest is False else "as configured"
        forced = ", ".join(decision.kb_articles or ()) or "none forced"
        print(f"kb suggestions:  {said}, {forced} ({decision.kb_by}; no knowledge base configured)", file=out)
    print(f"reason: {decision.reason}", file=out)
    if result.checked:
        print(
            f"\nexpected ({sidecar(path).name}): "
            + ("all as expected" if not result.failures else "DIFFERENT"),
            file=out,
        )
        for failure in result.failures:
            print(f"  {failure}", file=out)


def _print_requester(requester: dict[str, object], out: TextIO) -> None:
    """Who the ticket would be for, and each step of the choice."""
    address = requester["address"] or "(nobody)"
    print(f"requester:       {address} (source: {requester['source']})", file=out)
    reasons = requester["reasons"]
    for reason in reasons if isinstance(reasons, list) else ():
        print(f"                 - {reason}", file=out)
    if requester["unmailable"]:
        print(f"                 CANNOT BE MAILED: {requester['unmailable']}", file=out)


def _print_kb(kb: dict[str, object], acknowledged: bool, out: TextIO) -> None:
    """The articles the acknowledgement would offer (docs/kb.md), and why."""
    articles = kb["articles"]
    listed = articles if isinstance(articles, list) else []
    shown = ", ".join(f"{a['id']} ({a['title']})" for a in listed if isinstance(a, dict)) or "none"
    note = "" if acknowledged else "; no acknowledgement goes out, so none is sent"
    print(f"kb suggestions:  {shown} ({kb['reason']}{note})", file=out)


def _print_level(level: dict[str, object], out: TextIO) -> None:
    counted = "business hours" if level["business_hours"] else "24x7"
    print(f"\nservice level:   {level['level']} ({counted}, {level['timezone']})", file=out)
    for name in ("first_response", "resolution"):
        target = level[name]
        if isinstance(target, dict):
            label = name.replace("_", " ") + ":"
            print(f"  {label:<15} {target['target']}, due {target['due']} ({target['due_iso']})", file=out)


def _show(value: object) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _print_table(results: list[Result], out: TextIO) -> None:
    header = ("file", "action", "queue", "priority", "category", "ack", "expected", "matched rules")
    rows = [header] + [
        (
            result.path.name,
            result.decision.action,
            result.decision.queue,
            result.decision.priority,
            result.decision.category or "-",
            result.acknowledgement[0] or "-",
            ("FAIL" if result.failures else "ok") if result.checked else "-",
            ", ".join(result.decision.matched_rules) or "-",
        )
        for result in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    for result in results:
        for failure in result.failures:
            print(f"{result.path}: {failure}", file=out)
