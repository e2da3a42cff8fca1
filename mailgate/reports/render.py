"""A report (a plain dict from reports/__init__.py) as a table, CSV or an HTML page."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

PAGE = Path(__file__).parent


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def text(report: dict[str, Any]) -> str:
    """The report for a terminal: a few short tables."""
    out: list[str] = []
    period = report["period"]
    scope = f" in queue {period['queue']}" if period["queue"] else ""
    totals = report["totals"]
    out.append(f"Report {period['first_day']} to {period['last_day']}{scope}")
    out.append(
        f"{totals['created']} tickets created, {totals['resolved']} resolved, "
        f"{totals['backlog']} waiting at the end"
    )
    out += ["", "By priority"]
    out += _table(
        ["PRIORITY", "CREATED", "UNANSWERED", "1ST RESPONSE MEDIAN", "P90", "RESOLUTION MEDIAN", "P90"],
        [
            [
                row["priority"],
                row["created"],
                row["unanswered"],
                duration(row["first_response"]["median_seconds"]),
                duration(row["first_response"]["p90_seconds"]),
                duration(row["resolution"]["median_seconds"]),
                duration(row["resolution"]["p90_seconds"]),
            ]
            for row in report["by_priority"]
        ],
    )
    for key, title in (("queue", "By queue"), ("category", "By category")):
        out += ["", title]
        out += _table(
            [key.upper(), "CREATED", "RESOLVED", "BACKLOG"],
            [[row[key], row["created"], row["resolved"], row["backlog"]] for row in report[f"by_{key}"]],
        )
    fcr, csat = report["first_contact_resolution"], report["csat"]
    out += [
        "",
        f"First-contact resolution: {fcr['first_contact']} of {fcr['resolved']} resolved "
        f"({percent(fcr['rate'])})",
        f"Satisfaction: {csat['ratings']} ratings ({percent(csat['response_rate'])} of resolved), "
        f"average {csat['average'] if csat['average'] is not None else '-'} of 5; "
        + ", ".join(f"{score}: {count}" for score, count in csat["distribution"].items()),
        _kb_line(report.get("knowledge_base")),
        "Backlog by age: " + ", ".join(f"{name} {count}" for name, count in report["backlog_age"].items()),
    ]
    out += _sla_text(report["sla"])
    return "\n".join(out) + "\n"


SLA_HEADERS = ["1ST RESPONSE MET", "BREACHED", "SHARE MET", "MEDIAN (BUSINESS)",
               "RESOLUTION MET", "BREACHED", "SHARE MET", "MEDIAN (BUSINESS)"]  # fmt: skip


def _sla_cells(row: dict[str, Any]) -> list[Any]:
    cells: list[Any] = []
    for target in ("first_response", "resolution"):
        part = row[target]
        cells += [part["met"], part["breached"], percent(part["share_met"]),
                  duration(part["median_business_seconds"])]  # fmt: skip
    return cells


def _sla_text(sla: dict[str, Any]) -> list[str]:
    if not sla["configured"]:
        return ["", f"SLA: {sla['note']}"]
    out = ["", f"SLA compliance ({', '.join(sla['levels'])}), tickets created in the period"]
    for key in ("priority", "queue"):
        out += _table([key.upper(), *SLA_HEADERS], [[row[key], *_sla_cells(row)] for row in sla[f"by_{key}"]])
    out += _table(["ALL", *SLA_HEADERS], [["all", *_sla_cells(sla["total"])]])
    return out


def _blank(value: object) -> object:
    return "" if value is None else value


def sla_csv(report: dict[str, Any]) -> str:
    """SLA compliance per priority and per queue: for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["scope", "name", "target", "met", "breached", "share_met", "median_business_seconds"])
    sla = report["sla"]
    for key in ("priority", "queue"):
        for row in sla["by_" + key]:
            for target in ("first_response", "resolution"):
                part = row[target]
                share, middle = part["share_met"], part["median_business_seconds"]
                writer.writerow(
                    [key, row[key], target, part["met"], part["breached"], _blank(share), _blank(middle)]
                )
    return buffer.getvalue()


def _kb_line(kb: dict[str, Any] | None) -> str:
    if not kb:
        return "Knowledge base: -"
    top = ", ".join(f"{row['article']} {row['uses']}" for row in kb["top_articles"][:5]) or "none used"
    with_, without = kb["fcr_with_article"], kb["fcr_without_article"]
    return (
        f"Knowledge base: {kb['self_service_resolved']} resolved by self-service; top articles: {top}; "
        f"first-contact resolution with an article {with_['first_contact']} of {with_['resolved']}, "
        f"without {without['first_contact']} of {without['resolved']}"
    )


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return lines


def daily_csv(report: dict[str, Any]) -> str:
    """Tickets created and resolved per day: for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["day", "queue", "created", "resolved"])
    queue = report["period"]["queue"] or "all"
    for day in report["daily"]:
        writer.writerow([day["day"], queue, day["created"], day["resolved"]])
    return buffer.getvalue()


def html(report: dict[str, Any]) -> str:
    """One self-contained page (no scripts, no external files) with bar charts."""
    environment = Environment(
        loader=FileSystemLoader(PAGE), autoescape=select_autoescape(["html"]), trim_blocks=True
    )
    environment.filters["duration"] = duration
    environment.filters["percent"] = percent
    days = report["daily"]
    peak = max([1, *(max(day["created"], day["resolved"]) for day in days)])
    return environment.get_template("page.html").render(report=report, days=days, peak=peak)
