"""Read a folder of article files; every problem comes back as file:line: reason.

Front matter is YAML between two ``---`` lines (PyYAML, whose node marks give
the line of each key); the body is Markdown, turned into HTML by
markdown-it-py and then made safe by nh3, because an article's HTML goes
out in mail to requesters and an admin's typo must not become markup.
A body holds one section per language, each started by a line
``<!-- lang: nl -->`` (an HTML comment, so a Markdown preview shows nothing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nh3
import yaml
from markdown_it import MarkdownIt

from mailgate.kb.model import LANGUAGES, Article, KbError, KnowledgeBase, Problem

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_LANG_MARK = re.compile(r"^<!--\s*lang:\s*(?P<lang>[a-z]{2})\s*-->\s*$")
_KNOWN_KEYS = {"id", "title", "keywords", "queues", "categories"}
# Raw HTML in the Markdown is not rendered at all ("commonmark" with html off):
# nh3 would clean it, but an article has no need of it.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_html(markdown: str) -> str:
    """Markdown to HTML that is safe to mail."""
    return nh3.clean(_MARKDOWN.render(markdown), url_schemes={"https", "http", "mailto"})


def _key_lines(node: yaml.Node) -> dict[str, int]:
    """Line (1-based, in the front matter) of each top-level key."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _split(text: str) -> tuple[str, str, int] | None:
    """(front matter, body, body's first line) or None without front matter."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 2
    return None


def _words(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(w.strip() for w in value.split(",") if w.strip())
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return None


def parse_article(path: Path, text: str) -> tuple[Article | None, list[Problem]]:
    """One article file, or the problems that keep it out."""
    problems: list[Problem] = []

    def problem(line: int, reason: str) -> None:
        problems.append(Problem(path, line, reason))

    parts = _split(text.replace("\r\n", "\n"))
    if parts is None:
        problem(1, "no front matter: the file must start with a '---' line and close it with another")
        return None, problems
    front, body, body_line = parts
    try:
        node = yaml.compose(front)
        meta: Any = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem(line, f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}")
        return None, problems
    if not isinstance(meta, dict):
        problem(2, "front matter must be a mapping with at least id and title")
        return None, problems
    lines = {key: line + 1 for key, line in _key_lines(node).items()} if node is not None else {}
    for key in meta:
        if key not in _KNOWN_KEYS:
            problem(lines.get(str(key), 1), f"unknown key {key!r}; known: {', '.join(sorted(_KNOWN_KEYS))}")
    article_id = meta.get("id")
    if not isinstance(article_id, str) or not _ID.fullmatch(article_id):
        problem(lines.get("id", 1), "id must be lowercase letters, digits and '-', e.g. vpn-809")
    titles = meta.get("title")
    if isinstance(titles, str):
        titles = {LANGUAGES[0]: titles}
    if (
        not isinstance(titles, dict)
        or not titles
        or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in titles.items())
    ):
        problem(lines.get("title", 1), "title must be a text per language, e.g. 'en: ...' and 'nl: ...'")
        titles = {}
    keywords: dict[str, tuple[str, ...]] = {}
    raw_keywords = meta.get("keywords", [])
    if isinstance(raw_keywords, dict):
        for lang, value in raw_keywords.items():
            words = _words(value)
            if words is None:
                problem(lines.get("keywords", 1), f"keywords.{lang} must be a list of words")
            else:
                keywords[str(lang)] = words
    else:
        words = _words(raw_keywords)
        if words is None:
            problem(lines.get("keywords", 1), "keywords must be a list, or a list per language")
        else:
            keywords["*"] = words
    groups: dict[str, tuple[str, ...]] = {}
    for key in ("queues", "categories"):
        value = _words(meta.get(key, []))
        if value is None:
            problem(lines.get(key, 1), f"{key} must be a list of names")
        groups[key] = value or ()
    bodies = _sections(path, body, body_line, problems)
    for lang in titles:
        if bodies and lang not in bodies:
            problem(lines.get("title", 1), f"a title in {lang!r} but no '<!-- lang: {lang} -->' section")
    if problems:
        return None, sorted(problems, key=lambda p: p.line)
    assert isinstance(article_id, str)
    return Article(
        id=article_id,
        titles={str(k): " ".join(str(v).split()) for k, v in titles.items()},
        keywords=keywords,
        bodies=bodies,
        html={lang: render_html(text) for lang, text in bodies.items()},
        queues=groups["queues"],
        categories=groups["categories"],
        path=path,
    ), []


def _sections(path: Path, body: str, first_line: int, problems: list[Problem]) -> dict[str, str]:
    """Split the body at its language marks; a body without marks is English."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for offset, line in enumerate(body.split("\n")):
        mark = _LANG_MARK.match(line.strip())
        if mark is not None:
            current = mark["lang"]
            if current in sections:
                problems.append(Problem(path, first_line + offset, f"a second section for {current!r}"))
            sections[current] = []
            continue
        if current is None:
            if line.strip() and sections == {}:
                current = LANGUAGES[0]
                sections[current] = [line]
            continue
        sections[current].append(line)
    joined = {lang: "\n".join(text).strip() for lang, text in sections.items()}
    found = {lang: text + "\n" for lang, text in joined.items() if text}
    if not found:
        problems.append(Problem(path, first_line, "the article has no text after its front matter"))
    return found


def check_folder(folder: Path) -> tuple[KnowledgeBase, list[Problem]]:
    """Every article file under ``folder`` (``*.md``), and every problem found."""
    problems: list[Problem] = []
    articles: dict[str, Article] = {}
    if not folder.is_dir():
        return KnowledgeBase(folder=folder), [Problem(folder, 0, "no such folder")]
    for path in sorted(folder.rglob("*.md")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, 0, f"cannot read: {exc}"))
            continue
        article, found = parse_article(path, text)
        problems.extend(found)
        if article is None:
            continue
        if article.id in articles:
            other = articles[article.id].path
            problems.append(Problem(path, 2, f"id {article.id!r} is already used by {other}"))
            continue
        articles[article.id] = article
    return KnowledgeBase(articles, folder), problems


def load_folder(folder: Path) -> KnowledgeBase:
    """The folder's articles, or KbError when any file is broken (all or nothing, like rules)."""
    kb, problems = check_folder(folder)
    if problems:
        raise KbError(problems)
    return kb
