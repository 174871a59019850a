"""Named crash points, for the tests that prove a `kill -9` loses and duplicates nothing.

With NEWSALERT_FAILPOINT=<name> in the environment, the process SIGKILLs itself when it
reaches that point: no cleanup, no flush, exactly like a power cut or the OOM killer.
Unset (always, outside those tests), a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("NEWSALERT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
