"""``jd.tune``: samplers tuned by gradient through ``jd.sample``.

* :func:`optimise_grid` learns the time grid (LD3-style: monotone softmax increments in
  log-SNR, the last positive time learned too) against a teacher's endpoints of the same noise;
* :func:`optimise_solver` also learns per-step corrections of the solver's coefficient table
  (S4S / Bespoke-style), returned as a :class:`Corrected` solver whose table is data;
* :func:`fit_dc_ratios` fits DC-Solver's compensation ratios (:func:`reference_trajectory`
  gives the fine trajectory it is fitted to); :func:`fit_cascade_ratios` regresses them over
  step counts and guidance scales (DC-Solver's cascade polynomial regression);
* both return :class:`Tuned` (``grid``, ``solver``, ``history``; ``save`` / ``load`` JSON).

    tuned = jd.tune.optimise_grid(jd.solvers.DPMSolverPP(), den, x_T, n_steps=5)
    x = jd.sample(tuned.solver, den, x_new, tuned.grid).x
"""

from .corrected import Corrected as Corrected
from .corrected import learnable_fields as learnable_fields
from .dc_cascade import CascadeRatios as CascadeRatios
from .dc_cascade import fit_cascade_ratios as fit_cascade_ratios
from .dc_ratios import fit_dc_ratios as fit_dc_ratios
from .dc_ratios import reference_trajectory as reference_trajectory
from .fit import optimise_grid as optimise_grid
from .fit import optimise_solver as optimise_solver
from .fit import reference_solve as reference_solve
from .fit import rms as rms
from .parametrise import GridParams as GridParams
from .parametrise import grid_from_params as grid_from_params
from .parametrise import params_from_grid as params_from_grid
from .tuned import Tuned as Tuned

__all__ = ["optimise_grid", "optimise_solver", "reference_solve", "rms", "Tuned", "Corrected",
           "learnable_fields", "GridParams", "grid_from_params", "params_from_grid",
           "fit_dc_ratios", "reference_trajectory", "CascadeRatios", "fit_cascade_ratios"]
