"""The names of the inputs the code reads (cookies, request headers, query and form fields), found in the
code itself, so the hostile-input sweeps try every one of them, including those added later.

A read is found when it is written the usual way: ``request.cookies.get(NAME)``, ``request.headers.get(NAME)``
/ ``[NAME]`` / ``NAME in request.headers``, ``query.get("x")`` / ``present(query, "x", ...)``,
``form.get("x")``; NAME is a string literal or a constant assigned a string literal somewhere in the code.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("web", "shared")
_NAME = r'("[^"]+"|[A-Za-z_][\w.]*)'
_CONSTANT = re.compile(r'^\s*([A-Z][A-Z0-9_]*)\s*(?::\s*\w+\s*)?=\s*"([^"]+)"', re.M)
_COOKIE = (re.compile(r"cookies\.get\(\s*" + _NAME),)
_HEADER = (re.compile(r"request\.headers\.get(?:all)?\(\s*" + _NAME),
           re.compile(r"request\.headers\[\s*" + _NAME + r"\s*\]"),
           re.compile(_NAME + r"\s+(?:not\s+)?in\s+request\.headers\b"))
_QUERY = (re.compile(r"query\.get(?:all)?\(\s*" + _NAME),)
_FORM = (re.compile(r"(?:form|source|post\(\)\))\.get(?:all)?\(\s*" + _NAME),
         re.compile(r"form\[\s*" + _NAME + r"\s*\]"), re.compile(r"chosen\(\s*form,\s*" + _NAME))
_PRESENT = re.compile(r"present\(\s*(?:request\.)?(query|form)\s*,\s*((?:\"[^\"]+\"\s*,?\s*)+)\)")


@lru_cache(maxsize=1)
def _texts() -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8") for folder in SOURCES
                 for path in sorted((ROOT / folder).rglob("*.py")))


@lru_cache(maxsize=1)
def _constants() -> dict[str, str]:
    return {name: value for text in _texts() for name, value in _CONSTANT.findall(text)}


def _resolve(token: str) -> str | None:
    if token.startswith('"'):
        return token.strip('"')
    return _constants().get(token.rsplit(".", 1)[-1])


def _found(patterns: tuple[re.Pattern[str], ...]) -> set[str]:
    names = set()
    for text in _texts():
        for pattern in patterns:
            for token in pattern.findall(text):
                if (name := _resolve(token)) is not None:
                    names.add(name)
    return names


def _present(source: str) -> set[str]:
    return {name for text in _texts() for kind, names in _PRESENT.findall(text) if kind == source
            for name in re.findall(r'"([^"]+)"', names)}


def cookie_names() -> list[str]:
    return sorted(_found(_COOKIE))


def header_names() -> list[str]:
    return sorted(name for name in _found(_HEADER) if re.fullmatch(r"[A-Za-z0-9-]+", name))


def query_names() -> list[str]:
    return sorted(_found(_QUERY) | _present("query"))


def form_names() -> list[str]:
    return sorted(_found(_FORM) | _present("form"))
