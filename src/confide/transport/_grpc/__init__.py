"""gRPC transport (``grpc.aio``): one bidirectional stream per node, one envelope per message.

- ``_framing``: the Relay method, the frame limit and the keepalive both ends share,
  as the node's channel options and the hub's server options
- ``_stream``: ``GrpcStream``, either end of the stream as a ``Connection``
- ``_client``: the node's end, ``GrpcConnector`` (proxy and TLS choices)
- ``_server``: the hub's end, ``GrpcNodeServer``, a listener running the hub's session loop

Nothing is imported here; ``confide.transport`` loads these modules on first use.
"""
