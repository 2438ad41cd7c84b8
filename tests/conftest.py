"""Test configuration: 8 CPU devices before JAX starts; float64 only where a test asks.

The suite's time is mostly XLA compilation of small programs: the CPU backend's LLVM
optimisation level 0 compiles them about 35 % faster (measured on the solver tests) and changes
no result a test checks (the programs are tiny; run time is negligible).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                                   "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Runs a test in float64 (numerical tests); restores the default afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(autouse=True)
def _restore_x64():
    """Keeps float64 from leaking between tests (a test that enables it must not change others)."""
    previous = jax.config.jax_enable_x64
    yield
    if jax.config.jax_enable_x64 != previous:
        jax.config.update("jax_enable_x64", previous)
