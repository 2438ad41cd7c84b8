"""A Griffe extension that renders the Sphinx roles of jaxdist's docstrings as cross-references.

Docstrings write ``:class:`Checkpointer```, ``:func:`jaxdist.testing.builtin_mixture```,
``:mod:`.dsm``` or ``:meth:`close``` (short names resolve like Python names in the docstring's
scope; a leading ``.`` is relative to the package; ``~`` shows only the last part). Each becomes an
optional mkdocs-autorefs link: a link when the target is rendered on an API page, plain code
otherwise, so the strict build never fails on a name that has no page.

Loaded by mkdocstrings (``mkdocs.yml``: ``extensions: [docs/griffe_roles.py:SphinxRoles]``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|mod|meth|data|attr|exc|obj|const):`(~?)([^`<>]+)`")


def resolve(obj: Any, target: str, find) -> str | None:
    """The full path of ``target`` seen from ``obj``'s docstring, or ``None``."""
    if target.startswith("."):
        module = obj.module
        base = module.path if module.is_init_module else module.parent.path
        up = len(target) - len(target.lstrip("."))
        parts = base.split(".")[: len(base.split(".")) - (up - 1)]
        path = ".".join(parts + [target.lstrip(".")])
        return path if find(path) else None
    if find(target):
        return target
    head, _, rest = target.partition(".")
    scopes = [obj] + ([obj.parent] if obj.parent is not None else [])
    for scope in scopes:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError):
            continue
        path = f"{path}.{rest}" if rest else path
        if find(path):
            return path
    return None


def convert(text: str, obj: Any, find) -> str:
    """``text`` with every Sphinx role replaced by an optional autoref (or plain code)."""

    def one(match: re.Match) -> str:
        _, tilde, target = match.groups()
        shown = target.lstrip(".")
        if tilde:
            shown = shown.rsplit(".", 1)[-1]
        code = f"<code>{html.escape(shown)}</code>"
        path = resolve(obj, target, find)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return ROLE.sub(one, text)


def _objects(obj: Any):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Converts the roles once the package is loaded (all names are known then)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        def find(path: str) -> bool:
            try:
                loader.modules_collection.get_member(path)
            except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError):
                return False
            return True

        for obj in _objects(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = convert(obj.docstring.value, obj, find)
