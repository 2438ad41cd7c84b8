"""The package's shape: public names resolve, `import jaxdist` is light, the import graph of
jaxdist/ has no cycle and the library never imports the command line (jaxdist.cli)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jaxdist as jd

ROOT = Path(jd.__file__).parent

#: the public names of ../shared/ARCHITECTURE.md ("The contract") that exist in this package
PUBLIC = [
    "schedules.VPLinear", "schedules.VPCosine", "schedules.VPDiscrete",
    "schedules.VPDiscrete.from_diffusers_config", "schedules.VE", "schedules.EDM",
    "schedules.RectifiedFlow", "Denoiser", "grids.logsnr_uniform", "grids.time_uniform",
    "grids.time_quadratic", "grids.karras", "grids.from_diffusers", "solvers.DPMSolverPP",
    "sample", "SampleResult", "testing.GaussianMixture", "testing.empirical_order",
    "testing.measure_order", "testing.builtin_mixture", "objectives.make_objective",
    "guidance.CFG", "models.MLP", "metrics.frechet_distance",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_resolve(name):
    obj = jd
    for part in name.split("."):
        obj = getattr(obj, part)
    assert obj is not None


def test_all_resolves_and_sample_stays_the_function():
    import jaxdist.sample  # noqa: F401  (the submodule of the same name loads: jd.sample stays)

    for name in jd.__all__:
        assert getattr(jd, name) is not None, name
    assert callable(jd.sample) and jd.sample.__module__ == "jaxdist.sample"
    assert sys.modules["jaxdist.sample"].SampleResult is jd.SampleResult
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        jd.nothing  # noqa: B018


def test_import_jaxdist_is_light():
    """`import jaxdist` and `import jaxdist.cli` load no JAX; a public name loads what it needs."""
    script = ("import sys, jaxdist, jaxdist.cli\n"
              "assert 'jax' not in sys.modules, 'jax imported'\n"
              "jaxdist.schedules.VPLinear()\n"
              "assert 'jax' in sys.modules and 'jaxdist.solvers' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT.parent)), timeout=120)
    assert proc.returncode == 0, proc.stderr


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the jaxdist modules it imports (at any depth of its code, functions included),
    with the packages Python runs on the way (importing ``a.b.c`` from outside ``a.b`` runs
    ``a.b/__init__``)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "jaxdist"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                if base.split(".")[0] != "jaxdist":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        own = set(_ancestors(name)) | {name}
        edges = {m for m in found if m in modules}
        for m in list(edges):
            edges |= {a for a in _ancestors(m) if a not in own}
        graph[name] = edges - {name}
    return graph


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_has_no_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_core_module_imports_the_command_line():
    graph = import_graph()
    bad = {m: sorted(e for e in edges if e.startswith("jaxdist.cli"))
           for m, edges in graph.items() if not m.startswith("jaxdist.cli")}
    assert not {m: e for m, e in bad.items() if e}


def test_cli_names_match_the_library():
    from jaxdist.cli import settings
    from jaxdist.cli.benchmarks import SCHEDULES
    from jaxdist.data import DATASETS

    assert settings.DATA_NAMES == tuple(DATASETS)
    assert set(SCHEDULES) == set(settings.BENCH_SCHEDULES)


def test_float64_does_not_leak_between_test_modules():
    """Runs after the rest of its worker's tests in file order: float64 must be off again
    (a fixture holding `jax.enable_x64` across `yield` once leaked it into later modules)."""
    import jax

    assert not jax.config.jax_enable_x64
