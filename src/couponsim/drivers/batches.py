"""Calls of a script that takes a batch, merged into one call and its reply split again.

The scripts that take a batch decide its requests in order exactly as one call each
would (tests/test_batched_scripts.py), so the calls of concurrent requests with the
same shared part may leave as one call: one EVALSHA, one script run, the shared
reads done once.
"""

from collections.abc import Hashable, Sequence
from typing import Any

from couponsim.effects import Script


def merge_key(script: Script) -> Hashable | None:
    """What calls must have in common to be merged (None: this script takes no batch)."""
    shape = script.shape
    if shape is None:
        return None
    return script.name, script.keys[:shape.shared_keys], script.args[:shape.shared_args]


def merge(scripts: Sequence[Script]) -> Script:
    """One call of every batch of ``scripts`` (same :func:`merge_key`), in their order."""
    first = scripts[0]
    shape = first.shape
    assert shape is not None and all(merge_key(s) == merge_key(first) for s in scripts)
    rest = scripts[1:]
    return Script(first.name,
                  first.keys + tuple(key for s in rest for key in s.keys[shape.shared_keys:]),
                  first.args + tuple(arg for s in rest for arg in s.args[shape.shared_args:]),
                  shape)


def split(scripts: Sequence[Script], reply: Sequence[Any]) -> list[list[Any]]:
    """The reply of :func:`merge`'s call, cut into each of ``scripts``' own reply."""
    replies: list[list[Any]] = []
    at = 0
    for script in scripts:
        shape = script.shape
        assert shape is not None
        size = (len(script.args) - shape.shared_args) // shape.args_each * shape.reply_each
        replies.append(list(reply[at:at + size]))
        at += size
    return replies
