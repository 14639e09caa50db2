"""The status page in a real browser: headless Chromium loads it from a real socket.

The DOM Chromium builds must hold the sections and the data (hostile names as
text), Chromium must report no Content-Security-Policy violation (so the style
hash is right and nothing inline was blocked), and the screenshot must be a PNG
of the window's size that shows the styled page: the header bar, the state
labels, text.
"""

from __future__ import annotations

import asyncio
import html.parser
import os
import shutil
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from bot.handlers.context import Services
from bot.web.app import create_app
from bot.web.keys import QUEUE
from tests.conftest import webhook_headers
from tests.png_support import SIGNATURE, decode
from tests.status_support import SECRET, FakeDeploys, Gate, pr_body, server_settings, snapshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 900
HOSTILE = "<script>document.title='pwned'</script>"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    f"--window-size={WIDTH},{HEIGHT}",
)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (tools/setup installs Debian's package when run as root)",
)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = bytes.fromhex(hex_colour.lstrip("#"))
    return r, g, b


class Sections(html.parser.HTMLParser):
    """Collects section ids, element names and the text of the DOM Chromium dumped."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
async def served(private_key_pem: str) -> AsyncIterator[str]:
    """The real app on a real socket, with deliveries in every state and a deploy snapshot."""
    gate = Gate()
    services = Services(app_id="1", deploys=FakeDeploys(snapshot(hostile=HOSTILE)))
    app = create_app(
        server_settings(private_key_pem, workers=1), router=gate.router, services=services
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        async with ClientSession() as http:
            for n, (body, secret) in enumerate(
                [
                    (pr_body(1), SECRET),
                    (pr_body(2, repo=HOSTILE), SECRET),
                    (pr_body(3), "a forged secret"),
                ]
            ):
                headers = webhook_headers("pull_request", body, secret, delivery=f"d-{n}")
                async with http.post(url, data=body, headers=headers) as resp:
                    assert resp.status in (202, 401)
        await asyncio.wait_for(gate.entered.wait(), 5)  # d-0 is running, d-1 queued
        assert app[QUEUE].running == 1
        yield url
    finally:
        gate.open.set()
        await runner.cleanup()


async def chromium(url: str, profile: Path, *args: str) -> tuple[bytes, str]:
    """Run headless Chromium on `url` with its own profile folder; its stdout and stderr."""
    assert CHROMIUM is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(profile.parent), "LANG": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=profile.parent,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:  # timed out, or the other browser failed and this one was cancelled
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out, err.decode(errors="replace")


@needs_chromium
async def test_chromium_renders_the_status_page(served: str, tmp_path: Path) -> None:
    png = tmp_path / "status.png"
    async with asyncio.TaskGroup() as group:  # both at once; one failing stops the other
        dumped = group.create_task(chromium(served, tmp_path / "dom", "--dump-dom"))
        shot = group.create_task(chromium(served, tmp_path / "shot", f"--screenshot={png}"))
    (dom, dom_log), (_, shot_log) = dumped.result(), shot.result()
    for log in (dom_log, shot_log):
        assert "Content Security Policy" not in log, log[-2000:]

    parsed = Sections()
    parsed.feed(dom.decode())
    assert parsed.sections == ["queue", "rollouts", "recent", "claims", "deliveries"]
    assert "script" not in parsed.tags  # the hostile repository name stayed text
    text = " ".join(parsed.text)
    for expected in (
        "hubbot status",
        "1 of 1 workers",
        "utoronto/staging",
        "PR #42",
        "1 of 4 done",
        "@partner",
        "d-0",
        "Codertocat/Hello-World",
        HOSTILE,
        "401 invalid signature",
        "running",
        "queued",
    ):
        assert expected in text, expected

    image = decode(png.read_bytes())
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    colours = image.colours()
    # The stylesheet applied: the page's grey around white cards, the dark header bar.
    assert colours[rgb("#f6f8fa")] > WIDTH * HEIGHT // 20
    assert colours[rgb("#ffffff")] > WIDTH * HEIGHT // 4
    assert image.pixel(WIDTH // 2, 4) == rgb("#24292f")
    for label in ("#ddf4ff", "#fff8c5", "#ffebe9", "#dafbe1"):  # running, queued, bad, good
        assert colours[rgb(label)] > 100, label
    assert len(colours) > 50  # anti-aliased text, not a flat page


def png_bytes(width: int, height: int, rows: list[bytes], filters: list[int]) -> bytes:
    """A PNG with each row written through the given filter (a test encoder)."""
    raw, prior = b"", bytes(width * 3)
    for row, kind in zip(rows, filters, strict=True):
        out = bytearray()
        for i, value in enumerate(row):
            left, up = (row[i - 3] if i >= 3 else 0), prior[i]
            corner = prior[i - 3] if i >= 3 else 0
            p = left + up - corner
            paeth = min(
                (abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner)
            )
            pred = (0, left, up, (left + up) >> 1, paeth[2])[kind]
            out.append((value - pred) & 255)
        raw, prior = raw + bytes([kind]) + bytes(out), row

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("kind", range(5))
def test_png_decoder_reverses_every_filter(kind: int) -> None:
    rows = [bytes((x * 37 + y * 101 + kind) % 256 for x in range(33)) for y in range(6)]
    data = png_bytes(11, 6, rows, [kind] * 6)
    assert decode(data).rows == rows
    broken = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    with pytest.raises(ValueError):
        decode(broken)
