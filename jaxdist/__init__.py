"""jaxdist: samplers and solvers for diffusion and flow models, in pure functional JAX.

    import jaxdist as jd
    den = jd.Denoiser(fn, jd.schedules.VPLinear(), prediction="eps")
    grid = jd.grids.logsnr_uniform(den.schedule, 10)
    x = jd.sample(jd.solvers.DPMSolverPP(order=2), den, x_T, grid).x

``import jaxdist`` loads nothing else: each submodule and name below is imported on first use
(PEP 562), so the command line and scripts that need one part start fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public submodules (``jd.schedules``, ``jd.grids``, ...), imported on first attribute access
_SUBMODULES = ("checkpoint", "data", "denoiser", "discrete", "distill", "grids", "guidance",
               "inversion", "likelihood", "mcmc", "metrics", "models", "noise", "objectives",
               "parallel", "predictions", "schedules", "solvers", "testing", "train", "tune")

#: public names -> the submodule that defines them
_NAMES = {
    "BaseDenoiser": "denoiser",
    "ClipX0": "denoiser",
    "ConsistencyDenoiser": "denoiser",
    "Denoiser": "denoiser",
    "DenoiserTransform": "denoiser",
    "DynamicThreshold": "denoiser",
    "EDMPreconditioned": "denoiser",
    "Inpaint": "inversion",
    "invert": "inversion",
    "convert": "predictions",
    "DenoiserModel": "sample",
    "SampleResult": "sample",
    "sample": "sample",
    "sample_adaptive": "sample",
}

__all__ = sorted(_SUBMODULES + tuple(_NAMES) + ("__version__",))


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES or (not name.startswith("_")
                                 and importlib.util.find_spec(f"{__name__}.{name}") is not None):
        value = importlib.import_module(f".{name}", __name__)  # also later subpackages
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The ``jaxdist`` module object. When a submodule that shares its name with a function
    (``jaxdist/sample.py`` and ``jd.sample``) is first imported, the import system sets the
    package attribute to the submodule; this keeps the function there instead (the submodule
    stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _NAMES.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
