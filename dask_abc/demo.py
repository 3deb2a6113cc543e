"""The demo problem: choose between two Gaussian models and infer the mean.

Model m has prior N(mu_m, 0.5²) on theta and y ~ N(theta, 0.5²); y_obs = 1.
The evidence of model m is N(1; mu_m, sqrt(0.5² + 0.5²)), so the answer is
known exactly and printed beside the estimate.
"""

from __future__ import annotations

import math

import numpy as np

from .random_variables import RV, Distribution

PRIOR_MEANS = (0.0, 1.0)
PRIOR_SD = NOISE_SD = 0.5
OBSERVED = {"y": 1.0}


def gaussian_model(parameter):
    """y ~ N(theta, 0.5²)."""
    return {"y": parameter["theta"] + NOISE_SD * np.random.normal()}


def models_and_priors():
    models = [gaussian_model, gaussian_model]
    priors = [Distribution(theta=RV("norm", mu, PRIOR_SD)) for mu in PRIOR_MEANS]
    return models, priors


def exact_model_probabilities() -> np.ndarray:
    sd = math.hypot(PRIOR_SD, NOISE_SD)
    evidence = np.array([math.exp(-0.5 * ((OBSERVED["y"] - mu) / sd) ** 2) for mu in PRIOR_MEANS])
    return evidence / evidence.sum()


def exact_posterior(m: int) -> tuple[float, float]:
    """Mean and standard deviation of theta under model m."""
    precision = 1 / PRIOR_SD**2 + 1 / NOISE_SD**2
    mean = (PRIOR_MEANS[m] / PRIOR_SD**2 + OBSERVED["y"] / NOISE_SD**2) / precision
    return mean, precision**-0.5
