"""Numerical oracles for testing samplers (public: use them on your own solvers)."""

from .gmm import ExactDenoiser as ExactDenoiser
from .gmm import GaussianMixture as GaussianMixture
from .gmm import builtin_mixture as builtin_mixture
from .order import OrderResult as OrderResult
from .order import empirical_order as empirical_order
from .order import measure_order as measure_order
from .fewstep import GaussianFlow as GaussianFlow
from .fewstep import gaussian_f_divergence as gaussian_f_divergence
from .fewstep import gaussian_kl as gaussian_kl
from .discrete import SequenceDistribution as SequenceDistribution
from .discrete import chi_square_test as chi_square_test

__all__ = ["ExactDenoiser", "GaussianMixture", "builtin_mixture", "OrderResult", "empirical_order",
           "measure_order", "GaussianFlow", "gaussian_f_divergence", "gaussian_kl",
           "SequenceDistribution", "chi_square_test"]
