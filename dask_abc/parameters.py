"""Parameter: the dict a model receives."""

from __future__ import annotations


class Parameter(dict):
    """A dict of parameter values that also allows attribute access.

    Examples
    --------
    >>> p = Parameter(theta=0.5)
    >>> p.theta == p["theta"]
    True
    """

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        self[name] = value

    def copy(self) -> Parameter:
        return Parameter(self)

    def __reduce__(self):
        return Parameter, (dict(self),)
