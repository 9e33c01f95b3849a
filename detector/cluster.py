"""Scanning an archive on a Dask distributed cluster (``mirrorwatch scan --cluster ADDRESS``).

The tasks are the archive's files, and pieces of its large pcaps cut at record boundaries, in
runs of about TASK_BYTES.  Each worker runs one engine over a task (parts.run_parts) and sends
back what folding needs (parts.PartResult); the results fold in capture order, as those of
local worker processes do, so the report is the one a single machine would write.

Every worker needs the same mirrorwatch version (checked before any task is sent) and the
archive at the same path.  Flow keys are salted per run: each task carries this process's salt,
and a worker process runs the tasks of one salt at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from detector import __version__, parts
from detector.detection import Detection
from detector.flows import table
from detector.limits import Limits
from detector.parts import Part, PartResult

if TYPE_CHECKING:
    from distributed import Client

# Capture bytes per task: enough that starting an engine costs nothing in comparison, few
# enough that an archive spreads over many workers.
TASK_BYTES = 256 << 20
# Seconds to wait for the scheduler to answer.
CONNECT_TIMEOUT = 30


class ClusterError(Exception):
    """The cluster cannot run the scan: unreachable, or a worker without this version."""


def cluster_plan(paths: list[str], task_bytes: int | None = None) -> list[list[Part]]:
    """Tasks in capture order: large pcap and pcapng files cut into pieces of about
    ``task_bytes`` (as for local workers), small files gathered into runs of about that size."""
    task_bytes = task_bytes or TASK_BYTES
    pieces: list[Part] = []
    for path in paths:
        size = parts._size(Part(path))
        pieces.extend(
            parts.split(path, size // task_bytes + 1) if size > task_bytes else [Part(path)]
        )
    tasks: list[list[Part]] = []
    acc = task_bytes
    for piece in pieces:
        if acc >= task_bytes:
            tasks.append([])
            acc = 0
        tasks[-1].append(piece)
        acc += parts._size(piece)
    return tasks


_salt_turn = threading.Condition()
_salt_users = 0


def run_task(
    task: list[Part], salt: int, detection: Detection | None, limits: Limits | None
) -> PartResult:
    """One task on a worker, its flow keys hashed with the scanning process's salt."""
    global _salt_users
    with _salt_turn:
        # Tasks of another scan (another salt) running in this process: wait for them to end.
        _salt_turn.wait_for(lambda: not _salt_users or int(table.SALT) == salt)
        table.SALT = table.U64(salt)
        _salt_users += 1
    try:
        return parts.result_of(*parts.run_parts(task, None, detection, limits))
    finally:
        with _salt_turn:
            _salt_users -= 1
            _salt_turn.notify_all()


def worker_version() -> str:
    return __version__


def _connect(address: str) -> Client:
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError(
            "scanning on a cluster needs Dask: pip install 'mirrorwatch[cluster]'"
        ) from exc
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc


def _check_workers(client: Client, address: str) -> None:
    try:
        versions: dict[str, str] = client.run(worker_version)
    except ImportError as exc:
        raise ClusterError(f"a worker of {address} cannot import mirrorwatch: {exc}") from exc
    if not versions:
        raise ClusterError(f"the Dask scheduler at {address} has no workers")
    other = sorted(f"{w} ({v})" for w, v in versions.items() if v != __version__)
    if other:
        raise ClusterError(
            f"workers without mirrorwatch {__version__}: {', '.join(other)}; every worker "
            "needs the version that plans the scan"
        )


def scan_on_cluster(
    address: str,
    tasks: list[list[Part]],
    progress: Callable[[int], None] | None = None,
    detection: Detection | None = None,
    limits: Limits | None = None,
) -> list[PartResult]:
    """Run the tasks on the cluster at ``address``; results in capture order.  ``progress`` is
    told how many bytes of the tasks are done."""
    from distributed import as_completed

    with _connect(address) as client:
        _check_workers(client, address)
        salt = int(table.SALT)
        futures = client.map(
            run_task, tasks, salt=salt, detection=detection, limits=limits, pure=False
        )
        task_of = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        done = 0
        for future in as_completed(futures, loop=client.loop):
            task = task_of[future.key]
            if future.status == "error":
                raise parts.ScanFault(
                    f"{', '.join(p.path for p in task)}: failed on the cluster: "
                    f"{future.exception()!r}"
                )
            done += sum(parts._size(p) for p in task)
            if progress:
                progress(done)
        return client.gather(futures)
