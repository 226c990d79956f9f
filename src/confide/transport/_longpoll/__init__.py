"""HTTPS long-polling transport: for hospitals whose proxies pass only plain HTTP(S) requests.

- ``_framing``: the requests, the body format and the limits both ends share
- ``_client``: the node's end, ``LongPollConnector`` over ``httpx``
- ``_session``: the hub's end of one session (``LongPollSession``) and the hub's
  sessions with their idle sweep (``LongPollHub``), running the hub's session loop
- ``_routes``: the ``/lp`` endpoints the hub mounts (``longpoll_router``)

Nothing is imported here, so the node's end never loads FastAPI and the hub's never httpx.
"""
