"""Typed keys of the aiohttp application (`app[QUEUE]` is a `JobQueue` to mypy)."""

from __future__ import annotations

import aiohttp
import cachetools
from aiohttp import web
from gidgethub import routing

from bot.github.factory import GitHubFactory
from bot.handlers.context import Services
from bot.web.deliveries import DeliveryLog
from bot.web.leadership import Leadership
from bot.web.metrics import Metrics
from bot.web.queue import JobQueue
from bot.web.replica import Replica
from bot.web.settings import ServerSettings

SETTINGS = web.AppKey("settings", ServerSettings)
METRICS = web.AppKey("metrics", Metrics)
ROUTER = web.AppKey("router", routing.Router)
QUEUE = web.AppKey("queue", JobQueue)
DELIVERIES = web.AppKey("deliveries", cachetools.TTLCache[tuple[str, str], bool])
SERVICES = web.AppKey("services", Services)
SESSION = web.AppKey("session", aiohttp.ClientSession)
GITHUB = web.AppKey("github", GitHubFactory)
DELIVERY_LOG = web.AppKey("delivery_log", DeliveryLog)
REPLICA = web.AppKey("replica", Replica)
LEADERSHIP = web.AppKey("leadership", Leadership)
