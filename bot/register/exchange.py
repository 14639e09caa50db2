"""Trade the manifest flow's one-time code for the new app's credentials.

`POST /app-manifests/{code}/conversions` needs no authentication; the code itself is the
proof, valid once and for an hour.
https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest
"""

from __future__ import annotations

import re

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from bot.register.credentials import AppCredentials, ConversionError

REQUESTER = "hubbot-register"
# GitHub's codes are short hex strings; anything else never reaches the API.
CODE = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")


class ExchangeError(Exception):
    """The code gave no credentials; the message is one line, safe to print."""


async def convert_code(
    session: aiohttp.ClientSession, *, api_url: str, code: str
) -> AppCredentials:
    """The credentials GitHub issues for `code`; raises ExchangeError with the reason."""
    if not CODE.match(code):
        raise ExchangeError("the code GitHub sent back is malformed")
    gh = GitHubAPI(session, REQUESTER, base_url=api_url)
    try:
        data = await gh.post("/app-manifests/{code}/conversions", {"code": code}, data=b"")
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:
            raise ExchangeError(
                "GitHub does not know this code: it was already used, it is over an hour old, "
                f"or it was issued by another GitHub than {api_url}"
            ) from None
        raise ExchangeError(f"GitHub refused the code: {_status(exc)}") from None
    except gidgethub.HTTPException as exc:  # 5xx, or a redirect gidgethub does not follow
        raise ExchangeError(f"GitHub answered {_status(exc)}; try again") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        # The type only: aiohttp's messages and reprs can carry request details.
        raise ExchangeError(f"cannot reach {api_url} ({type(exc).__name__})") from None
    try:
        return AppCredentials.from_conversion(data)
    except ConversionError as exc:
        raise ExchangeError(str(exc)) from None


def _status(exc: gidgethub.HTTPException) -> str:
    return f"{int(exc.status_code)} {exc.status_code.phrase}"
