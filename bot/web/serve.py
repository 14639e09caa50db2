"""`hubbot serve`: validate settings once, run the app until SIGINT/SIGTERM, shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from aiohttp import web

from bot.web.settings import ServerSettings, SettingsError, load_settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2


def run_serve(args: argparse.Namespace) -> int:
    """Run the server; returns the exit code (2 with one line on bad settings)."""
    overrides = {
        "app_id": args.app_id,
        "private_key": args.private_key,
        "webhook_secret": args.webhook_secret,
        "github_url": args.github_url,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "queue_size": args.queue_size,
        "insecure_no_webhook_secret": args.insecure_no_webhook_secret,
    }
    try:
        settings = load_settings(overrides=overrides)
    except SettingsError as exc:
        print(f"hubbot serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from bot.web.logs import configure

    configure(args.log_level)
    if settings.webhook_secret is None:
        logger.warning("running WITHOUT webhook signature checks (--insecure-no-webhook-secret)")
    try:
        asyncio.run(serve(settings))
    except OSError as exc:  # the port is taken, the host does not resolve
        print(
            f"hubbot serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


async def serve(settings: ServerSettings) -> None:
    """Serve until a signal asks to stop; prints one JSON line with the URL when ready."""
    from bot.web.app import create_app

    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = _bound_port(site) or settings.port
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
        print(json.dumps({"url": f"http://{host}:{port}", "port": port}), flush=True)
        logger.info("listening on %s:%s, GitHub at %s", settings.host, port, settings.github_url)
        await _until_signal()
        logger.info("shutting down: draining the queue")
    finally:
        await runner.cleanup()


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    return None


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
