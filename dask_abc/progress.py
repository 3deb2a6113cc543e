"""Progress bars of a run: one per generation, in terminals and notebooks."""

from __future__ import annotations

from collections.abc import Sequence

from .generation import BatchResult
from .observers import GenerationObserver, GenerationOutcome


class GenerationProgress(GenerationObserver):
    """Progress bars of a run's generations (tqdm's, the notebook widget in Jupyter):
    accepted i/n, evaluations (and how many failed, with ``model_errors="reject"``),
    acceptances per second; a finished generation's bar keeps its summary.

    A bar counts every accepted evaluation that has returned, also beyond the
    contiguous prefix that decides the population, so it may briefly show more
    than the population needs before the generation completes.

    Parameters
    ----------
    file : file-like, optional
        Where the bars are written (tqdm's default: standard error).

    Examples
    --------
    >>> import io
    >>> from dask_abc.observers import GenerationOutcome
    >>> bars = GenerationProgress(file=io.StringIO())
    >>> bars.on_start(0, 10, epsilon=1.0)
    >>> bars.on_end(GenerationOutcome(t=0, epsilon=1.0, summary="eps=1.0"))
    """

    def __init__(self, file=None):
        self.file = file
        self.bar = None

    def on_start(self, t: int, n: int, epsilon: float,
                 restored: Sequence[BatchResult] = ()) -> None:
        from tqdm.auto import tqdm

        self.close()
        self.n = n
        self.accepted = sum(b.n_accepted for b in restored)
        self.evaluations = sum(b.n_evaluated for b in restored)
        self.failed = sum(b.n_failed for b in restored)
        name = "calibration" if t < 0 else f"t={t}"
        self.bar = tqdm(total=n, initial=min(self.accepted, n), desc=name, unit=" accepted",
                        leave=True, dynamic_ncols=True, file=self.file)
        self._show()

    def _show(self) -> None:
        failed = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.evaluations} evaluations{failed}", refresh=False)

    def on_batch(self, batch: BatchResult) -> None:
        before = min(self.accepted, self.n)
        self.accepted += batch.n_accepted
        self.evaluations += batch.n_evaluated
        self.failed += batch.n_failed
        self._show()
        self.bar.update(min(self.accepted, self.n) - before)

    def on_end(self, outcome: GenerationOutcome) -> None:
        """End the bar, with the generation's summary in place of the counters."""
        if self.bar is not None and outcome.summary is not None:
            self.bar.n = self.n
            self.bar.set_postfix_str(outcome.summary, refresh=False)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
