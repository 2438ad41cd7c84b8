"""Solver names: jaxdist's, k-diffusion / ComfyUI's and diffusers' resolve to the same solvers;
unknown names get a did-you-mean."""

import re

import pytest

from jaxdist.solvers import AdaptiveDPMSolver, DPMSolverPP, UniPC, registry


@pytest.mark.parametrize("name,canonical", [
    ("dpm++2m", "dpm++2m"), ("DPM++ 2M", "dpm++2m"), ("dpmpp_2m", "dpm++2m"),
    ("DPMSolverMultistepScheduler", "dpm++2m"), ("uni_pc_bh2", "unipc"), ("UniPC", "unipc"),
    ("dpmpp_3m_sde", "dpm++3m-sde"), ("Euler", "euler"), ("dpm_adaptive", "dpm-adaptive"),
])
def test_names_resolve(name, canonical):
    assert registry.canonical_name(name) == canonical
    assert registry.by_name(name) == registry.by_name(canonical)


def test_by_name_builds_the_documented_settings():
    assert registry.by_name("dpm++2m") == DPMSolverPP(order=2)
    assert registry.by_name("unipc") == UniPC(order=2)
    assert isinstance(registry.by_name("dpm-adaptive"), AdaptiveDPMSolver)
    assert registry.by_name("dpm++3m-o3").order == 3


@pytest.mark.parametrize("name,suggestion", [("dpmpp2mm", "dpm++2m"), ("unipcc", "unipc"),
                                             ("heunn", "heun")])
def test_unknown_name_suggests(name, suggestion):
    with pytest.raises(ValueError, match=re.escape(f"did you mean '{suggestion}'")):
        registry.by_name(name)


def test_unknown_name_without_match_lists_names():
    with pytest.raises(ValueError, match="known: .*ddim"):
        registry.by_name("zzzzzzzz")


def test_register_adds_a_solver():
    registry.register("my-2m", lambda: DPMSolverPP(order=2, solver_type="heun"))
    try:
        assert registry.by_name("my-2m").solver_type == "heun"
        assert "my-2m" in registry.all_names()
    finally:
        del registry.SOLVERS["my-2m"]
