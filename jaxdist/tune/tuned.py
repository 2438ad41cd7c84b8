"""``Tuned``: a learned grid (and solver) with its training history; saved and loaded as JSON.

``jd.sample(tuned.solver, den, x_T, tuned.grid)`` runs it (or ``tuned.sample(den, x_T)``, which
also checks the schedule). The JSON records the schedule and the solver's registry name, so that
a grid tuned for one schedule is not silently used with another.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..grids.common import describe
from ..schedules import Schedule
from ..solvers.base import Solver
from .corrected import Corrected

Array = jax.Array

__all__ = ["Tuned", "solver_name", "FORMAT"]

#: the ``format`` entry of a saved tuning
FORMAT = "jaxdist.tune/1"


def solver_name(solver: Solver) -> str | None:
    """The registry name (``jd.solvers.registry.SOLVERS``) of a solver equal to ``solver``."""
    from ..solvers.registry import SOLVERS

    for name, factory in SOLVERS.items():
        try:
            if factory() == solver:
                return name
        except Exception:  # a factory that cannot be compared is not this solver
            continue
    return None


@dataclasses.dataclass(frozen=True)
class Tuned:
    """A tuned sampler.

    Attributes:
      grid: the learned decreasing times ``[n_steps + 1]``.
      solver: the solver to run on it (a :class:`~jaxdist.tune.Corrected` when coefficients were
        learned too).
      history: one dict per epoch: ``epoch``, ``step``, ``train_loss`` (mean squared distance to
        the teacher), ``val_rms`` (RMS distance on the held-out split; ``None`` without one).
      schedule: the description of the schedule it was tuned for.
      seconds: wall-clock time of the tuning (teacher solve, compilation and training).
    """

    grid: Array
    solver: Solver
    history: list = dataclasses.field(default_factory=list)
    schedule: str = ""
    seconds: float = 0.0

    @property
    def n_steps(self) -> int:
        return int(jnp.shape(self.grid)[0]) - 1

    def check_schedule(self, schedule: Schedule) -> None:
        """Raises ``ValueError`` unless ``schedule`` is the one this was tuned for."""
        if self.schedule and describe(schedule) != self.schedule:
            raise ValueError(f"this grid was tuned for {self.schedule}, not {describe(schedule)}:"
                             " tune again with a denoiser on this schedule.")

    def sample(self, denoiser, x_T: Array, key: Array | None = None, **kwargs):
        """``jd.sample(self.solver, denoiser, x_T, self.grid, key)`` after checking the schedule."""
        from ..sample import sample

        self.check_schedule(denoiser.schedule)
        return sample(self.solver, denoiser, x_T, self.grid, key, **kwargs)

    # -- JSON --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable record (see :meth:`save`)."""
        corrected = isinstance(self.solver, Corrected)
        base = self.solver.base if corrected else self.solver
        return {"format": FORMAT, "schedule": self.schedule, "solver": solver_name(base),
                "solver_repr": repr(base), "grid": np.asarray(self.grid, np.float64).tolist(),
                "corrections": ({k: np.asarray(v, np.float64).tolist()
                                 for k, v in self.solver.scales.items()} if corrected else None),
                "history": self.history, "seconds": self.seconds}

    def save(self, path: str | Path) -> Path:
        """Writes the grid, solver name, corrections, schedule and history as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, schedule: Schedule | None = None,
             solver: Solver | None = None) -> "Tuned":
        """Reads :meth:`save`'s JSON. ``schedule``: the schedule it will run on (a clear error if
        it was tuned for another); ``solver``: needed only when the saved solver has no
        registry name."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a jaxdist tuning (no 'format': {FORMAT!r}).")
        name = data["solver"]
        if solver is None:
            if name is None:
                raise ValueError(f"{path} was tuned with an unregistered solver "
                                 f"({data['solver_repr']}): pass solver= to Tuned.load.")
            from ..solvers.registry import by_name

            solver = by_name(name)
        elif name is not None and solver_name(solver) != name:
            raise ValueError(f"{path} was tuned for solver {name!r}, not {solver!r}.")
        if data["corrections"] is not None:
            dtype = jnp.result_type(float)
            solver = Corrected(solver, {k: jnp.asarray(v, dtype)
                                        for k, v in data["corrections"].items()})
        tuned = cls(jnp.asarray(data["grid"], jnp.result_type(float)), solver, data["history"],
                    data["schedule"], float(data["seconds"]))
        if schedule is not None:
            tuned.check_schedule(schedule)
        return tuned
