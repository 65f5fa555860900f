"""Validation of what callers hand in: IDs that end up inside Redis keys, and times.

An ID is spliced into key names such as ``coupon:stock:{C}``; a brace would
move the key to another cluster slot and a colon would make two different IDs
collide on one key. So IDs are checked before any key is built.
"""

import re

from couponsim.errors import InvalidId, InvalidInput

MAX_ID_LENGTH = 64
MAX_WHOLE_NUMBER = 2**53 - 1
"""Largest whole number kept exactly by Lua's doubles, and so by the scripts."""
ID_PATTERN = r"[A-Za-z0-9._-]+"
"""The characters an ID may have (also stated in the service's OpenAPI schema)."""
_ALLOWED = re.compile(ID_PATTERN)


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


def validate_ms(name: str, value: object) -> int:
    """Return ``value`` if it is a time in whole milliseconds a script can hold exactly."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= MAX_WHOLE_NUMBER:
        raise InvalidInput(f"{name} must be whole milliseconds from 0 to 2**53-1, got {value!r}")
    return value
