"""Every setting in ``dask_abc.yaml`` is read by the package."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import dask_abc

PACKAGE = Path(dask_abc.__file__).parent


def leaf_keys(tree: dict, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """The dotted paths of the leaves of a parsed YAML mapping."""
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys += leaf_keys(value, prefix + (key,))
        else:
            keys.append(prefix + (key,))
    return keys


def sources() -> dict[Path, str]:
    return {path: path.read_text() for path in PACKAGE.rglob("*.py")}


def is_read(key: tuple[str, ...], texts: dict[Path, str]) -> bool:
    """Whether ``abc.<section>.<leaf>`` is read: its dotted name (``"section.leaf"``, as
    ``config.get`` takes it) is a string in the package, or the leaf's name is a string
    in a module that reads keys by a formatted name (``config.get(f"...{key}")``) whose
    section is named literally there (``f"section.{key}"``) or passed in as a string
    (``"section"``, e.g. ``Auto("broker")``) somewhere in the package."""
    *section, leaf = key[1:]
    dotted = ".".join((*section, leaf))
    if any(re.search(rf"""["']{re.escape(dotted)}["']""", text) for text in texts.values()):
        return True
    parent = ".".join(section)
    named = any(re.search(rf"""["']{re.escape(parent)}["']""", text) for text in texts.values())
    for text in texts.values():
        formatted = re.search(r"""config\.get\(f["'][^"']*\{""", text)
        if not formatted or not re.search(rf"""["']{re.escape(leaf)}["']""", text):
            continue
        if re.search(rf"""f["']{re.escape(parent)}\.\{{""", text) or named:
            return True
    return False


def test_every_key_of_the_defaults_is_read_by_the_package():
    defaults = yaml.safe_load((PACKAGE / "dask_abc.yaml").read_text())
    keys = leaf_keys(defaults)
    assert keys and all(key[0] == "abc" for key in keys)
    texts = sources()
    unread = [".".join(key) for key in keys if not is_read(key, texts)]
    assert unread == [], f"keys of dask_abc.yaml that nothing reads: {unread}"


def test_the_check_finds_a_key_nothing_reads():
    texts = sources()
    assert is_read(("abc", "dask", "max-batch-size"), texts)
    assert is_read(("abc", "cluster", "walltime"), texts)
    assert not is_read(("abc", "dask", "no-such-setting"), texts)
    assert not is_read(("abc", "no-such-section", "walltime"), texts)
