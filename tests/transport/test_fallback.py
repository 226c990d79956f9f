"""Falling back through transports in order, and remembering the one that worked."""

from __future__ import annotations

import pytest

from confide._errors import TransportError
from confide.transport import Connection, FallbackConnector, memory_pair


class FakeConnector:
    def __init__(self, name: str, works: bool) -> None:
        self.name = name
        self.works = works
        self.tries = 0

    async def connect(self) -> Connection:
        self.tries += 1
        if not self.works:
            raise TransportError(f"{self.name} is blocked")
        return memory_pair()[0]


async def test_the_first_working_transport_is_used_and_then_tried_first() -> None:
    blocked, working, spare = (
        FakeConnector("websocket", False),
        FakeConnector("grpc", True),
        FakeConnector("longpoll", True),
    )
    connector = FallbackConnector([blocked, working, spare])

    await connector.connect()
    await connector.connect()

    assert connector.name == "grpc"
    assert (blocked.tries, working.tries, spare.tries) == (1, 2, 0)


async def test_when_every_transport_fails_the_error_lists_each() -> None:
    connector = FallbackConnector([FakeConnector("websocket", False), FakeConnector("longpoll", False)])

    with pytest.raises(
        TransportError, match=r"websocket: websocket is blocked; longpoll: longpoll is blocked"
    ):
        await connector.connect()


def test_an_empty_list_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match="at least one"):
        FallbackConnector([])
