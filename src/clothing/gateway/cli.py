"""Serve the HTTP gateway and its web page (FastAPI on uvicorn).

The gateway downloads or receives an image, preprocesses it for the served model
and calls a TF Serving-compatible model server over gRPC. Every flag can also
be set with the environment variable shown in its help; a flag wins over the
environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any, cast

from clothing.gateway.settings import GatewaySettings, env_name
from clothing.logs import FORMATS, LEVELS
from clothing.preprocessing import PREPROCESSINGS

_DEFAULTS = GatewaySettings.__dataclass_fields__
# Seconds in-flight requests get to finish after SIGTERM (a pod's grace period must
# cover its preStop wait plus this).
DRAIN_SECONDS = 10


def _default(name: str) -> Any:
    spec = _DEFAULTS[name]
    if spec.default is not MISSING:
        return spec.default
    return cast(Callable[[], Any], spec.default_factory)()


def _port(text: str) -> int:
    # A clear message for the value Kubernetes puts in <SERVICE>_PORT (tcp://10.0.0.1:80).
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return port


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _ports(text: str) -> tuple[int, ...]:
    """``80,443`` or ranges: ``80,8000-8099``."""
    ports: set[int] = set()
    for part in _csv(text):
        first, _, last = part.partition("-")
        try:
            ports.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a port or a range") from None
    return tuple(sorted(ports))


def _add(
    parser: argparse.ArgumentParser,
    name: str,
    kind: Callable[[str], Any],
    help_text: str,
    **extra: Any,
) -> None:
    variable = env_name(name)
    raw = os.environ.get(variable)
    # A string default goes through ``kind`` at parse time, so a bad value in the
    # environment is reported like a bad flag, and only for this subcommand.
    default = raw if raw else _default(name)
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    parser.add_argument(
        "--" + name.replace("_", "-"),
        dest=name,
        type=kind,
        default=default,
        help=f"{help_text} (env {variable}; default: {shown})",
        **extra,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    _add(parser, "host", str, "interface to listen on")
    _add(parser, "port", _port, "HTTP port")
    _add(
        parser,
        "metrics_port",
        int,
        "port of the Prometheus metrics (GET /metrics), apart from the public port; 0 serves "
        "them at /metrics on --port instead",
    )
    _add(
        parser,
        "tf_serving_host",
        str,
        "model server gRPC address: host:port, dns:///host:port or a comma list of host:port",
    )
    _add(parser, "model_name", str, "name of the model on the model server")
    _add(parser, "signature", str, "signature to call")
    _add(
        parser,
        "preprocessing",
        str,
        "pixel scaling: auto (from the model's metadata), none (uint8), xception (x/127.5-1), "
        "imagenet (x/255 then ImageNet mean/std)",
        choices=("auto", *PREPROCESSINGS),
    )
    _add(parser, "grpc_deadline", float, "deadline of every gRPC call, seconds")
    _add(parser, "fetch_connect_timeout", float, "image download: connect timeout, seconds")
    _add(parser, "fetch_read_timeout", float, "image download: timeout between reads, seconds")
    _add(parser, "fetch_timeout", float, "image download: total time limit, seconds")
    _add(
        parser,
        "dns_threads",
        int,
        "image download: threads resolving host names; when all are busy (slow names) a "
        "lookup fails at once instead of queueing",
    )
    _add(parser, "dns_timeout", float, "image download: deadline of one host name lookup, seconds")
    _add(
        parser,
        "max_fetch_bytes",
        int,
        "image download: most bytes fetched for one request, all its URLs together (a batch's "
        "URLs share it)",
    )
    _add(
        parser,
        "fetch_ports",
        _ports,
        "image download: comma list of ports (or ranges, 8000-8099) image hosts are fetched "
        "on; an --allow-hosts entry that names its own port opens that one too",
    )
    _add(
        parser,
        "max_host_fetches",
        int,
        "image download: most downloads from one image host (one address, an IPv6 /64) at "
        "once; more get 429",
    )
    _add(parser, "max_redirects", int, "image download: redirects followed at most")
    _add(parser, "max_image_bytes", int, "largest image accepted, bytes (download or upload)")
    _add(parser, "max_pixels", int, "largest image accepted, pixels (checked before decoding)")
    _add(
        parser,
        "max_decode_bytes",
        int,
        "most bytes one image may hold while decoded (pixels x bytes per pixel of its mode; "
        "0: a quarter of the memory limit, 1 GiB assumed without one, over --workers)",
    )
    _add(parser, "max_batch", int, "most images in one /predict/batch request")
    _add(
        parser,
        "max_inflight",
        int,
        "most /predict and /predict/batch requests handled at once; more get 429 + Retry-After",
    )
    _add(
        parser,
        "body_timeout",
        float,
        "seconds a request's whole body may take to arrive (read before an in-flight slot "
        "is taken); slower gets 408",
    )
    _add(
        parser,
        "max_header_bytes",
        int,
        "most bytes of one request's line and header fields; more gets 431",
    )
    _add(
        parser,
        "header_timeout",
        float,
        "seconds a request's line and header fields may take to arrive; slower gets 408 "
        "and the connection closes",
    )
    _add(
        parser,
        "allow_hosts",
        _csv,
        "comma list of hosts or CIDR networks that may be fetched from although private, on "
        "the --fetch-ports or on the port an entry names (e.g. images.internal,10.0.0.0/8,"
        "127.0.0.1:8080,[fd00::/8]:8443)",
    )
    _add(
        parser,
        "allowed_hosts",
        _csv,
        "comma list of the names clients may put in the Host header besides IP addresses "
        "and dotless names: name, .suffix (any name under it) or * (any; turns the check off); "
        "others get 400, which stops DNS-rebinding pages",
    )
    _add(parser, "labels", str, "file with one class name per line, overriding the model's")
    _add(
        parser,
        "workers",
        int,
        "processes decoding and resizing images (default: the container's CPUs, at most 4)",
    )
    _add(
        parser,
        "decode_timeout",
        float,
        "seconds one image may take to decode and resize; its worker process is then "
        "stopped and the answer is 413",
    )
    _add(parser, "ready_cache_seconds", float, "how long a /readyz answer is reused, seconds")
    _add(parser, "cors_origins", _csv, "comma list of origins allowed by CORS (none: no CORS)")
    _add(
        parser,
        "keep_alive_timeout",
        int,
        "seconds an idle keep-alive connection stays open; behind a load balancer, more than "
        "its idle timeout (the AWS ALB's: 60)",
    )
    _add(
        parser,
        "forwarded_allow_ips",
        _csv,
        "comma list of proxy addresses or networks whose X-Forwarded-For/-Proto are trusted "
        "for the client's address ('*': any)",
    )
    _add(
        parser,
        "rate_limit",
        float,
        "requests a second each client address may sustain (health, readiness, the page and "
        "its static files are exempt); more get 429 + Retry-After; 0: no limit",
    )
    _add(parser, "rate_burst", int, "requests a client may send at once beyond --rate-limit")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("GATEWAY_LOG_LEVEL", "info"),
        choices=LEVELS,
        help="log level; debug adds the access lines of probes and scrapes "
        "(env GATEWAY_LOG_LEVEL; default: info)",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("GATEWAY_LOG_FORMAT", "text"),
        choices=FORMATS,
        help="json: one JSON object per line (time, level, logger, message and an access "
        "line's fields), as the images log; text: for a person (env GATEWAY_LOG_FORMAT; "
        "default: text)",
    )


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    values = {name: getattr(args, name) for name in _DEFAULTS if hasattr(args, name)}
    return GatewaySettings(**values)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from clothing import logs, tracing
    from clothing.gateway.app import create_app
    from clothing.gateway.uvicorn_server import GatewayServer
    from clothing.http_limits import limited_protocol

    try:
        # A format from the environment is not checked by argparse: here it is.
        logs.configure(args.log_format, args.log_level)
        settings = settings_from_args(args)
        app = create_app(settings)
    except ValueError as error:
        print(f"clothing gateway: {error}")
        return 2
    tracing.setup("clothing-gateway")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        # Logging is set up above (clothing.logs); the gateway writes its own access lines.
        log_config=None,
        access_log=False,
        # The client address in access lines is X-Forwarded-For's when the peer is a
        # trusted proxy (uvicorn's --forwarded-allow-ips, env FORWARDED_ALLOW_IPS).
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        timeout_graceful_shutdown=DRAIN_SECONDS,
        timeout_keep_alive=settings.keep_alive_timeout,
        # httptools, named rather than picked by uvicorn, with a cap and a deadline on
        # each request's head (uvicorn's own header cap applies to h11 alone).
        http=limited_protocol(settings.max_header_bytes, settings.header_timeout),
    )
    if settings.metrics_port:
        from clothing.gateway.metrics_server import start_metrics_server

        try:
            start_metrics_server(settings.metrics_port, settings.host, app.state.metrics.registry)
        except OSError as error:
            print(f"clothing gateway: metrics port {settings.metrics_port}: {error}")
            return 1
    GatewayServer(config).run()
    return 0
