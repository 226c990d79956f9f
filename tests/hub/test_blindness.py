"""Hub blindness: a canary planted in node data and in a task's input never reaches the hub.

Every byte between the parties and the hub passes through a recording TCP relay; after
the tasks ran, the canary is searched for in those bytes, the hub's database files and
everything the hub logged. A positive control checks that the researcher did get it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from confide.local import COLLABORATION, free_port
from tests.conftest import InProcessConsortium

TABLE_CANARY = "canary_3f9a1c7e5d"  # the table name: travels in every task input
VALUE_CANARY = 31415.9265358  # a patient's value: travels in node-a's result


class RecordingRelay:
    """A TCP relay that keeps a copy of every byte in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    self.seen += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def _plant(c: InProcessConsortium) -> None:
    for node_id in c.node_ids:
        path = c.local.node_config_path(node_id)
        config = yaml.safe_load(path.read_text())
        config["data"][0]["name"] = TABLE_CANARY
        # the summary shows the canary as a maximum: extremes allowed for the renamed table
        config["policy"]["tables"] = {TABLE_CANARY: {"allow_extremes": True}}
        path.write_text(yaml.safe_dump(config))
    data = c.local.root / "node-a" / "patients.csv"
    table = pacsv.read_csv(data)
    values = table.column("hippocampus_ml").to_pylist()
    values[7] = VALUE_CANARY
    pacsv.write_csv(
        table.set_column(table.column_names.index("hippocampus_ml"), "hippocampus_ml", pa.array(values)),
        data,
    )


def _needles() -> list[bytes]:
    return [
        TABLE_CANARY.encode(),
        TABLE_CANARY.encode("utf-16-le"),
        repr(VALUE_CANARY).encode(),
        b"31415.92",
        struct.pack("<d", VALUE_CANARY),
        struct.pack(">d", VALUE_CANARY),
    ]


def test_canaries_never_reach_the_hub(tmp_path: Path, caplog: object) -> None:
    relay_port, hub_port = free_port(), free_port()
    # plain HTTP: the relay then sees exactly what the hub's application sees
    c = InProcessConsortium(tmp_path / "c", hub_port=hub_port, tls=False)
    # kits point at the relay's port; the hub listens behind it
    assert c.local.port != hub_port
    c.local.port = relay_port
    c.local.hub_url = f"http://127.0.0.1:{relay_port}"
    c.local.prepare()
    _plant(c)
    relay = RecordingRelay(hub_port)
    c.bg.call(relay.start(relay_port))
    hub_log = logging.getLogger()
    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    hub_log.addHandler(handler)
    old_level = hub_log.level
    hub_log.setLevel(logging.DEBUG)
    try:
        c.start()
        with c.client() as client:
            results = [
                client.run(
                    COLLABORATION,
                    "stats.summary",
                    {"table": TABLE_CANARY, "columns": ["hippocampus_ml", "age"]},
                    timeout_s=30,
                )
                for _ in range(3)
            ]
            # node-to-node traffic too: the ring's masked running sums cross the hub
            ring = client.run(
                COLLABORATION,
                "secure.ring_sum",
                {"table": TABLE_CANARY, "column": "hippocampus_ml"},
                timeout_s=30,
            ).raise_for_errors()
            # and secure aggregation: masked vectors, sealed shares and pads cross the hub
            moments = client.run_statistic(
                COLLABORATION,
                "stats.moments",
                {
                    "table": TABLE_CANARY,
                    "columns": ["hippocampus_ml"],
                    "bounds": {"hippocampus_ml": [0, 40000]},
                    "max_rows": 1000,
                },
                timeout_s=30,
            )
    finally:
        hub_log.removeHandler(handler)
        hub_log.setLevel(old_level)
        c.close()

    # positive control: the researcher opened both canaries
    node_a = results[0].results[0]
    assert node_a.output is not None and node_a.output["table"] == TABLE_CANARY
    assert node_a.output["columns"]["hippocampus_ml"]["max"] == VALUE_CANARY
    assert len(relay.seen) > 10_000
    assert ring.results[0].output is not None and ring.results[0].output["total"] is not None
    assert moments.survivors == tuple(c.node_ids)
    assert moments.output.groups[0].columns["hippocampus_ml"].count == 3 * c.local.rows  # type: ignore[attr-defined]

    db_bytes = b"".join(p.read_bytes() for p in (c.local.kits / "hub").glob("hub.db*"))
    logged = "\n".join(records).encode()
    assert b"stats.summary" in relay.seen  # the relay did see the routing metadata
    for needle in _needles():
        assert needle not in relay.seen, f"{needle!r} crossed the hub"
        assert needle not in db_bytes, f"{needle!r} is in the hub's database"
    hub_side = "\n".join(r for r in records).encode()
    for needle in _needles()[:1]:
        # node agents run in this process too and may log the table name locally; the hub's
        # own loggers ('confide.hub', 'uvicorn') must not
        assert needle not in b"\n".join(
            line for line in hub_side.split(b"\n") if b"hub" in line or b"uvicorn" in line
        )
    assert logged  # something was logged, so the search above was not vacuous
