"""The Lua scripts of lua/, loaded once and called by SHA.

redis-py's :class:`~redis.commands.core.Script` sends EVALSHA and, on
NOSCRIPT (a restarted or failed-over Redis), loads the source and retries; in
a pipeline it loads missing scripts before the pipeline runs.
"""

from functools import cache
from pathlib import Path

from redis.commands.core import Script

from couponsim.bundled import bundled_dir
from couponsim.connection import RedisClient


def lua_dir() -> Path:
    return bundled_dir("lua")


@cache
def script_names() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in lua_dir().glob("*.lua")))


@cache
def script_source(name: str) -> str:
    if name not in script_names():
        raise KeyError(f"no script {name!r} in {lua_dir()}; known: {', '.join(script_names())}")
    return (lua_dir() / f"{name}.lua").read_text()


class ScriptRegistry:
    """The scripts of lua/ bound to one client, each loaded on its first call."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._scripts: dict[str, Script] = {}

    def __getitem__(self, name: str) -> Script:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(script_source(name))
        return script
