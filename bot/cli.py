"""The `hubbot` command line. Each command imports what it needs lazily, so it starts fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="hubbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def _register_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="validate an infrastructure repository")
    p.add_argument("--repo", default=".", help="repository folder (default: current directory)")
    p.add_argument("--ref", help="a git ref to read instead of the working tree")
    p.add_argument("--format", choices=["text", "json"], default="text")

    def run(args: argparse.Namespace) -> int:
        from bot.commands.validate import run_validate

        return run_validate(args)

    p.set_defaults(func=run)


def _register_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="decide what a change deploys")
    p.add_argument("--repo", default=".", help="repository folder (default: current directory)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--changed", nargs="+", metavar="PATH", help="file mode: changed paths")
    mode.add_argument("--base", metavar="REF", help="semantic mode: base git ref")
    p.add_argument("--head", metavar="REF", help="semantic mode: head git ref (default: HEAD)")
    p.add_argument("--label", action="append", default=[], metavar="NAME", help="a PR label")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")

    def run(args: argparse.Namespace) -> int:
        from bot.commands.plan import run_plan

        return run_plan(args)

    p.set_defaults(func=run)


def _register_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the GitHub App's webhook server",
        description="Run the GitHub App. Settings come from HUBBOT_* variables; flags override.",
    )
    p.add_argument("--app-id", help="GitHub App id (HUBBOT_APP_ID)")
    p.add_argument("--private-key", help="app private key, a path or the PEM (HUBBOT_PRIVATE_KEY)")
    p.add_argument("--webhook-secret", help="webhook secret (HUBBOT_WEBHOOK_SECRET)")
    p.add_argument("--github-url", help="API URL (HUBBOT_GITHUB_URL, default api.github.com)")
    p.add_argument("--host", help="address to listen on (HUBBOT_HOST, default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (HUBBOT_PORT, default 8080; 0 picks one)")
    p.add_argument("--workers", type=int, help="background workers (HUBBOT_WORKERS, default 4)")
    p.add_argument("--queue-size", type=int, help="queued jobs before 503 (HUBBOT_QUEUE_SIZE)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--insecure-no-webhook-secret",
        action="store_true",
        help="accept unsigned webhooks (local development only)",
    )

    def run(args: argparse.Namespace) -> int:
        from bot.web.serve import run_serve

        return run_serve(args)

    p.set_defaults(func=run)


def _register_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox", help="serve a local GitHub double (REST API, webhooks, control API)"
    )
    p.add_argument("--repo", required=True, metavar="DIR", help="git repository with a main branch")
    p.add_argument("--owner", default="hubbot-sandbox", help="repository owner (an organisation)")
    p.add_argument("--name", help="repository name (default: the folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    p.add_argument("--webhook-url", required=True, metavar="URL", help="where webhooks go")
    p.add_argument("--webhook-secret", required=True, metavar="S", help="webhook signing secret")
    p.add_argument("--app-id", type=int, required=True, metavar="N", help="the app's id")
    p.add_argument("--app-slug", default="hubbot", help="the app's slug (bot: <slug>[bot])")
    p.add_argument("--installation-id", type=int, default=4242, metavar="N")
    p.add_argument(
        "--private-key-out", required=True, metavar="FILE", help="write the app key here (0600)"
    )

    def run(args: argparse.Namespace) -> int:
        from bot.sandbox.github.main import run_sandbox

        return run_sandbox(args)

    p.set_defaults(func=run)


def _register_register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "register", help="create hubbot's GitHub App from its manifest (app.yaml) in a browser"
    )
    p.add_argument(
        "--github-url",
        default="https://github.com",
        metavar="URL",
        help="GitHub's web address (an Enterprise Server host: https://HOST)",
    )
    p.add_argument(
        "--api-url",
        metavar="URL",
        help="GitHub's REST root (default: api.github.com, or GITHUB_URL/api/v3)",
    )
    p.add_argument("--org", metavar="ORG", help="create the app for this organisation")
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="where GitHub sends webhooks, e.g. https://hubbot.example.org/webhook "
        "(default: the webhook is created inactive)",
    )
    p.add_argument("--name", help="the app's name (default: hubbot; unique across GitHub)")
    p.add_argument("--port", type=int, default=3000, help="local port of the page (default 3000)")
    p.add_argument(
        "--out-dir",
        default="hubbot-credentials",
        metavar="DIR",
        help="where to write the key, secret and hubbot.env (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="replace files already in --out-dir")
    p.add_argument("--no-browser", action="store_true", help="print the page's URL only")

    def run(args: argparse.Namespace) -> int:
        from bot.register.main import run_register

        return run_register(args)

    p.set_defaults(func=run)


def _register_values(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "values",
        help="a release's effective values, merged and schema-checked by hubbot (no helm)",
        description="Merge a release's values as helm would and check them against the "
        "chart's schemas. Prints the layers and a summary, never a value.",
    )
    p.add_argument("--repo", default=".", help="repository folder (default: current directory)")
    p.add_argument("cluster", help="the cluster's name")
    p.add_argument("hub", nargs="?", help="the hub's name (omit with --support)")
    p.add_argument("--support", action="store_true", help="the cluster's support release")
    p.add_argument("--format", choices=["text", "json"], default="text")

    def run(args: argparse.Namespace) -> int:
        if args.support == (args.hub is not None):
            p.error("name either a HUB or --support")
        from bot.commands.values import run_values

        return run_values(args)

    p.set_defaults(func=run)


def _register_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="walk a change through the bot on the embedded example (no credentials needed)",
        description="Run the example repository, the local GitHub double and `hubbot serve` "
        "on loopback, and walk a pull request from opening to the prod rollout, checking "
        "each step. Exits 0 only if every step behaved as expected.",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="where to write the HTML transcript (default: hubbot-demo.html here, "
        "or in a temporary folder when this one is not writable)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the double and the bot up afterwards, with commands to keep poking, "
        "until Ctrl-C",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long one step may wait for the bot (default: %(default)s)",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the demo's repository and files here (default: a temporary folder, removed)",
    )

    def run(args: argparse.Namespace) -> int:
        from bot.demo.main import run_demo

        return run_demo(args)

    p.set_defaults(func=run)


_COMMANDS = [
    _register_validate,
    _register_plan,
    _register_serve,
    _register_sandbox,
    _register_register,
    _register_values,
    _register_demo,
]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
