"""The docs' Griffe extension (docs/griffe_roles.py): Sphinx roles become cross-references."""

import importlib.util
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

_PATH = Path(__file__).parents[1] / "docs" / "griffe_roles.py"
_spec = importlib.util.spec_from_file_location("griffe_roles", _PATH)
roles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(roles)


@pytest.fixture(scope="module")
def package():
    loader = griffe.GriffeLoader(extensions=griffe.load_extensions(f"{_PATH}:SphinxRoles"))
    pkg = loader.load("jaxdist")
    loader.resolve_aliases(implicit=False, external=False)
    return pkg, loader


def _find(loader):
    def find(path):
        try:
            loader.modules_collection.get_member(path)
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError):
            return False
        return True

    return find


def test_roles_resolve_in_the_docstrings_scope(package):
    pkg, loader = package
    checkpoint = pkg["checkpoint"]
    out = roles.convert(":class:`CheckpointError` and :meth:`Checkpointer.close`, "
                        ":func:`jaxdist.testing.builtin_mixture`, :mod:`.grids`, "
                        ":class:`~jaxdist.guidance.CFG`, :func:`no_such_name`",
                        checkpoint, _find(loader))
    assert '<autoref identifier="jaxdist.checkpoint.CheckpointError" optional><code>' \
           'CheckpointError</code></autoref>' in out
    assert 'identifier="jaxdist.checkpoint.Checkpointer.close"' in out
    assert 'identifier="jaxdist.testing.builtin_mixture"' in out
    assert 'identifier="jaxdist.grids" optional><code>grids</code>' in out
    assert "><code>CFG</code></autoref>" in out  # ~ shows the last part
    assert "`no_such_name`" in out and ":func:" not in out


def test_the_extension_leaves_no_role_in_any_docstring(package):
    pkg, _ = package

    def walk(obj):
        yield obj
        for member in obj.members.values():
            if not member.is_alias:
                yield from walk(member)

    left = [o.path for o in walk(pkg) if o.docstring and roles.ROLE.search(o.docstring.value)]
    assert not left
