"""Settings of the command line's runs: defaults, names and the keys a resumed run must match.

Plain Python (no JAX), so that building the argument parser stays instant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TRAIN_OBJECTIVES", "FEWSTEP_OBJECTIVES", "DEFAULTS", "OBJECTIVE_DEFAULTS",
           "DSM_PREDICTIONS", "MODEL_KEYS",
           "ICT_TIME_MAX_FREQ", "DATA_NAMES", "DEMO_DATA", "DEMO_SOLVERS", "DEMO_NFES",
           "BENCH_SCHEDULES", "BENCH_NFES", "STOCHASTIC_NFES", "DISCRETE_OBJECTIVES",
           "TOKEN_DATA_NAMES", "DISCRETE_DEFAULTS", "DISCRETE_KEYS", "DISCRETE_SAMPLERS"]

TRAIN_OBJECTIVES = ("dsm", "edm", "fm", "ot-fm", "ict")
#: few-step models trained from data alone (:func:`jaxdist.cli.distill_runs.train_fewstep_run`)
FEWSTEP_OBJECTIVES = ("scm", "meanflow", "shortcut")

#: the built-in data sets (the names of ``jaxdist.data.DATASETS``; a test keeps them equal)
DATA_NAMES = ("two-moons", "checkerboard", "gmm", "digits")

#: settings of a run (saved as the checkpoint's config; the ``MODEL_KEYS`` must match on resume)
DEFAULTS: dict[str, Any] = {"batch_size": 256, "lr": 1e-3, "hidden": 256, "depth": 3,
                            "ema_decay": 0.999, "grad_clip": 1.0, "seed": 0, "prediction": None}
#: settings that differ by objective (explicit settings win). ``dsm`` trains a v-prediction
#: network: with eps-prediction the same MLP's PF-ODE diverged on digits (docs/training.md).
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {"ict": {"lr": 5e-4}, "dsm": {"prediction": "v"}}
DSM_PREDICTIONS = ("eps", "x0", "v")
#: iCT needs a smooth time embedding (the consistency function must change little between
#: adjacent noise levels), the data's own sigma_data and a lower learning rate; with the MLP's
#: default embedding, sigma_data = 0.5 and lr 2e-3 the samples collapsed (docs/training.md).
ICT_TIME_MAX_FREQ = 1.0
MODEL_KEYS = ("data", "objective", "hidden", "depth", "batch_size", "lr", "ema_decay",
              "grad_clip", "seed", "dim", "prediction")

#: ``jaxdist demo``: flow matching on a 2-D set, sampled with three solvers at three budgets
DEMO_DATA = ("two-moons", "checkerboard", "gmm")
DEMO_SOLVERS = ("ddim", "dpm++2m", "dpm++3m")
DEMO_NFES = (5, 10, 20)

#: ``jaxdist bench``: the schedules it offers and the default NFE budgets
BENCH_SCHEDULES = {"vp": "VP linear", "edm": "EDM", "rf": "rectified flow"}
BENCH_NFES = (5, 8, 10, 20, 50)
STOCHASTIC_NFES = (10, 20, 50, 100)

#: discrete diffusion (:mod:`jaxdist.cli.discrete_runs`): objectives, token data, settings.
#: ``sedd`` is score entropy on the masked process, ``sedd-uniform`` on the uniform one.
DISCRETE_OBJECTIVES = ("mdlm", "radd", "sedd", "sedd-uniform")
#: the built-in token data sets (the names of ``jaxdist.data.TOKEN_DATASETS``)
TOKEN_DATA_NAMES = ("digits-tokens", "markov")
#: settings of a discrete run: ``hidden`` is the transformer's width, ``depth`` its blocks;
#: Adam with a linear warm-up over ``warmup`` steps, then constant (nothing depends on the total
#: steps, so a resumed run equals an uninterrupted one)
DISCRETE_DEFAULTS: dict[str, Any] = {"batch_size": 128, "lr": 2e-3, "hidden": 64, "depth": 2,
                                     "ema_decay": 0.99, "grad_clip": 1.0, "seed": 0,
                                     "warmup": 100}
DISCRETE_KEYS = ("kind", "data", "objective") + tuple(DISCRETE_DEFAULTS)
#: ``jaxdist sample --sampler`` names -> ``jd.discrete.SAMPLERS`` keys
DISCRETE_SAMPLERS = {"first-hitting": "first_hitting", "ancestral": "ancestral",
                     "tau-leaping": "tau_leaping", "analytic": "analytic",
                     "entropy-bounded": "entropy_bounded"}
