"""Validation of the IDs that end up inside Redis keys.

An ID is spliced into key names such as ``coupon:stock:{C}``; a brace would
move the key to another cluster slot and a colon would make two different IDs
collide on one key. So IDs are checked before any key is built.
"""

import re

from couponsim.errors import InvalidId

MAX_ID_LENGTH = 64
_ALLOWED = re.compile(r"[A-Za-z0-9._-]+")


def validate_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a usable ID, else raise :class:`InvalidId` naming ``kind``."""
    if not isinstance(value, str):
        raise InvalidId(f"{kind} ID must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidId(f"{kind} ID must have 1 to {MAX_ID_LENGTH} characters, got {len(value)}")
    if not _ALLOWED.fullmatch(value):
        raise InvalidId(
            f"{kind} ID {value!r} may only hold letters, digits, '.', '_' and '-'"
        )
    return value
