"""Numerical oracles for testing samplers (public: use them on your own solvers)."""

from .gmm import ExactDenoiser as ExactDenoiser
from .gmm import GaussianMixture as GaussianMixture
from .order import OrderResult as OrderResult
from .order import empirical_order as empirical_order
from .order import measure_order as measure_order
