"""Typed keys for the shared state of the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from server.auth import Principal, Revocations, Tokens
from server.cluster import Cluster
from server.config import Settings
from server.hub import CallHub
from server.metrics import Metrics
from server.ratelimit import Limits
from server.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", Tokens)
HUB = web.AppKey("hub", CallHub)
DEMO_CREDENTIALS = web.AppKey("demo_credentials", dict)
LIMITS = web.AppKey("limits", Limits)
REVOCATIONS = web.AppKey("revocations", Revocations)
PRINCIPAL = web.RequestKey("principal", Principal)
PHONE = web.AppKey("phone", object)
"""server.phone.Phone, when Twilio is configured."""
CLUSTER = web.AppKey("cluster", Cluster)
"""This node's membership of a cluster; absent when the process runs alone."""
METRICS = web.AppKey("metrics", Metrics)
NODE_ID = web.AppKey("node_id", str)
