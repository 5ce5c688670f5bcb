"""The portal's static files (web/static/), served under fingerprinted names (`portal.3f2a1b9c0d4e.css`) with a
year's immutable cache: a changed file gets a new name, so browsers never keep a stale one and never ask twice.
Read into memory at start (a few tens of kB), gzipped once for browsers that take it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/portal/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
HTMX_VERSION = "2.0.11"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
"""static/htmx.min.js is dist/htmx.min.js of `npm pack htmx.org@2.0.11` (tarball sha512 in the registry:
Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==), unchanged; a test
checks this hash. To upgrade: npm pack htmx.org@<version>, copy dist/htmx.min.js, update both constants."""

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str


@functools.cache
def assets() -> tuple[dict[str, str], dict[str, Asset]]:
    """(file name -> fingerprinted name, fingerprinted name -> asset)."""
    names: dict[str, str] = {}
    served: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        fingerprinted = f"{path.stem}.{hashlib.sha256(body).hexdigest()[:12]}{path.suffix}"
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        compressed = gzip.compress(body, 9, mtime=0)
        names[path.name] = fingerprinted
        served[fingerprinted] = Asset(body, compressed if len(compressed) < len(body) else None, media_type)
    return names, served


def static_url(name: str) -> str:
    """The URL of web/static/`name` (KeyError for a file that is not there: a typo fails the page's test)."""
    return PREFIX + assets()[0][name]


@router.get("/portal/static/{name}", name="static")
async def static(name: str, request: Request) -> Response:
    asset = assets()[1].get(name)
    if asset is None:
        raise HTTPException(404, "no such file")
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    if asset.gzipped and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
