"""WebSocket transport: the node dials ``ws(s)://HUB/ws/node``; binary frames both ways.

- ``_framing``: the endpoint's path and the frame limit both ends share
- ``_client``: the node's end, ``WebSocketConnector`` over ``websockets``
- ``_server``: the hub's end, ``NodeWebSocket`` over Starlette's ``WebSocket``

Nothing is imported here, so the node's end never loads Starlette.
"""
