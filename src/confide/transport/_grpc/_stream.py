"""Either end of the gRPC Relay stream as a ``Connection``, and what grpc.aio raises when a call ends.

:class:`GrpcStream` adapts a read and a write coroutine (the node's call in
:mod:`._client`, the hub's servicer context in :mod:`._server`) to
:class:`~confide.transport.Connection`; each end subclasses it to say how it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import grpc.aio

from confide._errors import TransportError

__all__ = ["GRPC_ERRORS", "GrpcStream", "describe"]

# Everything grpc.aio raises for a call that failed or ended: a status from the peer
# (AioRpcError is a grpc.RpcError), misuse of a finished call (InvalidStateError,
# UsageError), an aborted or internally failed call.
GRPC_ERRORS: tuple[type[BaseException], ...] = (
    grpc.RpcError,
    grpc.aio.BaseError,
    asyncio.InvalidStateError,
)


def describe(error: BaseException) -> str:
    """A one-line account of a gRPC failure: status code and details when there are any."""
    if isinstance(error, grpc.RpcError):
        rpc = cast(Any, error)
        with contextlib.suppress(Exception):
            code = rpc.code()
            name = code.name if code is not None else "UNKNOWN"
            return f"{name}: {rpc.details() or 'no details'}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished background read's outcome as seen, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class GrpcStream:
    """One end of the Relay stream as a :class:`Connection`; subclasses say how to end it.

    A read is kept in a task of its own and survives a cancelled :meth:`recv` (e.g. under
    ``asyncio.wait_for``): cancelling a pending grpc.aio read would cancel the whole call,
    and a frame read after the waiter left must still reach the next :meth:`recv`. Like a
    WebSocket, one task receives at a time; any number may send.
    """

    def __init__(self, read: Callable[[], Awaitable[Any]], write: Callable[[bytes], Awaitable[Any]]) -> None:
        self._read = read
        self._write = write
        self._reading: asyncio.Future[Any] | None = None
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._send_lock = asyncio.Lock()  # grpc.aio allows one write in flight per call

    def where(self) -> str:
        """The peer, for error messages."""
        raise NotImplementedError

    @property
    def ending(self) -> asyncio.Future[str]:
        """Done, with the reason, once this end is closed or abandoned."""
        return self._ended

    def end(self, reason: str) -> bool:
        """Mark the stream over: pending and later :meth:`recv` / :meth:`send` fail with ``reason``."""
        if self._ended.done():
            return False
        self._ended.set_result(reason)
        reading, self._reading = self._reading, None
        if reading is not None:
            if reading.done():
                _retrieve(reading)
            else:
                reading.add_done_callback(_retrieve)
        return True

    async def send(self, frame: bytes) -> None:
        if self._ended.done():
            raise TransportError(f"gRPC stream with {self.where()} is closed: {self._ended.result()}")
        async with self._send_lock:
            try:
                await self._write(frame)
            except GRPC_ERRORS as exc:
                raise TransportError(f"gRPC stream with {self.where()} failed: {describe(exc)}") from None
            except asyncio.CancelledError:
                # grpc.aio fails a write on a call cancelled underneath it (closed by
                # another task) with CancelledError; only the sender's own cancellation is one.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                reason = self._ended.result() if self._ended.done() else "the call was cancelled"
                raise TransportError(f"gRPC stream with {self.where()} is closed: {reason}") from None

    async def recv(self) -> bytes:
        if self._ended.done():
            raise TransportError(f"gRPC stream with {self.where()} is closed: {self._ended.result()}")
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        await asyncio.wait((reading, self._ended), return_when=asyncio.FIRST_COMPLETED)
        if self._ended.done():
            raise TransportError(f"gRPC stream with {self.where()} is closed: {self._ended.result()}")
        self._reading = None
        if reading.cancelled():
            raise TransportError(f"gRPC stream with {self.where()} was cancelled")
        error = reading.exception()
        if isinstance(error, GRPC_ERRORS):
            raise TransportError(f"gRPC stream with {self.where()} failed: {describe(error)}")
        message = reading.result()
        if message is grpc.aio.EOF:
            raise TransportError(f"{self.where()} ended the gRPC stream")
        if not isinstance(message, bytes):
            raise TransportError(f"{self.where()} sent a {type(message).__name__}, not a bytes frame")
        return message
