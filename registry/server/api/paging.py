"""Cursor pagination of every list endpoint.

A list answers at most ``limit`` items (default 100, at most 1000) as a JSON array, in a fixed
order. When more follow, the answer carries ``Link: <PATH?cursor=C&limit=N>; rel="next"`` (RFC
8288, a path relative to the registry): asking for it gives the next page. A cursor is opaque to
clients (the key of the last item, base64url-encoded) and stays valid while that item exists;
a malformed one is a 400.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from registry.errors import InvalidRequestError
from registry.server.services.common import Page, PageRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_PREFIX = "c1."


def encode_cursor(key: str) -> str:
    return _PREFIX + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    if not cursor.startswith(_PREFIX):
        raise InvalidRequestError("invalid cursor: pass the one a Link header gave", cursor=cursor)
    body = cursor[len(_PREFIX) :]
    try:
        key = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            "invalid cursor: pass the one a Link header gave", cursor=cursor
        ) from None
    if not key or not key.isprintable():
        raise InvalidRequestError("invalid cursor: pass the one a Link header gave", cursor=cursor)
    return key


def page_request(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (default {DEFAULT_LIMIT}).")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=512, pattern=r"^c1\.[A-Za-z0-9_-]+$",
              description='From the `Link: <…>; rel="next"` header of the previous page.'),
    ] = None,
) -> PageRequest:  # fmt: skip
    return PageRequest(limit=limit, after=decode_cursor(cursor) if cursor is not None else None)


PageDep = Annotated[PageRequest, Depends(page_request)]


def link_next(request: Request, response: Response, page: Page[Any], limit: int) -> None:
    """Set the ``Link: rel="next"`` header when ``page`` is not the last."""
    if page.next_after is None:
        return
    url = request.url.include_query_params(cursor=encode_cursor(page.next_after), limit=limit)
    target = url.path + (f"?{url.query}" if url.query else "")
    response.headers["Link"] = f'<{target}>; rel="next"'
