"""`GET /deploys/{attempt}`: a deploy's log tail, the page a Deployment's `log_url` links to.

The attempt id is random (128 bits) and appears only in the Deployment GitHub shows to
people who can read the repository. The log is the executor's tail, with every value of
the secret files it decrypted already redacted. Logs live in memory: after a restart, or
once 200 newer deploys have ended, the page says the log is gone.
"""

from __future__ import annotations

import re

from aiohttp import web

from bot.web.keys import SERVICES

_ATTEMPT = re.compile(r"\A[0-9a-f]{32}\Z")
HEADERS = {
    "Content-Type": "text/plain; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


async def deploy_log(request: web.Request) -> web.Response:
    """The log of one deploy attempt, as plain text."""
    attempt = request.match_info["attempt"]
    entry = request.app[SERVICES].deploys.logs.get(attempt) if _ATTEMPT.match(attempt) else None
    if entry is None:
        return web.Response(
            status=404,
            text="No log is kept for this deploy (hubbot restarted, or it is too old).\n",
            headers=HEADERS,
        )
    lines = [
        f"deploy of {entry.target} in {entry.repo} at {entry.sha}",
        f"outcome: {entry.outcome} ({entry.detail})",
        "",
        entry.log or "(the deploy printed nothing)",
    ]
    if entry.health:
        lines += ["", entry.health]
    return web.Response(text="\n".join(lines) + "\n", headers=HEADERS)
