"""k-diffusion / ComfyUI named samplers (jaxdist.solvers.ancestral, HeunPP2).

Parity with k-diffusion (euler/dpm_2/dpmpp_2s ancestral, dpmpp_sde, dpm_2, lms) is in the golden
(test_parity_golden.py); deterministic orders in test_contract.py. Here: ComfyUI's formulas that
k-diffusion 0.1.1 does not have (RF split, heunpp2, lcm, the ``_cfg_pp`` forms) against
hand-written reference loops, exact weak errors (moments on Gaussian data, no Monte Carlo), the
strong order of DPM++ SDE on one Brownian path, and the errors.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.denoiser import BaseDenoiser
from jaxdist.solvers import LCM, Ancestral, DPMSolverPPSDE, HeunPP2, registry
from jaxdist.testing.kdiffusion_problem import NoiseTable
from sde_helpers import BROWNIAN, ZeroNoise, smooth_mixture, strong_errors, time_grid

EDM = jd.schedules.EDM()
VP = jd.schedules.VPLinear()
RF = jd.schedules.RectifiedFlow()


def _mixture_den(schedule):
    gmm = jd.testing.GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.0, -0.5]], [[0.2, 0.3], [0.3, 0.1]])
    return gmm.denoiser(schedule)


def test_rf_split_is_comfyui_euler_and_dpmpp_2s_ancestral_rf(x64):
    """``split="rf"`` on rectified flow equals ComfyUI's sample_euler_ancestral_RF and
    sample_dpmpp_2s_ancestral_RF (written here in NumPy), and differs from the k-diffusion
    split."""
    den = _mixture_den(RF)
    grid = np.append(np.asarray(jd.grids.time_uniform(RF, 5, 0.98, 0.02)), 0.0)
    rng = np.random.default_rng(0)
    x_T, z = rng.standard_normal((5, 2)), rng.standard_normal((6, 5, 2))
    noise = NoiseTable(grid, z)
    D = lambda x, t: np.asarray(den(jnp.asarray(x), jnp.asarray(t))[0])  # noqa: E731
    eta = 0.8
    for method in ("euler", "dpm++2s"):
        x = x_T.copy()
        for i in range(6):
            s, sn = grid[i], grid[i + 1]
            d0 = D(x, s)
            if i == 5:  # the last step: Euler to sigma = 0
                x = d0
                continue
            sd = sn * (1 + (sn / s - 1) * eta)
            if method == "euler":
                x = sd / s * x + (1 - sd / s) * d0
            else:
                lam = lambda v: np.log((1 - v) / v)  # noqa: E731
                sm = 1.0 / (np.exp(0.5 * (lam(s) + lam(sd))) + 1.0)
                u = sm / s * x + (1 - sm / s) * d0
                x = sd / s * x + (1 - sd / s) * D(u, sm)
            renoise = np.sqrt(sn**2 - sd**2 * (1 - sn) ** 2 / (1 - sd) ** 2)
            x = (1 - sn) / (1 - sd) * x + renoise * z[i]
        ours = jd.sample(Ancestral(method, eta=eta, split="rf", noise=noise), den,
                         jnp.asarray(x_T), jnp.asarray(grid), key=jax.random.key(0)).x
        np.testing.assert_allclose(ours, x, rtol=1e-12, atol=1e-12, err_msg=method)
        kd = jd.sample(Ancestral(method, eta=eta, noise=noise), den, jnp.asarray(x_T),
                       jnp.asarray(grid), key=jax.random.key(0)).x
        assert np.abs(kd - x).max() > 1e-3, method


def test_heunpp2_is_comfyui_loop(x64):
    """HeunPP2 on EDM equals ComfyUI's sample_heunpp2 loop, and on VP (its EDM variables) the
    same loop in ``x / alpha``; NFE ``3N - 3``."""
    for schedule, grid in ((EDM, jd.grids.karras(EDM, 5, final_zero=True)),
                           (VP, jd.grids.karras(VP, 4, t_start=0.9, t_end=1e-3))):
        den = _mixture_den(schedule)
        grid = np.asarray(grid)
        a = np.asarray(schedule.alpha(jnp.asarray(grid)))
        sig = np.asarray(schedule.sigma(jnp.asarray(grid))) / a
        x_T = np.random.default_rng(1).standard_normal((4, 2)) * np.hypot(a[0], sig[0] * a[0])
        D = lambda y, i: np.asarray(den(jnp.asarray(y * a[i]), jnp.asarray(grid[i]))[0])  # noqa
        y, n = x_T / a[0], len(grid) - 1
        d = lambda y, i: (y - D(y, i)) / sig[i]  # noqa: E731
        for i in range(n):
            d0, dt = d(y, i), sig[i + 1] - sig[i]
            if i == n - 1:
                y = y + d0 * dt
            elif i == n - 2:
                y2 = y + d0 * dt
                w2 = sig[i + 1] / (2 * sig[0])
                y = y + dt * ((1 - w2) * d0 + w2 * d(y2, i + 1))
            else:
                y2 = y + d0 * dt
                d2 = d(y2, i + 1)
                y3 = y2 + d2 * (sig[i + 2] - sig[i + 1])
                w2, w3 = sig[i + 1] / (3 * sig[0]), sig[i + 2] / (3 * sig[0])
                y = y + dt * ((1 - w2 - w3) * d0 + w2 * d2 + w3 * d(y3, i + 2))
        out = jd.sample(HeunPP2(), den, jnp.asarray(x_T), jnp.asarray(grid))
        np.testing.assert_allclose(out.x, y * a[-1], rtol=1e-11, atol=1e-11)
        assert int(out.nfe) == 3 * n - 3 == HeunPP2().nfe(n)


class _GuidedPair(BaseDenoiser):
    """An inconsistent pair ``(x0_u + g, eps_u)`` as CFG++ hands to a solver."""

    def __init__(self, den, shift):
        self.den, self.schedule, self.shift = den, den.schedule, shift

    def __call__(self, x, t, **cond):
        x0, eps = self.den(x, t)
        return x0 + self.shift, eps


def test_euler_ancestral_cfg_pp_is_comfyui_step(x64):
    """``euler_ancestral_cfg_pp`` (Ancestral("euler") with CFG++'s pair) equals ComfyUI's
    sample_euler_ancestral_cfg_pp ``x = alpha_t D_g + alpha_t s_down eps_u + alpha_t s_up z``
    on VP; with a consistent pair it is the base sampler (= DDIM(eta))."""
    den = _mixture_den(VP)
    grid = np.asarray(jd.grids.karras(VP, 4, t_start=0.9, t_end=1e-3, final_zero=True))
    z = np.random.default_rng(2).standard_normal((4, 3, 2))
    noise = NoiseTable(grid, z)
    x_T = np.random.default_rng(3).standard_normal((3, 2))
    guided = _GuidedPair(den, jnp.asarray([0.3, -0.2]))
    x = x_T.copy()
    for i in range(4):
        t, tn = jnp.asarray(grid[i]), jnp.asarray(grid[i + 1])
        x0, eps = (np.asarray(v) for v in guided(jnp.asarray(x), t))
        if i == 3:
            x = x0
            continue
        a_s, a_t = float(VP.alpha(t)), float(VP.alpha(tn))
        s, sn = float(VP.sigma(t)) / a_s, float(VP.sigma(tn)) / a_t
        su = min(sn, np.sqrt(sn**2 * (s**2 - sn**2) / s**2))
        sd = np.sqrt(sn**2 - su**2)
        x = a_t * x0 + a_t * sd * eps + a_t * su * z[i]
    name = registry.canonical_name("euler_ancestral_cfg_pp")
    solver = dataclasses.replace(registry.by_name(name), noise=noise)
    key = jax.random.key(0)
    ours = jd.sample(solver, guided, jnp.asarray(x_T), jnp.asarray(grid), key=key).x
    np.testing.assert_allclose(ours, x, rtol=1e-12, atol=1e-12)
    plain = jd.sample(solver, den, jnp.asarray(x_T), jnp.asarray(grid), key=key).x
    ddim = jd.sample(jd.solvers.DDIM(eta=1.0, noise=noise), den, jnp.asarray(x_T),
                     jnp.asarray(grid), key=key).x
    np.testing.assert_allclose(plain, ddim, rtol=1e-12, atol=1e-12)
    assert registry.canonical_name("euler_cfg_pp") == "ddim"


@dataclasses.dataclass(frozen=True)
class BridgeSlots:
    """Exact-moment noise for samplers with a stage inside the step: on step ``i`` the draw to
    a grid point is ``e_{2i+1}`` (scaled: the whole-step increment) and the draw to an inner
    point ``m`` is the Brownian bridge part: the whole-step normal is
    ``(sqrt(t - m) z_1 + sqrt(m - t_next) z_2) / sqrt(t - t_next)`` with ``z_1 = e_{2i+1}``,
    ``z_2 = e_{2i+2}``; on data with a linear denoiser the output's columns are then the
    coefficients of independent normals."""

    grid: tuple
    mids: tuple

    def sample(self, key, x, t, t_next):
        g = jnp.asarray(self.grid, x.dtype)
        i = jnp.argmin(jnp.abs(g[:-1] - t))
        e1 = jax.nn.one_hot(2 * i + 1, x.shape[-1], dtype=x.dtype)
        e2 = jax.nn.one_hot(2 * i + 2, x.shape[-1], dtype=x.dtype)
        m = jnp.asarray(self.mids, x.dtype)[i]
        whole = (jnp.sqrt(t - m) * e1 + jnp.sqrt(m - g[i + 1]) * e2) / jnp.sqrt(t - g[i + 1])
        on_grid = jnp.abs(t_next - g[i + 1]) <= 1e-12
        return jnp.broadcast_to(jnp.where(on_grid, whole, e1), x.shape)


def _weak_errors(make, schedule, n, mu=0.7, var=0.25):
    """``(|E x - alpha mu|, |Var x - v|)`` at the grid's end for ``N(mu, var)`` data (exact)."""
    grid = jd.grids.logsnr_uniform(schedule, n, 1.0, 1e-2)
    lam = schedule.log_snr(grid)
    mids = tuple(float(m) for m in np.asarray(schedule.t_from_log_snr(0.5 * (lam[:-1] + lam[1:]))))
    v = lambda t: schedule.alpha(t) ** 2 * var + schedule.sigma(t) ** 2  # noqa: E731
    k = 2 * n + 1
    lin = jd.testing.GaussianMixture([1.0], jnp.zeros((1, k)), var).denoiser(schedule)
    x_T = jnp.zeros((1, k)).at[0, 0].set(jnp.sqrt(v(grid[0])))
    noise = BridgeSlots(tuple(float(t) for t in np.asarray(grid)), mids)
    cols = jd.sample(make(noise), lin, x_T, grid, key=jax.random.key(0)).x
    aff = jd.testing.GaussianMixture([1.0], jnp.full((1, 1), mu), var).denoiser(schedule)
    m = jd.sample(make(ZeroNoise()), aff, jnp.full((1, 1), schedule.alpha(grid[0]) * mu), grid,
                  key=jax.random.key(0)).x[0, 0]
    return (float(jnp.abs(m - schedule.alpha(grid[-1]) * mu)),
            float(jnp.abs(jnp.sum(cols**2) - v(grid[-1]))))


@pytest.mark.parametrize("make", [
    lambda noise: Ancestral("dpm++2s", noise=noise),
    lambda noise: DPMSolverPPSDE(noise=noise),
], ids=["dpm++2s-ancestral", "dpm++sde"])
def test_weak_order_two(x64, make):
    """Exact weak errors (variance on Gaussian data from VP t = 1 to 1e-2, log-SNR grid; the
    mean is exact there) fall as ``h^2``: measured slope (16 -> 32 steps: 1.78 for
    dpm++2s-ancestral, 2.03 for dpm++sde) within 0.3 of the weak order 2."""
    solver = make(None)
    errs = [_weak_errors(make, VP, n) for n in (16, 32)]
    slope = np.log2(errs[0][1] / errs[1][1])
    assert abs(slope - solver.weak_order) < 0.3, errs
    assert max(errs[0][0], errs[1][0]) < 1e-12 and errs[1][1] < 0.01, errs


def test_dpmpp_sde_strong_order_on_a_brownian_path(x64):
    """DPM++ SDE with a BrownianPath: both stages' noise are increments of one path, so the
    sample converges pathwise as the grid is refined (RMS against a 128-step run, 8 and 32
    steps: measured 0.47 and 0.17, slope 0.73; asserted: above the claimed strong order 0.5
    by 0.1)."""
    mix = smooth_mixture()
    den = mix.denoiser(VP)
    x_T = jax.random.normal(jax.random.key(1), (16, 2), jnp.float64)
    errs = strong_errors(lambda p: DPMSolverPPSDE(noise=p), den, x_T, (8, 32), 128,
                         time_grid, BROWNIAN)
    slope = np.log(errs[1] / errs[0]) / np.log(4.0)
    assert -slope > DPMSolverPPSDE().strong_order + 0.1, errs


def test_lcm_law_is_exact_for_an_exact_consistency_function(x64):
    """LCM with the Gaussian flow map to t = 0 as ``x0_hat``: the output variance is the data
    variance on any grid (exact moments through SlotNoise-like columns); s_noise != 1 breaks
    it."""
    mean, var = 0.0, 0.3
    flow = jd.testing.fewstep.GaussianFlow(mean, var, VP)
    grid = jnp.append(jd.grids.time_uniform(VP, 2, 1.0, 0.3), 0.0)
    k = 4
    den = jd.Denoiser(lambda x, t: flow.consistency(x, t), VP, "x0")
    times = tuple(float(t) for t in np.asarray(grid))

    @dataclasses.dataclass(frozen=True)
    class Slots:
        def sample(self, key, x, t, t_next):
            slot = 1 + jnp.argmin(jnp.abs(jnp.asarray(times[:-1], x.dtype) - t))
            return jnp.broadcast_to(jax.nn.one_hot(slot, k, dtype=x.dtype), x.shape)

    x_T = jnp.zeros((1, k)).at[0, 0].set(jnp.sqrt(VP.alpha(1.0) ** 2 * var + VP.sigma(1.0) ** 2))
    for s_noise, exact in ((1.0, True), (0.7, False)):
        out = jd.sample(LCM(s_noise=s_noise, noise=Slots()), den, x_T, grid, key=jax.random.key(0))
        err = abs(float(jnp.sum(out.x**2)) - var)
        assert (err < 1e-12) == exact, (s_noise, err)
        assert int(out.nfe) == 3


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="method"):
        Ancestral("heun")
    with pytest.raises(ValueError, match="eta"):
        Ancestral(eta=-1.0)
    with pytest.raises(ValueError, match="s_noise"):
        DPMSolverPPSDE(s_noise=-0.1)
    with pytest.raises(ValueError, match="split"):
        Ancestral("dpm2", split="vp")
    with pytest.raises(ValueError, match="split='rf'"):
        jd.sample(Ancestral(split="rf"), _mixture_den(VP), jnp.ones((2, 2)),
                  jd.grids.karras(VP, 3, final_zero=True), key=jax.random.key(0))
    with pytest.raises(ValueError, match="alpha = 0"):
        jd.sample(HeunPP2(), _mixture_den(RF), jnp.ones((2, 2)), jd.grids.time_uniform(RF, 3),
                  key=None)


def test_dpmpp_2m_cfg_pp_is_comfyui_loop(x64):
    """``cfgpp_solver(DPMSolverPP(order=2, lower_order_final=False), history="uncond")`` with
    CFG++'s pair (registry name ``dpm++2m-cfg-pp``) equals ComfyUI's sample_dpmpp_2m_cfg_pp on
    EDM (written here); with a consistent pair it is DPM-Solver++(2M)."""
    from jaxdist.guidance import cfgpp_solver

    den = _mixture_den(EDM)
    grid = np.asarray(jd.grids.karras(EDM, 5, final_zero=True))
    x_T = 80.0 * np.random.default_rng(4).standard_normal((3, 2))
    guided = _GuidedPair(den, jnp.asarray([0.3, -0.2]))
    x, old_u = x_T.copy(), None
    lam = -np.log(np.maximum(grid, 1e-300))
    for i in range(5):
        x0, eps = (np.asarray(v) for v in guided(jnp.asarray(x), jnp.asarray(grid[i])))
        x0_u = x - grid[i] * eps
        h = lam[i + 1] - lam[i]
        mix = -np.exp(-h) * x0_u
        if old_u is not None and grid[i + 1] > 0:
            r = (lam[i] - lam[i - 1]) / h
            mix = mix - np.expm1(-h) / (2 * r) * (x0 - old_u)
        x, old_u = x0 + mix + np.exp(-h) * x, x0_u
    base = jd.solvers.DPMSolverPP(order=2, lower_order_final=False)
    solver = cfgpp_solver(base, history="uncond")
    assert jd.solvers.registry.by_name("dpmpp_2m_cfg_pp") == solver
    ours = jd.sample(solver, guided, jnp.asarray(x_T), jnp.asarray(grid)).x
    np.testing.assert_allclose(ours, x, rtol=1e-12, atol=1e-12)
    plain = jd.sample(solver, den, jnp.asarray(x_T), jnp.asarray(grid)).x
    np.testing.assert_allclose(plain, jd.sample(base, den, jnp.asarray(x_T),
                                                jnp.asarray(grid)).x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="history"):
        cfgpp_solver(base, history="old")


def _comfy_loop(grid, x_T, pair, step):
    """A ComfyUI sampler loop on EDM written in NumPy: ``step(i, x, D_g, D_u, state) -> x``
    with ``D_u = x - s eps_u`` from the pair at ``(x, grid[i])``."""
    x, state = x_T.copy(), {}
    for i in range(len(grid) - 1):
        x0, eps = (np.asarray(v) for v in pair(jnp.asarray(x), jnp.asarray(grid[i])))
        x = step(i, x, x0, x - grid[i] * eps, state)
    return x


def _down(s, sn, eta):
    """k-diffusion's get_ancestral_step: ``(s_down, s_up)``."""
    if not eta:
        return sn, 0.0
    su = min(sn, eta * np.sqrt(sn**2 * (s**2 - sn**2) / s**2))
    return np.sqrt(sn**2 - su**2), su


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_res_multistep_cfg_pp_is_comfyui_loop(x64, eta):
    """``res_multistep(_ancestral)_cfg_pp`` (``RESMultistep(cfg_pp=True)``) with CFG++'s pair
    equals ComfyUI's ``res_multistep(..., cfg_pp=True)`` on EDM: Euler steps
    ``x = D_g + s_down d_u``, multistep steps ``x = e^{-h}(x + D_g - D_u) + h(b1 D_u + b2
    D_u_old)``; with a plain denoiser it is RESMultistep."""
    from jaxdist.solvers import RESMultistep

    den = _mixture_den(EDM)
    grid = np.asarray(jd.grids.karras(EDM, 6, final_zero=True))
    x_T = 80.0 * np.random.default_rng(5).standard_normal((3, 2))
    z = np.random.default_rng(6).standard_normal((6, 3, 2))
    guided = _GuidedPair(den, jnp.asarray([0.3, -0.2]))

    def step(i, x, dg, du, st):
        s, sn = grid[i], grid[i + 1]
        sd, su = _down(s, sn, eta)
        if sd == 0 or "old" not in st:
            x = dg + (x - du) / s * sd
        else:
            t, t_old, t_next, t_prev = (-np.log(v) for v in (s, st["old_sd"], sd, grid[i - 1]))
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1 = np.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1, b2 = phi1 - phi2 / c2, phi2 / c2
            x = np.exp(-h) * (x + dg - du) + h * (b1 * du + b2 * st["old"])
        if sn > 0:
            x = x + z[i] * su
        st["old"], st["old_sd"] = du, sd
        return x

    want = _comfy_loop(grid, x_T, guided, step)
    name = "res_multistep_ancestral_cfg_pp" if eta else "res_multistep_cfg_pp"
    solver = dataclasses.replace(registry.by_name(name), noise=NoiseTable(grid, z))
    key = jax.random.key(0)
    ours = jd.sample(solver, guided, jnp.asarray(x_T), jnp.asarray(grid), key=key).x
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)
    base = RESMultistep(eta=eta, noise=NoiseTable(grid, z))
    np.testing.assert_allclose(jd.sample(solver, den, jnp.asarray(x_T), jnp.asarray(grid),
                                         key=key).x,
                               jd.sample(base, den, jnp.asarray(x_T), jnp.asarray(grid),
                                         key=key).x, rtol=1e-12, atol=1e-12)
    assert np.abs(jd.sample(base, guided, jnp.asarray(x_T), jnp.asarray(grid),
                            key=key).x - want).max() > 1e-3


def test_gradient_estimation_cfg_pp_is_comfyui_loop(x64):
    """``gradient_estimation_cfg_pp`` equals ComfyUI's ``sample_gradient_estimation(...,
    cfg_pp=True)`` on EDM, ``x = D_g + s_next d_u + (gamma - 1)(d_u - d_u_old)(s_next - s)``;
    on VP it is the same loop in ``x / alpha``; with a plain denoiser it is the base."""
    from jaxdist.solvers import GradientEstimation

    for schedule, grid in ((EDM, jd.grids.karras(EDM, 6, final_zero=True)),
                           (VP, jd.grids.karras(VP, 5, t_start=0.9, t_end=1e-3,
                                                final_zero=True))):
        den = _mixture_den(schedule)
        grid = np.asarray(grid)
        a = np.asarray(schedule.alpha(jnp.asarray(grid)))
        sig = np.asarray(schedule.sigma(jnp.asarray(grid))) / a
        x_T = np.random.default_rng(7).standard_normal((3, 2)) * np.hypot(a[0], sig[0] * a[0])
        guided = _GuidedPair(den, jnp.asarray([0.3, -0.2]))
        y, old = x_T / a[0], None
        for i in range(len(grid) - 1):
            x0, eps = (np.asarray(v) for v in guided(jnp.asarray(y * a[i]),
                                                     jnp.asarray(grid[i])))
            d = eps  # to_d(x~, s, D_u) = eps_u
            if sig[i + 1] == 0:
                y = x0
            else:
                y = x0 + d * sig[i + 1]
                if old is not None:
                    y = y + (2.0 - 1.0) * (d - old) * (sig[i + 1] - sig[i])
            old = d
        solver = registry.by_name("gradient_estimation_cfg_pp")
        ours = jd.sample(solver, guided, jnp.asarray(x_T), jnp.asarray(grid)).x
        np.testing.assert_allclose(ours, y * a[-1], rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(
            jd.sample(solver, den, jnp.asarray(x_T), jnp.asarray(grid)).x,
            jd.sample(GradientEstimation(), den, jnp.asarray(x_T), jnp.asarray(grid)).x,
            rtol=1e-12, atol=1e-12)


def test_dpmpp_2s_ancestral_cfg_pp_is_comfyui_loop(x64):
    """``dpmpp_2s_ancestral_cfg_pp`` (``Ancestral("dpm++2s", cfg_pp=True)``) equals ComfyUI's
    ``sample_dpmpp_2s_ancestral_cfg_pp`` on EDM (stages on ``D_u``, then ``+ D_g - D_u``) and,
    with ``split="rf"``, ``sample_dpmpp_2s_ancestral_RF_cfg_pp`` (``+ (1 - t_next)(D_g - D_u)``)."""
    eta = 0.8
    rng = np.random.default_rng(8)
    x_T, z = rng.standard_normal((3, 2)), rng.standard_normal((6, 3, 2))
    for schedule, split in ((EDM, "kdiffusion"), (RF, "rf")):
        den = _mixture_den(schedule)
        guided = _GuidedPair(den, jnp.asarray([0.3, -0.2]))
        if split == "rf":
            grid = np.append(np.asarray(jd.grids.time_uniform(RF, 5, 0.98, 0.02)), 0.0)
            start = x_T
        else:
            grid = np.asarray(jd.grids.karras(EDM, 5, final_zero=True))
            start = 80.0 * x_T
        # uncond D at (x, t): x - sigma eps_u over alpha (EDM: alpha = 1)
        alpha = lambda t: 1.0 - t if split == "rf" else 1.0  # noqa: E731

        def pair(x, t):
            x0, eps = (np.asarray(v) for v in guided(jnp.asarray(x), jnp.asarray(t)))
            sigma = t
            return x0, (x - sigma * eps) / alpha(t)

        x = start.copy()
        for i in range(len(grid) - 1):
            s, sn = grid[i], grid[i + 1]
            dg, du = pair(x, s)
            g = dg - du
            if split == "rf":
                sd = sn * (1 + (sn / s - 1) * eta)
            else:
                sd, su = _down(s, sn, eta)
            if sn == 0:
                x = du
            else:
                if split == "rf":
                    lam = lambda v: np.log((1 - v) / v)  # noqa: E731
                    sm = 1.0 / (np.exp(0.5 * (lam(s) + lam(sd))) + 1.0)
                    u = sm / s * x + (1 - sm / s) * du
                    x = sd / s * x + (1 - sd / s) * pair(u, sm)[1]
                    renoise = np.sqrt(sn**2 - sd**2 * (1 - sn) ** 2 / (1 - sd) ** 2)
                    x = (1 - sn) / (1 - sd) * x + renoise * z[i]
                else:
                    sm = np.sqrt(s * sd)  # the log-SNR midpoint of s and s_down
                    u = (sm / s) * x + (1 - sm / s) * du
                    x = (sd / s) * x + (1 - sd / s) * pair(u, sm)[1] + z[i] * su
            x = x + alpha(sn) * g
        solver = Ancestral("dpm++2s", eta=eta, split=split, cfg_pp=True,
                           noise=NoiseTable(grid, z))
        key = jax.random.key(0)
        ours = jd.sample(solver, guided, jnp.asarray(start), jnp.asarray(grid), key=key).x
        np.testing.assert_allclose(ours, x, rtol=1e-11, atol=1e-11, err_msg=split)
        plain = dataclasses.replace(solver, cfg_pp=False)
        np.testing.assert_allclose(
            jd.sample(solver, den, jnp.asarray(start), jnp.asarray(grid), key=key).x,
            jd.sample(plain, den, jnp.asarray(start), jnp.asarray(grid), key=key).x,
            rtol=1e-12, atol=1e-12)
    assert registry.canonical_name("dpmpp_2s_ancestral_cfg_pp") == "dpm++2s-ancestral-cfg-pp"


def test_dpm2_ancestral_rf_is_comfyui_loop(x64):
    """``Ancestral("dpm2", split="rf")`` equals ComfyUI's ``sample_dpm_2_ancestral_RF``: the
    DPM-Solver-2 step in ``(t, x)`` to ``t_down`` (stage ``sqrt(t t_down)``), then the RF
    renoising; it starts from pure noise (``t = 1``)."""
    den = _mixture_den(RF)
    grid = np.append(np.asarray(jd.grids.time_uniform(RF, 5, 1.0, 0.02)), 0.0)
    rng = np.random.default_rng(9)
    x_T, z = rng.standard_normal((4, 2)), rng.standard_normal((6, 4, 2))
    D = lambda x, t: np.asarray(den(jnp.asarray(x), jnp.asarray(t))[0])  # noqa: E731
    eta = 0.7
    x = x_T.copy()
    for i in range(len(grid) - 1):
        s, sn = grid[i], grid[i + 1]
        d = (x - D(x, s)) / s
        sd = sn * (1 + (sn / s - 1) * eta)
        if sd == 0:
            x = x + d * (sd - s)
            continue
        sm = np.exp(0.5 * (np.log(s) + np.log(sd)))
        x2 = x + d * (sm - s)
        x = x + (x2 - D(x2, sm)) / sm * (sd - s)
        renoise = np.sqrt(sn**2 - sd**2 * (1 - sn) ** 2 / (1 - sd) ** 2)
        x = (1 - sn) / (1 - sd) * x + renoise * z[i]
    solver = Ancestral("dpm2", eta=eta, split="rf", noise=NoiseTable(grid, z))
    ours = jd.sample(solver, den, jnp.asarray(x_T), jnp.asarray(grid), key=jax.random.key(0))
    np.testing.assert_allclose(ours.x, x, rtol=1e-11, atol=1e-11)
    assert bool(jnp.all(jnp.isfinite(ours.x)))
