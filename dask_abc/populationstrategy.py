"""Population sizes (pyABC's ``populationstrategy`` module)."""

from __future__ import annotations


class ConstantPopulationSize:
    """The same number of particles in every generation.

    Examples
    --------
    >>> ConstantPopulationSize(500).nr_particles
    500
    """

    def __init__(self, nr_particles: int):
        self.nr_particles = nr_particles
