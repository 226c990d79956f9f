"""A whole consortium on this machine, for the demo, simulations, tests and benchmarks.

``LocalConsortium`` provisions kits, writes each node's data, starts the hub and one node
per hospital as separate processes (``confide hub start``, ``confide node start``) on
loopback, and stops them when its ``with`` block ends. ``patients`` and
``write_patients`` make the demo's deterministic synthetic patients.
"""

from confide.local._consortium import (
    COLLABORATION,
    LocalConsortium,
    TableWriter,
    free_port,
    write_sample_patients,
)
from confide.local._sample import PATIENT_COLUMNS, patients, write_patients

__all__ = [
    "COLLABORATION",
    "PATIENT_COLUMNS",
    "LocalConsortium",
    "TableWriter",
    "free_port",
    "patients",
    "write_patients",
    "write_sample_patients",
]
