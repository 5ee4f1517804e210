"""The HTTP server: the FastAPI app KServe's ModelServer builds, hardened, under our own uvicorn config.

KServe 0.21's `ModelServer.start()` always binds 0.0.0.0. `drsynth serve` binds the host it is given
(loopback by default) instead: it builds the same app kserve builds (the ModelServer's model registry,
kserve's REST endpoints for v1 and the Open Inference Protocol v2, its timing middleware, exception
handlers and /metrics), binds the socket itself, and hands it to uvicorn. gRPC is not started.

Hardening on top of kserve's app, so that nothing a client sends gets a 5xx or takes the model away:
- request bodies above `max_payload_bytes` get 413 before any parsing (chunked uploads included);
- whatever kserve fails to decode (v2 binary-extension framing, wrong header values) is a 400, not a 500;
- a malformed v2 JSON body is a 400 with the offending field, in kserve's {"error": ...} shape;
- an unknown model name is a 404 that names the model this server serves;
- the model-repository routes (load/unload), model versions and :explain are not exposed (404);
- every request is counted by route, status code and outcome (drsynth_serve_requests_total).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from http import HTTPStatus

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from drsynth import __version__
from drsynth.errors import ConfigError
from drsynth.serve import metrics
from drsynth.serve.config import ServeConfig
from drsynth.serve.model import OnnxPredictor

log = logging.getLogger("drsynth.serve")

# Bodies larger than this past the limit are not drained before the 413 (the connection is closed instead).
_DRAIN_LIMIT = 64 * 1024 * 1024


class ClientSafeDataPlane(DataPlane):
    """kserve's DataPlane, except that any failure to decode what the client sent is InvalidInput (400).

    kserve 0.21 raises KeyError/struct.error/InferenceError/ValueError from its v2 binary-extension
    parser on malformed bodies, which its generic handler would turn into 500s.
    """

    def decode(self, body, headers, *args, **kwargs):
        try:
            return super().decode(body, headers, *args, **kwargs)
        except InvalidInput:
            raise
        except Exception as e:
            raise InvalidInput(f"could not decode the request: {type(e).__name__}: {e}") from None


def _error(status: int, message: str) -> tuple[dict, bytes]:
    body = orjson.dumps({"error": message})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class RequestGuardMiddleware:
    """Before kserve sees a request: 404 for routes not exposed, 413 for bodies above `max_bytes`.

    Accepted bodies are buffered and replayed to the app (kserve reads whole bodies anyway).
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reply(self, send, status: int, message: str) -> None:
        start, body = _error(status, message)
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not is_exposed(scope.get("path", "")):
            return await self._reply(
                send,
                404,
                f"{scope.get('path', '')} is not available: this server does not expose model management "
                "(load/unload), model versions or explanations",
            )
        too_big = (
            f"request body is larger than this server's limit of {self.max_bytes:,} bytes "
            "(drsynth serve --max-payload-bytes); send fewer or smaller images per request"
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                declared_n = int(declared)
            except ValueError:
                return await self._reply(send, 400, f"invalid content-length header {declared[:40]!r}")
            if declared_n > self.max_bytes:
                if declared_n <= self.max_bytes + _DRAIN_LIMIT:
                    await self._drain(receive)  # so that the client reads the 413 instead of a reset
                return await self._reply(send, 413, too_big)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                if total <= self.max_bytes + _DRAIN_LIMIT and message.get("more_body"):
                    await self._drain(receive)
                return await self._reply(send, 413, too_big)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive) -> None:
        received = 0
        while received <= _DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            received += len(message.get("body", b""))


class RequestMetricsMiddleware:
    """Count every HTTP request by route template, status code and outcome; time it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # if the app raises before answering, ServerErrorMiddleware answers 500
        t0 = time.perf_counter()

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.REQUESTS.labels(route=route, code=str(status), outcome=metrics.outcome(status)).inc()
            metrics.REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - t0)


def is_exposed(path: str) -> bool:
    # Model management and unsupported verbs stay off the public surface (a client could otherwise
    # unload the model, or get 501s for versions and explanations this server does not have).
    return not (path.startswith("/v2/repository") or "/versions/" in path or ":explain" in path)


def build_app(model: OnnxPredictor, cfg: ServeConfig) -> FastAPI:
    """kserve's REST app (v1 + v2 endpoints, /metrics, health) for a loaded model, hardened."""
    model_server = ModelServer(
        http_port=cfg.port,
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    model_server.register_model(model)
    dataplane = ClientSafeDataPlane(model_registry=model_server.registered_models)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING, dataplane, model_server.model_repository_extension, cfg.port, workers=1
    )
    app = FastAPI(
        title="drsynth predictor",
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    # The same three steps as RESTServer.create_application, on our own app instead of kserve's module
    # global, so that each server (and each test) has its own app.
    rest._add_middlewares(app)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)

    async def model_not_found(request, exc: ModelNotFound):
        log.info("404 %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            status_code=HTTPStatus.NOT_FOUND,
            content={
                "error": f"{exc} This server serves '{model.name}': POST /v1/models/{model.name}:predict "
                f"or /v2/models/{model.name}/infer"
            },
        )

    async def invalid_v2_body(_, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        return JSONResponse(
            status_code=HTTPStatus.BAD_REQUEST,
            content={"error": f"invalid inference request ({problems})"},
        )

    async def invalid_input(request, exc: InvalidInput):
        # kserve's handler logs a full traceback per bad request at ERROR; a client's mistake is one line.
        log.info("400 %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": str(exc)})

    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(ModelNotFound, model_not_found)
    app.add_exception_handler(RequestValidationError, invalid_v2_body)
    app.add_middleware(RequestGuardMiddleware, max_bytes=cfg.max_payload_bytes)
    app.add_middleware(RequestMetricsMiddleware)  # added last = outermost: it also counts the 413s
    app.state.model_server = model_server
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on exactly (host, port); ConfigError with the fix when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(
            f"--host {host!r} does not resolve ({e}); use an address such as 127.0.0.1"
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port (0 picks a free one) "
            "or an address this machine has"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(cfg: ServeConfig, *, announce: Callable[[str], None] = print) -> None:
    """Bind (cfg.host, cfg.port), load the model and serve until SIGINT/SIGTERM."""
    sock = bind_socket(cfg.host, cfg.port)  # first, so a busy port fails before the model loads
    model = OnnxPredictor(
        cfg.model_name,
        cfg.model_path,
        max_batch=cfg.max_batch,
        batch_wait_ms=cfg.batch_wait_ms,
        max_instances=cfg.max_instances,
        max_image_pixels=cfg.max_image_pixels,
        threads=cfg.threads,
        spin_wait=cfg.spin_wait,
        prefer_gpu=cfg.prefer_gpu,
    )
    try:
        app = build_app(model, cfg)  # kserve's ModelServer configures logging here
        _route_logs(cfg.access_log)
        model.load()
    except BaseException:
        sock.close()
        raise
    # Listen before announcing: a bound socket that does not listen yet refuses connections, and a client
    # that read "listening on" could connect before uvicorn starts (seen on a loaded machine). From here on
    # connections wait in the backlog until the server accepts them.
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_config=None,  # kserve configured logging
        access_log=cfg.access_log,
        timeout_keep_alive=65,
        loop="auto",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    announce(
        f"drsynth serve: listening on {url} (model '{model.name}', classes {model.classes}, "
        f"providers {model.classifier.providers}, max batch {model.max_batch})\n"
        f"  v1: POST {url}/v1/models/{model.name}:predict   v2: POST {url}/v2/models/{model.name}/infer\n"
        f"  health: {url}/v2/health/ready   metrics: {url}/metrics"
    )

    async def main() -> None:
        app.state.model_server.setup_event_loop()  # kserve's thread pool for preprocessing and inference
        try:
            await server.serve(sockets=[sock])
        finally:
            model.stop()
            await model.batcher.close()

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    finally:
        sock.close()


def _route_logs(per_request: bool) -> None:
    """drsynth.serve logs through kserve's handlers; per-request timing lines only with --access-log."""
    kserve_logger = logging.getLogger("kserve")
    ours = logging.getLogger("drsynth.serve")
    if kserve_logger.handlers and not ours.handlers:
        for handler in kserve_logger.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    logging.getLogger("kserve.trace").setLevel(logging.INFO if per_request else logging.WARNING)
