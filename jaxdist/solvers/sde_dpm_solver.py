"""SDE-DPM-Solver++ (Lu et al. 2022b): orders 1, 2M and 3M, data prediction, with ``eta``.

In ``lambda = log(alpha / sigma)`` (half the log-SNR), step ``t -> s``, ``h = lambda_s - lambda_t``
and ``h_eta = (1 + eta) h``, the step is (as diffusers' ``sde-dpmsolver++`` and k-diffusion's
``dpmpp_2m_sde`` / ``dpmpp_3m_sde``)

    x_s = (sigma_s / sigma_t) e^{-eta h} x_t + alpha_s (1 - e^{-h_eta}) D_0 + (higher terms)
          + sigma_s sqrt(1 - e^{-2 eta h}) z,

with ``D_0 = x0_hat(x_t, t)`` and ``r_j = h_{-j} / h`` the ratios of previous step sizes:

* 2M (``midpoint``): ``+ alpha_s (1 - e^{-h_eta}) / 2 * (D_0 - D_1) / r_0``;
  (``heun``): ``+ alpha_s phi_2 (D_0 - D_1) / r_0``, ``phi_2 = expm1(-h_eta) / h_eta + 1``;
* 3M: ``+ alpha_s (phi_2 d_1 - phi_3 d_2)``, ``phi_3 = phi_2 / h_eta - 1/2``, with
  ``d1_0 = (D_0 - D_1) / r_0``, ``d1_1 = (D_1 - D_2) / r_1``,
  ``d_1 = d1_0 + (d1_0 - d1_1) r_0 / (r_0 + r_1)``, ``d_2 = (d1_0 - d1_1) / (r_0 + r_1)``.

``eta = 1`` discretises the reverse diffusion SDE (order 1 equals DDPM ancestral sampling);
``eta = 0`` is the deterministic DPM-Solver++. Warm-up steps use lower orders and, with
``lower_order_final``, so do the last ones; ``lower_order_final=False`` is k-diffusion's pattern
(order 3 until the final denoising step). A step to ``t = 0`` is first order and returns
``alpha_0 x0_hat`` exactly (no noise). The noise is additive and enters through one Gaussian per
step, which limits the strong order to 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..noise import standard_normal
from ..schedules import expand_to
from .base import LinearMultistep, MultistepState, solver_dataclass
from .primitives import (boundary_bound, cap_final_orders, check_final_orders, check_order,
                         half_log_snr, multistep_orders)

Array = jax.Array

__all__ = ["SDEDPMSolverPP", "SDEMultistepCoefs"]


class SDEMultistepCoefs(NamedTuple):
    """``x_next = a x + b . history + noise_scale z``."""

    t: Array
    t_next: Array
    a: Array
    b: Array
    noise_scale: Array


@solver_dataclass
class SDEDPMSolverPP(LinearMultistep):
    """SDE-DPM-Solver++ of ``order`` 1, 2 (2M) or 3 (3M); see the module docstring.

    Attributes (``order=`` sets ``solver_order``):
      solver_order: 1, 2 or 3 (multistep).
      eta: noise level, 1 = reverse SDE, 0 = probability-flow ODE.
      solver_type: ``"midpoint"`` or ``"heun"`` second-order term (order 2 only).
      lower_order_final: use orders ``.., 2, 1`` on the last steps.
      final_orders: caps on the orders of the last ``len(final_orders)`` steps (as
        ``DPMSolverPP``'s; diffusers' ``euler_at_final`` is ``(1,)``).
      noise: optional noise source (e.g. ``jd.noise.BrownianPath``).
      third_order: ``"kdiffusion"`` (default: ``- phi_3 d_2`` with ``phi_3 = phi_2 / h_eta - 1/2``,
        order-2 warm-up steps of a 3M in the ``heun`` form, as ``sample_dpmpp_3m_sde``) or
        ``"diffusers"`` (``DPMSolverMultistepScheduler``'s ``sde-dpmsolver++``: ``d_2`` weighted by
        ``-(phi_2 / h_eta + 1/2)``, warm-up steps in ``solver_type``'s form).

    ``order`` (the weak order when ``eta > 0``): 1 for order 1; 2 for 2M and 3M (the
    first-order warm-up step bounds 3M by 2; measured on Gaussian data by exact moment
    recursions). Strong order 1.
    """

    solver_order: int = 2
    eta: float = 1.0
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    noise: Any = None
    third_order: str = "kdiffusion"
    final_orders: tuple[int, ...] = ()
    space = "x0"

    def __post_init__(self):
        check_order("SDEDPMSolverPP", self.solver_order, (1, 2, 3))
        object.__setattr__(self, "final_orders",
                           check_final_orders("SDEDPMSolverPP", self.final_orders))
        if self.solver_type not in ("midpoint", "heun"):
            raise ValueError(f"SDEDPMSolverPP: solver_type={self.solver_type!r} must be "
                             "'midpoint' or 'heun'.")
        if self.third_order not in ("kdiffusion", "diffusers"):
            raise ValueError(f"SDEDPMSolverPP: third_order={self.third_order!r} must be "
                             "'kdiffusion' or 'diffusers'.")
        if not self.eta >= 0:
            raise ValueError(f"SDEDPMSolverPP: eta={self.eta} must be >= 0.")

    def step_orders(self, n_steps: int) -> np.ndarray:
        """Static orders: warm-up ``1, 2, ..``, ``lower_order_final``, ``final_orders``."""
        orders = multistep_orders(n_steps, self.solver_order, self.lower_order_final)
        return cap_final_orders(orders, self.final_orders)

    @property
    def order(self) -> int:
        orders = self.step_orders(16)
        return boundary_bound(self.solver_order, [int(o) for o in orders if o < self.solver_order])

    claimed_strong_order = 1.0

    @property
    def stochastic(self) -> bool:
        return self.eta > 0


    @property
    def weak_order(self) -> float | None:
        return float(self.order) if self.stochastic else None

    def weights(self, schedule, grid):
        t, s = grid[:-1], grid[1:]
        n = t.shape[0]
        lam = half_log_snr(schedule, grid)
        h = lam[1:] - lam[:-1]
        he = (1.0 + self.eta) * h
        final = (s == 0)[:, None]
        alpha_s = schedule.alpha(s)[:, None]
        a = schedule.sigma(s) / schedule.sigma(t) * jnp.exp(-self.eta * h)
        h_prev = jnp.concatenate([h[:1], h[:-1]])
        h_prev2 = jnp.concatenate([h[:2], h[:-2]])[:n]
        r0, r1 = (h_prev / h)[:, None], (h_prev2 / h)[:, None]
        # a step to t = 0 returns alpha_0 x0_hat exactly (the clipped h would leave e^{-h_eta})
        phi1 = jnp.where(final, 1.0, -jnp.expm1(-he)[:, None])
        phi2 = 1.0 - phi1 / he[:, None]
        phi3 = phi2 / he[:, None] - 0.5
        e = jnp.eye(3, dtype=h.dtype)
        b1 = alpha_s * phi1 * e[0]
        midpoint = self.solver_type == "midpoint" and (self.solver_order == 2 or
                                                       self.third_order == "diffusers")
        c2 = 0.5 * phi1 if midpoint else phi2
        b2 = b1 + alpha_s * c2 * (e[0] - e[1]) / r0
        d1_0, d1_1 = (e[0] - e[1]) / r0, (e[1] - e[2]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        w2 = -phi3 if self.third_order == "kdiffusion" else -(phi2 / he[:, None] + 0.5)
        b3 = b1 + alpha_s * (phi2 * d1 + w2 * d2)
        orders = jnp.asarray(self.step_orders(n))[:, None]
        orders = jnp.where(final, 1, orders)
        b = jnp.where(orders == 1, b1, jnp.where(orders == 2, b2, b3))
        return a, b[:, :self.solver_order]

    def coefficients(self, schedule, grid):
        a, b = self.weights(schedule, grid)
        h = half_log_snr(schedule, grid[1:]) - half_log_snr(schedule, grid[:-1])
        noise_scale = schedule.sigma(grid[1:]) * jnp.sqrt(-jnp.expm1(-2.0 * self.eta * h))
        return SDEMultistepCoefs(grid[:-1], grid[1:], a, b, noise_scale)

    def step(self, model, state, coefs, key):
        x, hist, ms = super().step(model, state, coefs, key)
        if self.eta > 0:
            z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
            x = x + expand_to(coefs.noise_scale, x).astype(x.dtype) * z
        return MultistepState(x, hist, ms)
