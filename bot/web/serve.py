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
EXIT_LOST = 1  # leadership lost: exit so the pod restarts as a fresh standby
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
    from bot.deploys.kubeapi import KubeConfigError

    try:
        lost = asyncio.run(serve(settings))
    except OSError as exc:  # the port is taken, the host does not resolve
        print(
            f"hubbot serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KubeConfigError as exc:  # leader election without a usable service account
        print(f"hubbot serve: leader election: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_LOST if lost else EXIT_OK


async def serve(settings: ServerSettings) -> bool:
    """Serve until a signal asks to stop; prints one JSON line with the URL when ready.

    Returns True when it stopped because it lost the leadership (the caller exits 1).
    """
    from bot.web.app import create_app
    from bot.web.keys import LEADERSHIP

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = _bound_port(site) or settings.port
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
        print(json.dumps({"url": f"http://{host}:{port}", "port": port}), flush=True)
        logger.info("listening on %s:%s, GitHub at %s", settings.host, port, settings.github_url)
        leadership = app[LEADERSHIP]
        await _until_signal(leadership.stopped)
        lost = leadership.stopped.is_set()
        # Step down while still serving, so deliveries arriving meanwhile reach the next leader.
        logger.info("shutting down: stepping down" if not lost else "stopping: leadership lost")
        await leadership.step_down()
    finally:
        await runner.cleanup()
    return lost


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    return None


async def _until_signal(lost: asyncio.Event) -> None:
    """Wait for SIGINT or SIGTERM, or for `lost` (the leadership lost)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
