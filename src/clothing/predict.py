"""Classify one image through a running gateway and print the answer as JSON.

An ``http(s)://`` argument is sent as ``{"url": ...}`` (the gateway downloads
it); anything else is read as a local file and uploaded. It needs the ``client``
extra (httpx), which the gateway's own install does without.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="URL_OR_PATH", help="image URL or local image file")
    parser.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAY_URL", "http://localhost:9696"),
        help="gateway base URL (env GATEWAY_URL; default: http://localhost:9696)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the answer (default: 30)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        import httpx
    except ImportError:
        print(
            "clothing predict needs httpx: pip install -c requirements/lock.txt '.[client]'",
            file=sys.stderr,
        )
        return 1

    endpoint = args.gateway.rstrip("/") + "/predict"
    source: str = args.source
    try:
        if source.startswith(("http://", "https://")):
            response = httpx.post(endpoint, json={"url": source}, timeout=args.timeout)
        else:
            path = Path(source)
            if not path.is_file():
                print(f"clothing predict: {source} is neither a URL nor a file", file=sys.stderr)
                return 2
            with path.open("rb") as image:
                files = {"file": (path.name, image, "application/octet-stream")}
                response = httpx.post(endpoint, files=files, timeout=args.timeout)
    except httpx.HTTPError as error:
        print(f"clothing predict: cannot reach {endpoint}: {error}", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        print(f"clothing predict: HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0 if response.is_success else 1
