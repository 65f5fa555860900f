"""The suite. Imported before any test module, so before ``couponsim``: each test
process gets its own pub/sub channel namespace here (``keys.CHANNEL_NAMESPACE`` is
read once, at import), since Redis scopes keys by database but not channels; every
``couponsim`` process a test starts inherits it. Set, not defaulted: xdist's workers
inherit the environment of the process that started them, which ran this too.
See ``tests/isolation.py``."""

import os

os.environ["COUPONSIM_CHANNEL_NAMESPACE"] = f"test-{os.getpid()}"
