"""Calls of a script that takes a batch, merged into one call and its reply split again.

The scripts that take a batch decide its requests in order exactly as one call each
would (tests/test_batched_scripts.py), so the calls of concurrent requests with the
same shared part may leave as one call: one EVALSHA, one script run, the shared
reads done once.
"""

from collections.abc import Hashable, Sequence
from typing import Any

from couponsim.effects import Command, Script


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
        size = script.requests * shape.reply_each
        replies.append(list(reply[at:at + size]))
        at += size
    return replies


def calls(effects: Sequence[Command | Script]) -> list[tuple[Command | Script, list[int]]]:
    """The calls that send ``effects``, each with the positions of the effects it
    answers, in the order of their first effect: the calls of a batched script with the
    same shared part become one, at the place of the first of them."""
    grouped: list[tuple[Command | Script, list[int]]] = []
    merged: dict[Hashable, int] = {}
    for position, effect in enumerate(effects):
        key = merge_key(effect) if isinstance(effect, Script) else None
        if key is not None and key in merged:
            grouped[merged[key]][1].append(position)
            continue
        if key is not None:
            merged[key] = len(grouped)
        grouped.append((effect, [position]))
    return [(effect if len(members) == 1
             else merge([_script(effects[n]) for n in members]), members)
            for effect, members in grouped]


def answers(effects: Sequence[Command | Script], reply: Any) -> list[Any]:
    """Each of ``effects``' answer from the reply of the one call that sent them all: a
    single effect's is the reply itself, an error is every member's, and a merged
    call's reply is split."""
    if len(effects) == 1 or isinstance(reply, Exception):
        return [reply] * len(effects)
    return split([_script(effect) for effect in effects], reply)


def _script(effect: Command | Script) -> Script:
    assert isinstance(effect, Script), "only scripts are merged"
    return effect
