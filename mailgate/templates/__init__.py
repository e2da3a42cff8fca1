"""Mail templates: Jinja2 in a sandbox, per queue and language.

Each mail is two files in a language folder: ``NAME.txt`` with a
``subject`` and a ``body`` block, and an optional ``NAME.html`` with a
``body`` block (autoescaped). Lookup order, first found wins::

    <templates>/<queue>/<lang>/NAME.txt   (admin override for one queue)
    <templates>/<lang>/NAME.txt           (admin override)
    <shipped>/<lang>/NAME.txt             (shipped: en, nl)
    <shipped>/en/NAME.txt                 (fallback language)

Templates fill bodies and the subject text only; headers are built in code,
so nothing a template renders can add a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound, TemplatesNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

SHIPPED = Path(__file__).parent


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None
    language: str


class TemplateSet:
    def __init__(self, override_dir: Path | None = None) -> None:
        roots = [str(override_dir)] if override_dir is not None else []
        roots.append(str(SHIPPED))
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(roots),
            autoescape=lambda name: name is not None and name.endswith(".html"),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            # Templates are reloaded by building a new TemplateSet on SIGHUP,
            # not by a stat() of every file on every mail.
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._resolved: dict[tuple[str, str | None, str, str], Template | None] = {}

    def _select(self, name: str, queue: str | None, language: str, ext: str) -> Template | None:
        """The first existing candidate, remembered: a miss is a file lookup per
        candidate, on every mail (Jinja caches found templates, not misses)."""
        key = (name, queue, language, ext)
        if key not in self._resolved:
            candidates = self._candidates(name, queue, language, ext)
            try:
                found: Template | None = self._env.select_template(candidates)
            except TemplateNotFound:
                found = None
            self._resolved[key] = found
        return self._resolved[key]

    def names(self) -> set[str]:
        """Every template name available in any language."""
        return {Path(name).name.removesuffix(".txt") for name in self._env.list_templates(extensions=["txt"])}

    def _candidates(self, name: str, queue: str | None, language: str, ext: str) -> list[str]:
        found = []
        if queue:
            found.append(f"{queue}/{language}/{name}.{ext}")
        found += [f"{language}/{name}.{ext}", f"en/{name}.{ext}"]
        return found

    def render(
        self, name: str, context: Mapping[str, Any], *, language: str, queue: str | None = None
    ) -> RenderedMail:
        text_template = self._select(name, queue, language, "txt")
        if text_template is None:
            raise TemplatesNotFound(self._candidates(name, queue, language, "txt"))
        used_language = Path(text_template.name or "").parent.name or language
        ctx = text_template.new_context(dict(context))
        subject = "".join(text_template.blocks["subject"](ctx))
        body = "".join(text_template.blocks["body"](ctx))
        html = None
        html_template = self._select(name, queue, used_language, "html")
        if html_template is not None:
            html = html_template.render(dict(context))
        # A subject is one line whatever the data held (no header injection).
        return RenderedMail(" ".join(subject.split()), body.strip() + "\n", html, used_language)
