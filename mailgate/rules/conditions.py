"""Conditions: small named predicates over a ``MessageView``.

Each condition answers twice. ``test`` is the hot path, a bare bool, called
for every rule on every message. ``explain`` is the cold path, a sentence for
``mailgate rules test`` and the debug log, and says which value decided, e.g.
``from.domain glob "*.example.org" did not match "acme.com"``. Both read the
same cached view, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

from mailgate.rules.hours import BusinessHours
from mailgate.rules.matchers import TextMatcher, quote
from mailgate.rules.view import MessageView

ViewTest = Callable[[MessageView], bool]


class Condition:
    """A predicate on a message; subclasses fill in ``test`` and ``explain``."""

    __slots__ = ()

    def test(self, view: MessageView) -> bool:
        raise NotImplementedError

    def fast(self) -> ViewTest:
        """The same test as one prebuilt closure, for the hot loop."""
        return self.test

    def explain(self, view: MessageView) -> str:
        raise NotImplementedError


def _verdict(ok: bool) -> str:
    return "matched" if ok else "did not match"


def _values(values: Sequence[str]) -> str:
    if not values:
        return "(none)"
    return ", ".join(quote(value) for value in values)


class Always(Condition):
    """A rule without ``if:``: it matches every message it applies to."""

    __slots__ = ()

    def test(self, view: MessageView) -> bool:
        return True

    def fast(self) -> ViewTest:
        return lambda view: True

    def explain(self, view: MessageView) -> str:
        return "no conditions: matches every message"


class FieldMatch(Condition):
    """One text field (sender, subject, body...) against a ``TextMatcher``."""

    __slots__ = ("_test", "attr", "key", "matcher", "source")

    def __init__(self, key: str, attr: str, lower_attr: str, matcher: TextMatcher) -> None:
        self.key, self.attr, self.matcher = key, attr, matcher
        # Case-insensitive matchers read the view's lower-cased copy.
        self.source = attr if matcher.case_sensitive else lower_attr
        self._test = matcher.over(attrgetter(self.source))

    def test(self, view: MessageView) -> bool:
        return self._test(view)

    def fast(self) -> ViewTest:
        return self._test

    def explain(self, view: MessageView) -> str:
        value = getattr(view, self.attr)
        return f"{self.key} {self.matcher.describe()} {_verdict(self.test(view))} {quote(value)}"


class AnyValueMatch(Condition):
    """A list of values (To, Cc, our recipients, plus tags): any one may match."""

    __slots__ = ("_test", "attr", "key", "matcher")

    def __init__(self, key: str, attr: str, matcher: TextMatcher) -> None:
        # These values (addresses, plus tags) are lower-cased by the view.
        self.key, self.attr, self.matcher = key, attr, matcher
        self._test = matcher.over_any(attrgetter(attr))

    def test(self, view: MessageView) -> bool:
        return self._test(view)

    def fast(self) -> ViewTest:
        return self._test

    def explain(self, view: MessageView) -> str:
        values: tuple[str, ...] = getattr(view, self.attr)
        hit = self.matcher.first_match(values)
        if hit is not None:
            return f"{self.key} {self.matcher.describe()} matched {quote(hit)}"
        return f"{self.key} {self.matcher.describe()} did not match {_values(values)}"


class HeaderMatch(Condition):
    """A header by name: present or absent, or any of its values matching."""

    __slots__ = ("_test", "exists", "matcher", "name")

    def __init__(self, name: str, exists: bool | None, matcher: TextMatcher | None) -> None:
        self.name, self.exists, self.matcher = name, exists, matcher
        self._test = self._build()

    def test(self, view: MessageView) -> bool:
        return self._test(view)

    def fast(self) -> ViewTest:
        return self._test

    def _build(self) -> ViewTest:
        key = self.name.lower()
        if self.matcher is None:
            exists = self.exists
            return lambda view: (key in view.headers) == exists
        source = "headers" if self.matcher.case_sensitive else "headers_lower"
        return self.matcher.over_any(lambda view: getattr(view, source).get(key, ()))

    def explain(self, view: MessageView) -> str:
        values = view.headers.get(self.name.lower(), [])
        ok = self.test(view)
        if self.matcher is None:
            wanted = "present" if self.exists else "absent"
            actual = "present" if values else "absent"
            return f"header {self.name} must be {wanted}: it is {actual}"
        shown = _values(values) if values else "(header absent)"
        return f"header {self.name} {self.matcher.describe()} {_verdict(ok)} {shown}"


class AttachmentMatch(Condition):
    """Attachments (not inline parts): any at all, none, or one by name/type."""

    __slots__ = ("name", "present", "type")

    def __init__(
        self, present: bool, name: TextMatcher | None = None, type: TextMatcher | None = None
    ) -> None:
        self.present, self.name, self.type = present, name, type

    def _hits(self, view: MessageView) -> list[str]:
        return [
            f"{part.filename or '(unnamed)'} ({part.content_type})"
            for part in view.attachments
            if (self.name is None or self.name.matches(part.filename))
            and (self.type is None or self.type.matches(part.content_type.lower()))
        ]

    def test(self, view: MessageView) -> bool:
        if self.name is None and self.type is None:
            return bool(view.attachments) == self.present
        return bool(self._hits(view)) == self.present

    def explain(self, view: MessageView) -> str:
        wanted = (
            " and ".join(
                f"{label} {matcher.describe()}"
                for label, matcher in (("name", self.name), ("type", self.type))
                if matcher is not None
            )
            or "any"
        )
        hits = self._hits(view)
        found = ", ".join(hits) if hits else "none"
        polarity = "" if self.present else "no "
        return f"attachment: {polarity}{wanted}: found {found}: {_verdict(self.test(view))}"


class SizeMatch(Condition):
    """The raw message size in bytes, above and/or below a bound."""

    __slots__ = ("over", "under")

    def __init__(self, over: int | None, under: int | None) -> None:
        self.over, self.under = over, under

    def test(self, view: MessageView) -> bool:
        size = view.message.size
        return (self.over is None or size > self.over) and (self.under is None or size < self.under)

    def explain(self, view: MessageView) -> str:
        bounds = " and ".join(
            f"{word} {bound:,} bytes"
            for word, bound in (("over", self.over), ("under", self.under))
            if bound is not None
        )
        return f"size {bounds} {_verdict(self.test(view))} {view.message.size:,} bytes"


class LanguageMatch(Condition):
    """The message's language, as given by the caller or detected."""

    __slots__ = ("languages",)

    def __init__(self, languages: frozenset[str]) -> None:
        self.languages = languages

    def test(self, view: MessageView) -> bool:
        return view.language in self.languages

    def explain(self, view: MessageView) -> str:
        shown = ", ".join(sorted(self.languages))
        found = view.language or "unknown (too little text to tell)"
        return f"language in {shown} {_verdict(self.test(view))} {found}"


class AuthMatch(Condition):
    """Trusted Authentication-Results: every listed method has a wanted result."""

    __slots__ = ("wanted",)

    def __init__(self, wanted: dict[str, frozenset[str]]) -> None:
        self.wanted = wanted

    def _result(self, view: MessageView, method: str) -> str:
        results = view.auth.get(method, ())
        # A message may carry several DKIM signatures; one good one is enough.
        for result in results:
            if result.result == "pass":
                return "pass"
        return results[0].result if results else "none"

    def test(self, view: MessageView) -> bool:
        return all(self._result(view, method) in ok for method, ok in self.wanted.items())

    def explain(self, view: MessageView) -> str:
        parts = []
        for method, ok in self.wanted.items():
            actual = self._result(view, method)
            origin = "" if view.auth.get(method) else " (no trusted result)"
            wanted = "|".join(sorted(ok))
            parts.append(f"{method}={actual}{origin} {_verdict(actual in ok)} {wanted}")
        return "auth: " + ", ".join(parts)


class HoursMatch(Condition):
    """Arrival time within (or outside) a named business-hours schedule."""

    __slots__ = ("hours", "within")

    def __init__(self, hours: BusinessHours, within: bool) -> None:
        self.hours, self.within = hours, within

    def test(self, view: MessageView) -> bool:
        return self.hours.contains(view.now) == self.within

    def explain(self, view: MessageView) -> str:
        inside = self.hours.contains(view.now)
        where = "within" if inside else "outside"
        key = "within_hours" if self.within else "outside_hours"
        return (
            f"{key} {self.hours.name} {_verdict(self.test(view))}: "
            f"{self.hours.describe(view.now)} is {where} {self.hours.name}"
        )


class ReplyMatch(Condition):
    """New ticket or reply to an existing one."""

    __slots__ = ("reply",)

    def __init__(self, reply: bool) -> None:
        self.reply = reply

    def test(self, view: MessageView) -> bool:
        return view.context.is_reply == self.reply

    def explain(self, view: MessageView) -> str:
        actual = "a reply" if view.context.is_reply else "a new message"
        return f"reply: {str(self.reply).lower()} {_verdict(self.test(view))}: it is {actual}"


class StatusMatch(Condition):
    """The status of the ticket a reply goes to."""

    __slots__ = ("statuses",)

    def __init__(self, statuses: frozenset[str]) -> None:
        self.statuses = statuses

    def test(self, view: MessageView) -> bool:
        return view.context.ticket_status in self.statuses

    def explain(self, view: MessageView) -> str:
        actual = view.context.ticket_status or "none (new message)"
        shown = ", ".join(sorted(self.statuses))
        return f"ticket_status in {shown} {_verdict(self.test(view))} {actual}"


class AllOf(Condition):
    """Every child must match; the first that does not decides."""

    __slots__ = ("children", "tests")

    def __init__(self, children: list[Condition]) -> None:
        self.children = tuple(children)
        self.tests: tuple[ViewTest, ...] = tuple(c.fast() for c in children)

    def fast(self) -> ViewTest:
        if len(self.tests) == 2:
            first, second = self.tests
            return lambda view: first(view) and second(view)
        return self.test

    def test(self, view: MessageView) -> bool:
        # A plain loop: all() with a generator costs twice as much per rule.
        for child_test in self.tests:  # noqa: SIM110 - hot path, see above
            if not child_test(view):
                return False
        return True

    def explain(self, view: MessageView) -> str:
        for child in self.children:
            if not child.test(view):
                return child.explain(view)
        return " and ".join(child.explain(view) for child in self.children)


class AnyOf(Condition):
    """At least one child must match; the first that does decides."""

    __slots__ = ("children", "tests")

    def __init__(self, children: list[Condition]) -> None:
        self.children = tuple(children)
        self.tests: tuple[ViewTest, ...] = tuple(c.fast() for c in children)

    def fast(self) -> ViewTest:
        if len(self.tests) == 2:
            first, second = self.tests
            return lambda view: first(view) or second(view)
        return self.test

    def test(self, view: MessageView) -> bool:
        for child_test in self.tests:  # noqa: SIM110 - hot path, as in AllOf
            if child_test(view):
                return True
        return False

    def explain(self, view: MessageView) -> str:
        for child in self.children:
            if child.test(view):
                return child.explain(view)
        return "none of: " + "; ".join(child.explain(view) for child in self.children)


class Not(Condition):
    """The child must not match."""

    __slots__ = ("child",)

    def __init__(self, child: Condition) -> None:
        self.child = child

    def test(self, view: MessageView) -> bool:
        return not self.child.test(view)

    def fast(self) -> ViewTest:
        child = self.child.fast()
        return lambda view: not child(view)

    def explain(self, view: MessageView) -> str:
        return f"not ({self.child.explain(view)})"
