"""The aiohttp application factory: routes, error shape, and the lifetime of shared resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import event as sa_event

from server import api
from server.auth import Revocations, Tokens, principal_from_header
from server.cluster import Cluster, new_node_id
from server.config import Settings, resolve_secret_key
from server.errors import ApiError, unauthorized
from server.files import private_dir, private_sqlite
from server.headers import add_security_headers
from server.hub import CallHub, Services
from server.keys import (
    CLUSTER,
    DEMO_CREDENTIALS,
    HUB,
    LIMITS,
    METRICS,
    NODE_ID,
    PHONE,
    PRINCIPAL,
    REVOCATIONS,
    SETTINGS,
    STORE,
    TOKENS,
)
from server.metrics import CONTENT_TYPE, Metrics
from server.ratelimit import Limits
from server.store import Store
from server.waiting import WaitingReaper
from signaling.ice import restrict_host_addresses

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGES = {"/": "index.html", "/customer": "customer.html", "/agent": "agent.html", "/supervisor": "supervisor.html"}

ServicesFactory = Callable[[Settings, Store], Awaitable[tuple[Services, Callable[[], Awaitable[None]]]]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        message = exc.message
        if exc.detail:
            # Staff (and logs) get what went wrong inside; customers a plain sentence.
            log.info("%s %s: %s (%s)", request.method, request.path, exc.message, exc.detail)
            who = request.get(PRINCIPAL)
            if who is not None and who.is_staff:
                message = f"{message}: {exc.detail}"
        response = error_response(exc.status, exc.code, message, **exc.extra)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 413:
            message = f"the body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
        return error_response(exc.status, code, message or exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the server failed to handle this request")


@web.middleware
async def revocation_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A disabled account's tokens stop working (`python -m server user disable`)."""
    header = request.headers.get("Authorization")
    if header and request.path.startswith("/api/"):
        try:
            who = principal_from_header(request.app[TOKENS], header)
        except ApiError:
            who = None  # the route answers a bad token itself
        if who is not None and await request.app[REVOCATIONS].is_revoked(who):
            raise unauthorized("this account was disabled; log in again when it is enabled")
    return await handler(request)


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        path = STATIC_DIR / name
        if not path.is_file():
            raise ApiError(404, "not_found", f"page {name} is not installed")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler


async def _static(request: web.Request) -> web.StreamResponse:
    """A file under static/. Not aiohttp's add_static: its missing files are bare 404s
    without the JSON error shape."""
    root = STATIC_DIR.resolve()
    path = (root / request.match_info["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "not_found", "no such file")
    return web.FileResponse(path)


async def _config(request: web.Request) -> web.Response:
    """What the pages need to know before login: the demo account names, if any. Never a
    password: those are printed to the console and kept in a 0600 file in the data dir."""
    demo = request.app[DEMO_CREDENTIALS]
    accounts = {role: {"username": cred["username"]} for role, cred in demo.items()}
    return web.json_response({"demo": accounts or None})


async def _join_cluster(settings: Settings, metrics: Metrics) -> Cluster | None:
    if not settings.clustered:
        return None
    cluster = Cluster(
        settings.redis_url,
        node_id=new_node_id(),
        node_url=settings.own_url,
        ttl_s=settings.node_ttl_s,
        secret=resolve_secret_key(settings),
        on_error=lambda op: metrics.redis_errors.labels(op).inc(),
    )
    try:
        await cluster.start()
    except ApiError as exc:  # ClusterUnavailable: refuse to start half a node
        await cluster.close()
        raise RuntimeError(f"cannot join the cluster at CALLASSIST_REDIS_URL: {exc.message}") from None
    return cluster


async def _metrics_listener(settings: Settings, metrics: Metrics) -> web.AppRunner | None:
    """`/metrics` without a token on its own address, for a scraper on a private network."""
    if not settings.metrics_address:
        return None
    host, _, port = settings.metrics_address.rpartition(":")

    async def scrape(_request: web.Request) -> web.Response:
        return web.Response(body=await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner


def create_app(settings: Settings, services_factory: ServicesFactory | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, revocation_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[DEMO_CREDENTIALS] = {}
    app[METRICS] = Metrics()
    if services_factory is None:
        from server.services import build_services

        services_factory = build_services

    async def resources(app: web.Application) -> AsyncIterator[None]:
        private_dir(settings.data_dir)
        # Before anything opens the database: refuse an unusable signing key up front.
        app[TOKENS] = Tokens(resolve_secret_key(settings), settings.token_ttl_s)
        if not settings.database_url:
            private_sqlite(settings.data_dir / "callassist.db")
        restrict_host_addresses(settings.ice_hosts)
        metrics = app[METRICS]
        store = Store(settings.sqlalchemy_url)
        sa_event.listen(store.engine.sync_engine, "handle_error", lambda _ctx: metrics.db_errors.inc())
        await store.create_schema()
        app[STORE] = store
        app[LIMITS] = Limits(settings)
        app[REVOCATIONS] = Revocations(store)
        cluster = await _join_cluster(settings, metrics)
        if cluster is not None:
            app[CLUSTER] = cluster
        app[NODE_ID] = cluster.node.id if cluster is not None else new_node_id()
        services, close_services = await services_factory(settings, store)
        app[HUB] = CallHub(store, services, cluster=cluster, metrics=metrics)
        metrics.watch(app[HUB].live_sessions, store)
        metrics.start()
        metrics_site = await _metrics_listener(settings, metrics)
        if settings.twilio_auth_token:
            from server.phone import Phone

            app[PHONE] = Phone(
                resolve_secret_key(settings), settings.twilio_auth_token, cluster=cluster
            )
        reaper = WaitingReaper(app[HUB], settings.waiting_timeout_s)
        reaper.start()
        if settings.demo:
            from server.demo import setup_demo

            app[DEMO_CREDENTIALS] = await setup_demo(settings, store)
        yield
        await reaper.close()
        if metrics_site is not None:
            await metrics_site.cleanup()
        await app[HUB].close()
        if cluster is not None:
            await cluster.close()
        await close_services()
        await app[LIMITS].close()
        await metrics.close()
        await store.close()

    async def close_calls(app: web.Application) -> None:
        # Before aiohttp waits for open handlers: this ends SSE streams and closes peers.
        if HUB in app:
            await app[HUB].close()

    async def no_stale_assets(request: web.Request, response: web.StreamResponse) -> None:
        # Pages are plain ES modules: after an upgrade browsers must not run old ones.
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-cache"

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_calls)
    app.on_response_prepare.append(no_stale_assets)
    app.on_response_prepare.append(add_security_headers)
    app.add_routes(api.routes)
    if settings.twilio_auth_token:
        from server import phone

        app.add_routes(phone.routes)
    app.router.add_get("/api/config", _config)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/static/{path:.+}", _static)
    return app
