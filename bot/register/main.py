"""`hubbot register`: serve the local page until GitHub calls back, then print the next steps.

Exit codes: 0 registered, 1 the flow failed or was stopped (nothing usable written),
2 bad options (nothing started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
import webbrowser
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from bot.register.credentials import CredentialsError, check_out_dir
from bot.register.flow import LOCAL_HOST, Failed, Flow, Outcome, Registered, RegisterOptions
from bot.register.manifest import (
    GITHUB_API_URL,
    ManifestError,
    app_settings_url,
    check_name,
    check_org,
    check_url,
    default_api_url,
    packaged_manifest,
)
from bot.register.web import create_app

PROG = "hubbot register"


class Registrar:
    """The local server of one registration: start it, wait for the outcome, close it."""

    def __init__(self, options: RegisterOptions, *, port: int = 0) -> None:
        self.options = options
        self._port = port
        self._runner: web.AppRunner | None = None
        self.flow: Flow | None = None

    async def start(self) -> str:
        """Listen on loopback; returns the page's URL. Raises OSError if the port is taken."""
        self.flow = Flow(self.options)
        # No access log: the callback's query string carries the one-time code.
        self._runner = web.AppRunner(create_app(self.flow), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, LOCAL_HOST, self._port).start()
        except OSError:
            await self.close()
            raise
        self.flow.port = int(self._runner.addresses[0][1])
        return self.flow.local_url

    async def outcome(self) -> Outcome:
        """How the flow ended: once GitHub called back with this flow's state."""
        assert self.flow is not None, "start() first"
        return await self.flow.outcome

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def options_from_args(args: argparse.Namespace) -> RegisterOptions:
    """Validated options; raises ManifestError or CredentialsError with one line."""
    github_url = check_url(args.github_url, "--github-url")
    api_url = check_url(args.api_url or default_api_url(github_url), "--api-url")
    webhook_url = check_url(args.webhook_url, "--webhook-url") if args.webhook_url else None
    options = RegisterOptions(
        manifest=packaged_manifest(),
        github_url=github_url,
        api_url=api_url,
        out_dir=Path(args.out_dir).expanduser().absolute(),
        org=check_org(args.org) if args.org else None,
        webhook_url=webhook_url,
        name=check_name(args.name) if args.name is not None else None,
        force=args.force,
    )
    check_out_dir(options.out_dir, force=options.force)
    return options


def run_register(args: argparse.Namespace) -> int:
    """Run the manifest flow from the command line; returns the exit code."""
    try:
        options = options_from_args(args)
    except (ManifestError, CredentialsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(register(options, port=args.port, open_browser=not args.no_browser))
    except OSError as exc:  # the port is taken
        where = f"{LOCAL_HOST}:{args.port}"
        print(f"{PROG}: error: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 2


async def register(
    options: RegisterOptions,
    *,
    port: int = 3000,
    open_browser: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Serve the flow until it ends or SIGINT/SIGTERM; print the outcome; return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    registrar = Registrar(options, port=port)
    url = await registrar.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        where = f"for {options.org}" if options.org else "for your account"
        print(f"Open {url} in your browser to create hubbot's GitHub App {where}.", file=out)
        print("Waiting for GitHub to send you back here (Ctrl-C to stop)...", file=out, flush=True)
        if open_browser:
            await asyncio.to_thread(webbrowser.open, url)
        outcome = await _outcome_or_stop(registrar, stopped)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await registrar.close()
    if isinstance(outcome, Registered):
        print(next_steps(outcome, options), file=out, end="", flush=True)
        return 0
    reason = outcome.reason if isinstance(outcome, Failed) else "stopped; nothing was written"
    print(f"{PROG}: error: {reason}", file=err, flush=True)
    return 1


async def _outcome_or_stop(registrar: Registrar, stopped: asyncio.Event) -> Outcome | None:
    """The flow's outcome, or None when a signal stopped the wait first."""
    assert registrar.flow is not None
    outcome = registrar.flow.outcome
    stop = asyncio.ensure_future(stopped.wait())
    try:
        waiters: set[asyncio.Future[Any]] = {outcome, stop}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop
    return outcome.result() if outcome.done() else None


def next_steps(result: Registered, options: RegisterOptions) -> str:
    """What to tell the operator once the app exists (paths and URLs, never a secret)."""
    creds, files = result.credentials, result.files
    q = shlex.quote
    settings = app_settings_url(options.github_url, options.org, creds.slug)
    written = [p for p in (files.private_key, files.webhook_secret, files.env, files.app) if p]
    lines = [
        f'Created the GitHub App "{creds.name}" (id {creds.id}): {creds.html_url}',
        "Saved, readable only by you (mode 0600):",
        *(f"  {path}" for path in written),
        "",
        "Next steps:",
        "  1. Install the app on your infrastructure repository:",
        f"       {creds.html_url}/installations/new",
        "  2. Run hubbot with these credentials:",
        f"       set -a; . {q(str(files.env))}; set +a; hubbot serve",
        "     or on Kubernetes, with the Helm chart in deploy/ (see deploy/README.md):",
    ]
    secret_files = [f"--from-file=private-key.pem={q(str(files.private_key))}"]
    if files.webhook_secret is not None:
        secret_files.append(f"--from-file=webhook-secret={q(str(files.webhook_secret))}")
    lines.append("       kubectl create namespace hubbot")
    lines += _shell("kubectl -n hubbot create secret generic hubbot-github", secret_files)
    helm = [f"--set github.appId={creds.id}", "--set github.existingSecret=hubbot-github"]
    if options.api_url != GITHUB_API_URL:
        helm.append(f"--set github.url={q(options.api_url)}")
    lines += _shell("helm install hubbot deploy/hubbot -n hubbot", helm)
    if options.webhook_url is None:
        lines += [
            "  3. The app's webhook is inactive: once hubbot is reachable, set its URL to",
            f"     https://<your hubbot host>/webhook and activate it at {settings}",
        ]
    else:
        lines.append(f"  3. Make sure GitHub can reach hubbot at {options.webhook_url}")
    if files.webhook_secret is None:
        lines.append(f"  Note: GitHub issued no webhook secret; set one at {settings}")
    return "\n".join(lines) + "\n"


def _shell(command: str, args: list[str]) -> list[str]:
    """A command split over indented lines with shell continuations."""
    parts = [command, *args]
    return [
        ("       " if i == 0 else "         ") + part + (" \\" if i < len(parts) - 1 else "")
        for i, part in enumerate(parts)
    ]
