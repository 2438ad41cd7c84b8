"""Linear multistep in ``sigma`` (k-diffusion's ``sample_lms``, diffusers' ``LMSDiscreteScheduler``).

In the EDM variables ``y = x / alpha``, ``rho = sigma / alpha`` the probability-flow ODE reads
``dy/drho = eps_hat``. LMS-``p`` integrates the Lagrange polynomial through the last ``p``
outputs ``(rho_{i-j}, eps_{i-j})``, ``j < p``, over the step:

    y_{i+1} = y_i + sum_j eps_{i-j} int_{rho_i}^{rho_{i+1}} prod_{m != j}
              (rho - rho_{i-m}) / (rho_{i-j} - rho_{i-m}) drho

(warm-up orders ``1, 2, ..``; diffusers and k-diffusion integrate numerically, exactly for a
polynomial). These are the weights of ``IPNDM(variable_step=True)`` (variable-step
Adams-Bashforth in ``rho``); the difference is the step to ``sigma = 0``, where LMS integrates
the polynomial to ``rho = 0`` as diffusers and k-diffusion 0.1.1 do, and iPNDM (like ComfyUI's
``lms``) returns ``x0_hat``. NFE = number of steps. The first-order first step bounds the global
order by 2 (``LMS(order=4).order == 2``); one full step has local order ``p + 1``.
"""

from __future__ import annotations

from .base import solver_dataclass
from .deis import EpsMultistep, deis_tables
from .primitives import check_order

__all__ = ["LMS"]


@solver_dataclass
class LMS(EpsMultistep):
    """LMS-``order`` (orders 1-4, default 4 as diffusers and k-diffusion): see the module
    docstring. ``lower_order_final`` (off, as in both) lowers the last orders ``.., 2, 1``."""

    solver_order: int = 4
    lower_order_final: bool = False
    first_order_to_zero = False

    def __post_init__(self):
        check_order("LMS", self.solver_order, (1, 2, 3, 4))

    def table(self, schedule, grid, k):
        return deis_tables(schedule, grid, k, nodes=4, variable="rho")
