"""The ``/lp`` endpoints the hub mounts for HTTPS long-polling, answering on behalf of its sessions.

:func:`longpoll_router` builds them; they find the sessions at ``app.state.longpoll``
(a :class:`~confide.transport._longpoll._session.LongPollHub`) and answer 404 "not
enabled" where there is none. Bodies are read with a hard limit of :data:`MAX_BODY`
bytes, and every refusal is JSON ``{"error", "message"}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from confide._errors import TransportError, WireError
from confide.transport._longpoll._framing import MAX_BODY, MEDIA_TYPE, PREFIX, pack_frames, unpack_frames
from confide.transport._longpoll._session import LongPollHub, LongPollSession

__all__ = ["longpoll_router"]


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _gone(sid: str, reason: str = "") -> JSONResponse:
    why = f" ({reason})" if reason else ""
    return _error(404, "NotFoundError", f"long-poll session {sid} is unknown or closed{why}; open a new one")


def _hub(request: Request) -> LongPollHub | None:
    hub = getattr(request.app.state, "longpoll", None)
    if not isinstance(hub, LongPollHub):
        return None
    hub.start()
    return hub


_DISABLED = (404, "NotFoundError", "long-polling is not enabled on this hub; use another transport")


class _TooLarge(Exception):
    """A request body over :data:`MAX_BODY`."""


async def _read_body(request: Request) -> bytes:
    """The request body; :class:`_TooLarge` past :data:`MAX_BODY`, ``ClientDisconnect`` if cut."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge
    return bytes(body)


async def open_session(request: Request) -> JSONResponse:
    """Open a session; its token names it in every later request."""
    hub = _hub(request)
    if hub is None:
        return _error(*_DISABLED)
    try:
        session = hub.open()
    except TransportError as exc:
        return _error(503, "TransportError", str(exc))
    return JSONResponse({"session": session.sid}, status_code=201)


def _lookup(request: Request, sid: str) -> LongPollSession | Response:
    """The session ``sid``, or the error response that says why there is none."""
    hub = _hub(request)
    if hub is None:
        return _error(*_DISABLED)
    session = hub.session(sid)
    if session is None:
        return _gone(sid)
    return session


async def post_frames(sid: str, request: Request) -> Response:
    """Queue the node's frames (``u32 big-endian length | bytes``, repeated)."""
    found = _lookup(request, sid)
    if isinstance(found, Response):
        return found
    session = found
    if session.reason is not None:
        return _gone(sid, session.reason)
    try:
        frames = unpack_frames(await _read_body(request))
    except _TooLarge:
        message = f"request body exceeds {MAX_BODY} bytes; send fewer or smaller frames per request"
        return _error(413, "WireError", message)
    except ClientDisconnect:
        # The node gave up mid-body (it treats that as a lost connection); nobody reads this.
        return _error(400, "WireError", "request body cut short")
    except WireError as exc:
        return _error(400, "WireError", f"malformed frames: {exc}")
    try:
        await session.deliver(frames)
    except TransportError as exc:
        return _gone(sid, str(exc))
    return Response(status_code=204)


async def get_frames(
    sid: str,
    request: Request,
    wait: Annotated[float, Query(ge=0, description="Hold up to this many seconds for a frame.")] = 0.0,
) -> Response:
    """The frames queued for the node, held until there is one; 204 if none came in time."""
    found = _lookup(request, sid)
    if isinstance(found, Response):
        return found
    session, hub = found, _hub(request)
    hold_s = hub.hold_s if hub is not None else 0.0
    try:
        frames = await session.collect(min(wait, hold_s))
    except TransportError as exc:
        return _gone(sid, str(exc))
    if not frames:
        return Response(status_code=204)
    return Response(pack_frames(frames), media_type=MEDIA_TYPE)


async def close_session(sid: str, request: Request) -> Response:
    """End the session (the node is leaving)."""
    found = _lookup(request, sid)
    if isinstance(found, Response):
        return found
    session = found
    session.abandon("closed by the node")
    return Response(status_code=204)


def longpoll_router() -> APIRouter:
    """The ``/lp`` endpoints, for the hub to mount with ``app.include_router``."""
    router = APIRouter(prefix=PREFIX, tags=["node transport"])
    router.add_api_route("/sessions", open_session, methods=["POST"], status_code=201)
    router.add_api_route("/sessions/{sid}/frames", post_frames, methods=["POST"], status_code=204)
    router.add_api_route("/sessions/{sid}/frames", get_frames, methods=["GET"])
    router.add_api_route("/sessions/{sid}", close_session, methods=["DELETE"], status_code=204)
    return router
