"""Structural descriptions of an ABC-SMC setup, to check a resumed run against the stored one.

Pickles cannot be compared: cloudpickle pickles importable functions by reference
(an edited model body pickles to the same bytes) and scipy's frozen distributions
carry numpy's global random state. :func:`describe` builds a canonical, JSON-able
description instead (functions by source, defaults, closure and simple globals),
:func:`fingerprint` hashes it and :func:`differences` says what changed.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import inspect
import json
import math
import random
import textwrap
import types
from collections.abc import Mapping

import numpy as np

#: What :func:`describe` returns: JSON values only.
Description = dict | list | str | int | float | bool | None
MAX_DEPTH = 12
_ARRAY_VALUES = 20  # larger arrays are described by a hash
_RANDOM = (np.random.Generator, np.random.RandomState, np.random.SeedSequence,
           np.random.BitGenerator, random.Random)
_NAMED = (type, types.ModuleType, types.BuiltinFunctionType, np.ufunc)


def describe(obj) -> Description:
    """A canonical description of ``obj`` of plain dicts, lists, strings and numbers.

    Equal setups give equal descriptions, in any process; see the module docstring.

    Examples
    --------
    >>> describe((1, 2.5, "a"))
    [1, 2.5, 'a']
    >>> describe({"p": float("inf")})
    {'type': 'builtins.dict', 'items': {'p': {'float': 'inf'}}}
    >>> describe(lambda p: p["theta"])["source"]
    'lambda p: p["theta"]'
    """
    return _describe(obj, set(), 0)


def fingerprint(description: Description) -> str:
    """The sha256 of the canonical JSON of a description.

    Examples
    --------
    >>> fingerprint(describe([1, 2])) == fingerprint([1, 2])
    True
    >>> len(fingerprint(None))
    64
    """
    return _sha(_canon(description))


def differences(stored: Mapping, current: Mapping, labels: Mapping | None = None,
                limit: int = 10) -> list[str]:
    """Human-readable lines naming what differs between two described setups.

    Parameters
    ----------
    stored, current : mapping
        Component name -> :func:`describe` output, as stored and as now.
    labels : mapping, optional
        Nicer texts for component names.
    limit : int
        At most this many differences; a last line says when there are more.

    Examples
    --------
    >>> differences({"eps": describe({"alpha": 0.5})}, {"eps": describe({"alpha": 0.4})})
    ["eps['alpha']: stored 0.5, now 0.4"]
    >>> differences({"models": [1, 2]}, {"models": [1]}, labels={"models": "model"})
    ['model: stored [1, 2], now [1]']
    """
    out: list[str] = []
    labels = labels or {}
    _walk_mapping(stored, current, lambda k: str(labels.get(k, k)), out, limit)
    if len(out) > limit:
        return out[:limit] + ["... and more differences"]
    return out


# -- describe ----------------------------------------------------------------------


def _describe(obj, seen: set[int], depth: int):
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
    if isinstance(obj, np.generic):
        return _describe(obj.item(), seen, depth)
    if isinstance(obj, _RANDOM):
        return "<random state>"
    if isinstance(obj, _NAMED):
        return _name(obj)
    if id(obj) in seen:
        return "<cycle>"
    if depth >= MAX_DEPTH:
        return "<deep>"
    seen.add(id(obj))
    try:
        return _describe_container(obj, lambda x: _describe(x, seen, depth + 1))
    finally:
        seen.discard(id(obj))


def _describe_container(obj, sub):
    if isinstance(obj, np.ndarray):
        desc = {"array": list(obj.shape), "dtype": str(obj.dtype)}
        if obj.size <= _ARRAY_VALUES:
            return {**desc, "values": sub(obj.tolist())}
        data = _canon(sub(obj.tolist())) if obj.dtype.hasobject else obj.tobytes()
        return {**desc, "sha256": _sha(data)}
    if isinstance(obj, list | tuple):
        return [sub(x) for x in obj]
    if isinstance(obj, Mapping):
        return {"type": _name(type(obj)), "items": {str(k): sub(v) for k, v in obj.items()}}
    if isinstance(obj, set | frozenset):
        return sorted((sub(x) for x in obj), key=_canon)
    if isinstance(obj, types.FunctionType):
        return _describe_function(obj, sub)
    if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
        return {"bound": sub(obj.__func__), "self": sub(obj.__self__)}
    if callable(obj) and hasattr(obj, "__wrapped__"):  # functools.wraps and the like
        return sub(obj.__wrapped__)
    if callable(obj) and hasattr(obj, "__qualname__"):  # compiled: no Python code to describe
        return _name(obj)
    if isinstance(obj, functools.partial):
        return {"type": "functools.partial", "attributes": {
            "func": sub(obj.func), "args": sub(obj.args), "keywords": sub(obj.keywords)}}
    if all(hasattr(obj, a) for a in ("dist", "args", "kwds")):  # a frozen scipy.stats one
        return {"scipy": getattr(obj.dist, "name", _name(type(obj.dist))),
                "args": sub(obj.args), "kwds": sub(obj.kwds)}
    attributes = _attributes(obj)
    text = "" if attributes else repr(obj)
    if " at 0x" in text:  # the default repr: an address, not a description
        text = ""
    if attributes is None:
        return text or _name(type(obj))
    desc = {"type": _name(type(obj)), "attributes": {k: sub(v) for k, v in attributes.items()}}
    # An object keeping only private state (a Fraction, a DataFrame) is known by its repr.
    return {**desc, "repr": text} if text else desc


def _attributes(obj) -> dict | None:
    """The public, not run-time, attributes of ``obj`` (None if it has neither dict nor slots).

    Run-time attributes are fitted or derived while a run goes on rather than set up by
    the user: a class names them in its ``_runtime_attributes`` tuple, which holds for
    its subclasses too (the names of all classes in the MRO are skipped).
    """
    mro = type(obj).__mro__
    slots = []
    for cls in mro:
        names = cls.__dict__.get("__slots__", ())
        slots += [names] if isinstance(names, str) else list(names)
    found = getattr(obj, "__dict__", None)
    if not isinstance(found, dict) and not slots:
        return None
    found = dict(found or {})
    found.update((s, getattr(obj, s)) for s in slots if hasattr(obj, s))
    skip = set().union(*(c.__dict__.get("_runtime_attributes", ()) for c in mro))
    return {k: v for k, v in found.items() if not k.startswith("_") and k not in skip}


def _describe_function(func: types.FunctionType, sub) -> dict:
    code = func.__code__
    positional = code.co_varnames[:code.co_argcount]
    defaults = dict(zip(positional[len(positional) - len(func.__defaults__ or ()):],
                        func.__defaults__ or ()))
    defaults.update(func.__kwdefaults__ or {})
    cells = {}
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            cells[name] = sub(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            cells[name] = "<empty cell>"
    source = _source(func)
    return {
        "function": _name(func),
        **({"source": source} if source is not None else {"code": _code_digest(code)}),
        "defaults": {k: sub(v) for k, v in defaults.items()},
        "closure": cells,
        "globals": {n: sub(func.__globals__[n]) for n in sorted(_global_names(code))
                    if n in func.__globals__ and _simple(func.__globals__[n])},
    }


def _source(func: types.FunctionType) -> str | None:
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    if func.__name__ == "<lambda>":  # getsource gives the whole statement around it
        text = _lambda_segment(func) or text
    return textwrap.dedent(text).strip()


def _lambda_segment(func: types.FunctionType) -> str | None:
    """The lambda expression alone: the innermost one spanning its code's positions."""
    positions = getattr(func.__code__, "co_positions", None)  # Python >= 3.11
    try:
        whole = "".join(inspect.findsource(func)[0])
        tree = ast.parse(whole)
    except (OSError, SyntaxError, ValueError):
        return None
    spans = [(a, c, b, d) for a, b, c, d in (positions() if positions else ())
             if None not in (a, b, c, d) and (c, d) != (0, 0)]
    if not spans:
        return None
    lo, hi = min(s[:2] for s in spans), max(s[2:] for s in spans)
    fits = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)
            and (n.lineno, n.col_offset) <= lo and hi <= (n.end_lineno, n.end_col_offset)]
    if not fits:
        return None
    return ast.get_source_segment(whole, max(fits, key=lambda n: (n.lineno, n.col_offset)))


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _simple(value) -> bool:
    if isinstance(value, list | tuple):
        return all(_simple(v) for v in value)
    return isinstance(value, int | float | complex | str | bytes | np.generic | np.ndarray)


def _code_digest(code: types.CodeType) -> str:
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else describe(c)
              for c in code.co_consts]
    return _sha(code.co_code + _canon([consts, list(code.co_names)]).encode())


def _name(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if qualname is None:
        return _name(type(obj))
    module = getattr(obj, "__module__", None) or ("numpy" if isinstance(obj, np.ufunc) else "")
    return f"{module}.{qualname}" if module else qualname


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# -- differences ---------------------------------------------------------------------


def _kind(d) -> str:
    if isinstance(d, list):
        return "list"
    if isinstance(d, dict):
        for kind in ("items", "attributes", "function", "bound", "scipy", "array"):
            if kind in d:
                return kind
    return "scalar"  # including {"float": "inf"}


def _show(d) -> str:
    kind = _kind(d)
    if kind == "scalar":
        return d["float"] if isinstance(d, dict) else repr(d)
    if kind == "list":
        if len(d) <= 6 and all(_kind(x) == "scalar" for x in d):
            return "[" + ", ".join(_show(x) for x in d) + "]"
        return f"a list of {len(d)}"
    if kind == "items":
        return f"a {d['type']} of {len(d['items'])} items"
    if kind == "attributes":
        return f"a {d['type']} object"
    if kind == "function":
        return f"function {d['function']}"
    if kind == "bound":
        return f"method {_show(d['bound'])}"
    if kind == "scipy":
        return f"scipy.stats.{d['scipy']}({', '.join(_show(a) for a in d['args'])})"
    return f"an array of shape {tuple(d['array'])} ({d['dtype']})"


def _walk(a, b, path: str, out: list[str], limit: int) -> None:
    if len(out) > limit or _canon(a) == _canon(b):
        return
    kind = _kind(a)
    key = {"items": "type", "attributes": "type", "function": "function", "scipy": "scipy",
           "array": "array"}.get(kind)
    if kind != _kind(b) or kind == "scalar":
        out.append(f"{path}: stored {_show(a)}, now {_show(b)}")
    elif key == "type" and a[key] != b[key]:
        out.append(f"{path}: type {a[key]} stored, {b[key]} now")
    elif (key and a[key] != b[key]) or (kind == "array" and a["dtype"] != b["dtype"]):
        out.append(f"{path}: {_show(a)} stored, {_show(b)} now")
    elif kind == "list" and len(a) != len(b):
        if _show(a).startswith("[") and _show(b).startswith("["):
            out.append(f"{path}: stored {_show(a)}, now {_show(b)}")
        else:
            out.append(f"{path}: {_entries(len(a))} stored, {len(b)} now")
    elif kind == "array" and "values" not in a:
        out.append(f"{path}: the values of {_show(a)} changed")
    elif kind in ("list", "array"):
        pairs = zip(a, b) if kind == "list" else zip(a["values"], b["values"])
        for i, (x, y) in enumerate(pairs):
            _walk(x, y, f"{path}[{i}]", out, limit)
    elif kind in ("items", "attributes"):
        if a.get("repr") != b.get("repr"):
            out.append(f"{path}: stored {a.get('repr')}, now {b.get('repr')}")
        fmt = (lambda k: f"{path}[{k!r}]") if kind == "items" else (lambda k: f"{path}.{k}")
        _walk_mapping(a[kind], b[kind], fmt, out, limit)
    elif kind == "scipy":
        _walk(a["args"], b["args"], f"{path}.args", out, limit)
        _walk(a["kwds"], b["kwds"], f"{path}.kwds", out, limit)
    elif kind == "bound":
        _walk(a["bound"], b["bound"], path, out, limit)
        _walk(a["self"], b["self"], f"{path}.__self__", out, limit)
    else:
        _walk_function(a, b, f"{path} (function {a['function']})", out, limit)


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _walk_function(a: dict, b: dict, path: str, out: list[str], limit: int) -> None:
    if a.get("source") != b.get("source") or a.get("code") != b.get("code"):
        message = f"{path}: code changed"
        if a.get("source") is not None and b.get("source") is not None:
            diff = list(difflib.unified_diff(a["source"].splitlines(), b["source"].splitlines(),
                                             lineterm="", n=1))[2:]
            message += "".join(f"\n    {line}" for line in diff[:12])
            message += "\n    ..." if len(diff) > 12 else ""
        out.append(message)
    for field, label in (("defaults", "default of argument"), ("closure", "captured variable"),
                         ("globals", "global")):
        _walk_mapping(a[field], b[field], lambda k, lb=label: f"{path}: {lb} {k}", out, limit)


def _walk_mapping(a: Mapping, b: Mapping, fmt, out: list[str], limit: int) -> None:
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in b:
            out.append(f"{fmt(key)}: stored {_show(a[key])}, not present now")
        elif key not in a:
            out.append(f"{fmt(key)}: not stored, now {_show(b[key])}")
        else:
            _walk(a[key], b[key], fmt(key), out, limit)
        if len(out) > limit:
            return
