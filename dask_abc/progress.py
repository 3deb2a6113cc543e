"""Progress bars of a run: one per generation, in terminals and notebooks."""

from __future__ import annotations

from collections.abc import Sequence

from .generation import BatchResult


class GenerationProgress:
    """A progress bar of one generation (tqdm's, the notebook widget in Jupyter):
    accepted i/n, evaluations, acceptances per second; finished, it keeps the
    generation's summary.

    The bar counts every accepted evaluation that has returned, also beyond the
    contiguous prefix that decides the population, so it may briefly show more
    than the population needs before the generation completes.

    Parameters
    ----------
    t : int
        The generation (-1: the calibration sample).
    n : int
        The population size.
    restored : sequence of BatchResult
        Results a resumed generation starts with.

    Examples
    --------
    >>> import io
    >>> bar = GenerationProgress(0, 10, file=io.StringIO())
    >>> bar.close("eps=1.0")
    """

    def __init__(self, t: int, n: int, restored: Sequence[BatchResult] = (), file=None):
        from tqdm.auto import tqdm

        self.n = n
        self.accepted = sum(b.n_accepted for b in restored)
        self.evaluations = sum(b.n_evaluated for b in restored)
        name = "calibration" if t < 0 else f"t={t}"
        self.bar = tqdm(total=n, initial=min(self.accepted, n), desc=name, unit=" accepted",
                        leave=True, dynamic_ncols=True, file=file)
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(f"{self.evaluations} evaluations", refresh=False)

    def update(self, batch: BatchResult) -> None:
        """Count a returned batch (a :class:`~dask_abc.sample.SampleCollector` callback)."""
        before = min(self.accepted, self.n)
        self.accepted += batch.n_accepted
        self.evaluations += batch.n_evaluated
        self._show()
        self.bar.update(min(self.accepted, self.n) - before)

    def close(self, summary: str | None = None) -> None:
        """End the bar, with the generation's ``summary`` in place of the counters."""
        if summary is not None:
            self.bar.n = self.n
            self.bar.set_postfix_str(summary, refresh=False)
        self.bar.close()
