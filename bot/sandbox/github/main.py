"""`hubbot sandbox`: serve the GitHub double over a local git repository until stopped."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from bot.sandbox.github.app import GitHubSandbox, SandboxError


def write_private_key(path: str | Path, pem: str) -> None:
    """Write the app key readable by its owner only (0600), replacing any previous file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
    os.chmod(target, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def run_sandbox(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; print one JSON line once ready. Exit 2 on bad input."""
    try:
        sandbox = GitHubSandbox(
            args.repo,
            host=args.host,
            port=args.port,
            owner=args.owner,
            name=args.name,
            app_id=args.app_id,
            app_slug=args.app_slug,
            installation_id=args.installation_id,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
        )  # checks the repository before spending time on a new RSA key
        write_private_key(args.private_key_out, sandbox.private_key)
    except (SandboxError, OSError) as exc:
        print(f"hubbot sandbox: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(sandbox))
    except OSError as exc:  # the port is taken, the host cannot be bound
        print(f"hubbot sandbox: error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(sandbox: GitHubSandbox) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with sandbox:
        line = {
            "api_url": sandbox.api_url,
            "control_url": sandbox.control_url,
            "installation_id": sandbox.installation_id,
        }
        print(json.dumps(line), flush=True)
        await stop.wait()
