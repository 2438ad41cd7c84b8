"""Quality metrics against closed forms, and the built-in data sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist.data import DATASETS, digit_levels, get_dataset
from jaxdist.metrics import frechet_distance, mmd_rbf, sliced_wasserstein


def test_sliced_wasserstein_of_a_shift():
    """Shifting by c: W2 of each projection is |theta.c|, so SW2 = |c| / sqrt(d) on average."""
    x = np.asarray(jax.random.normal(jax.random.key(0), (500, 2)))
    c = np.array([0.6, -0.8])  # |c| = 1
    key = jax.random.key(1)
    assert float(sliced_wasserstein(key, x, x)) == 0.0
    sw = float(sliced_wasserstein(key, x, x + c, n_projections=4096))
    assert abs(sw - 1 / np.sqrt(2)) < 0.02, sw
    # 1-D: every direction is +-1, so the distance is exactly |c|
    np.testing.assert_allclose(float(sliced_wasserstein(key, x[:, :1], x[:, :1] + 0.3)), 0.3,
                               rtol=1e-5)
    # different sample sizes go through quantiles
    assert abs(float(sliced_wasserstein(key, x, x[:300] + c, n_projections=4096)) - 0.707) < 0.05


def test_mmd_separates_distributions():
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    a = jax.random.normal(k1, (800, 2))
    b = jax.random.normal(k2, (800, 2))
    c = jax.random.normal(k3, (800, 2)) * 1.5 + 0.5
    same, diff = float(mmd_rbf(a, b)), float(mmd_rbf(a, c))
    assert abs(same) < 5e-3 and diff > 10 * max(abs(same), 1e-3), (same, diff)
    with pytest.raises(ValueError, match="same d"):
        mmd_rbf(a, jnp.zeros((10, 3)))


def test_frechet_distance_matches_gaussian_closed_form():
    """|m1 - m2|^2 + sum_i (s1_i - s2_i)^2 for diagonal Gaussians. The samples are whitened to
    have exactly the target mean and covariance, so only float32 rounding remains."""
    rng = np.random.default_rng(0)

    def white(n):
        z = rng.standard_normal((n, 3))
        z -= z.mean(0)
        return z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T

    m1, s1 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.5, 2.0])
    m2, s2 = np.array([0.5, 1.0, 0.0]), np.array([1.0, 1.0, 1.0])
    x, y = m1 + s1 * white(500), m2 + s2 * white(700)
    exact = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    np.testing.assert_allclose(frechet_distance(x, y), exact, rtol=1e-4)
    assert abs(frechet_distance(x, x)) < 1e-6


@pytest.mark.parametrize("name", list(DATASETS))
def test_datasets(name):
    if name == "digits":
        pytest.importorskip("sklearn")
    ds = get_dataset(name)
    x = jax.jit(lambda k: ds.sample(k, 128))(jax.random.key(0))
    assert x.shape == (128, ds.dim) and x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x)))
    held = ds.held_out(64)
    np.testing.assert_array_equal(held, ds.held_out(64))  # fixed
    assert not np.array_equal(np.asarray(x[:64]), held)
    if name == "digits":
        assert ds.image_shape == (8, 8) and -1.0 <= held.min() and held.max() <= 1.0
        assert ds.held_out_size == 297
        offset = np.asarray(x) - (digit_levels(x) / 8.0 - 1.0)
        assert np.all(np.abs(offset) <= 1 / 16 + 1e-6)  # dequantised within the level's bin
        assert abs(offset.std() - 1 / 8 / np.sqrt(12)) < 2e-3  # uniform over it
    else:
        assert np.all(np.abs(np.asarray(x)) < 4.0)
    with pytest.raises(ValueError, match="unknown data set"):
        get_dataset("mnist")


def test_dataset_std_is_the_sigma_data_of_the_data():
    # checkerboard: each coordinate is uniform on [-2, 2] (the dark squares cover every column
    # and row equally), so its std is sqrt(16 / 12); two-moons is standardised to about 1
    np.testing.assert_allclose(get_dataset("checkerboard").std, np.sqrt(4.0 / 3.0), atol=0.01)
    np.testing.assert_allclose(get_dataset("two-moons").std, 1.0, atol=0.03)


def test_gaussian_frechet_against_a_known_gaussian():
    """N(0, I) samples against N((1, 0), I): 1; 2 N(0, I) against N(0, I): 2 (2 - 1)^2 = 2."""
    from jaxdist.metrics import fit_gaussian, gaussian_frechet

    x = np.random.default_rng(0).standard_normal((200000, 2))
    assert abs(gaussian_frechet(*fit_gaussian(x), np.array([1.0, 0.0]), np.eye(2)) - 1.0) < 0.02
    assert abs(gaussian_frechet(*fit_gaussian(2 * x), np.zeros(2), np.eye(2)) - 2.0) < 0.03
    assert gaussian_frechet(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)
