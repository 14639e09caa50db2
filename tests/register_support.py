"""A browser for `hubbot register`'s tests: read the local page, post its form, follow back."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = values.get("action"), values.get("method")
        elif tag == "input" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


@dataclass
class Form:
    """The manifest form as a browser sees it."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


async def read_form(session: aiohttp.ClientSession, page_url: str) -> Form:
    """GET the local page and parse its one form."""
    async with session.get(page_url) as resp:
        assert resp.status == 200, await resp.text()
        parser = _FormParser()
        parser.feed(await resp.text())
    assert parser.action and parser.method
    return Form(parser.action, parser.method, parser.fields)


async def post_form(session: aiohttp.ClientSession, form: Form) -> str:
    """Submit the form to GitHub (the double) as the browser would; returns the redirect."""
    assert form.method.lower() == "post"
    async with session.post(form.action, data=form.fields, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def follow(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """The browser following GitHub's redirect back to the local callback."""
    async with session.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def complete(session: aiohttp.ClientSession, page_url: str) -> tuple[int, str, Any]:
    """The whole browser side: page, form to GitHub, back to the callback."""
    form = await read_form(session, page_url)
    location = await post_form(session, form)
    status, text = await follow(session, location)
    return status, text, form
