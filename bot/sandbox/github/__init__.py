"""The local GitHub double: GitHub's REST API, webhooks and a control API over a git repository.

`GitHubSandbox` runs it in-process; `hubbot sandbox` runs it as a command. See the README
section "Trying hubbot locally" for the control API.
"""

from bot.sandbox.github.app import GitHubSandbox, SandboxError, build_context, create_app

__all__ = ["GitHubSandbox", "SandboxError", "build_context", "create_app"]
