"""The record writer: a child process that stores a backtest's record batches.

Storing a batch is Python work (row tuples, psycopg's COPY encoding, the equity chart's
reduction) plus waiting on the database. Done in the engine's process, even in a thread, that
work shares the interpreter lock with the replay; done here, it runs on the other core.
`RecordWriter` is the engine's recorder: it hands each batch over in a form that is cheap to
make and to pickle (`batch_encoded`: each list of records as columns, Decimals as their exact
text, times as integer microseconds), and the child rebuilds the same records
(`batch_decoded`) and stores them with a `DatabaseRecorder`, exactly as in line.

The protocol, over the child's stdin and stdout; each message is an 8-byte big-endian length,
then a pickle:
  parent -> child: first the set-up (the parent connection's database settings, the run id,
    the log line limit), then one encoded batch per message. EOF ends the child: the parent
    closed the pipe, or went away (so no child outlives its engine).
  child -> parent: one reply per message, in order: None once it is done (set up, batch
    stored), or the error and its traceback text, after which the child reads nothing more
    and exits, so nothing after a failed batch is stored.
The parent's feeder thread sends a message only after the previous one's reply: the child holds
one batch at a time, at most `pending` more wait in the parent (encoded), and the engine waits
when the writer falls behind. Writing to and reading from the pipes releases the interpreter
lock, so the feeder costs the engine nothing while it waits.

The child is started with `subprocess` (a Celery prefork worker's daemonic processes may not
start multiprocessing children) as `python -c` that sets Django up before importing this
module, since importing `runs.runners` imports models. It inherits the environment
(DJANGO_SETTINGS_MODULE and the settings read from it) and takes the database from the set-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from runs.engine.records import RecordBatch

if TYPE_CHECKING:
    from runs.runners.recorder import DatabaseRecorder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHILD_COMMAND = [sys.executable, "-c", "import django; django.setup(); from runs.runners.record_writer import writer_main; writer_main()"]
# What the child needs of the parent connection's settings to reach the same database (under
# pytest-django the test database, whose NAME is not the one in settings).
DATABASE_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
CHILD_EXIT_WAIT_SECONDS = 30


class RecordWriteFailed(RuntimeError):
    """Storing a batch failed in the record writer; the child's traceback is the cause."""


class ChildTraceback(Exception):
    """The record writer's traceback text, shown as the cause of RecordWriteFailed."""

    def __str__(self) -> str:
        return self.args[0]


class RecordWriter:
    """Stores a backtest's batches in a child process (see the module docstring) while the
    engine goes on. A failed write is raised in the engine's thread at its next batch and by
    `close()`, with the child's traceback as the cause.

    The final batch is only queued: the caller goes on (the backtest runner works out the
    metrics meanwhile) and then calls `close()`, which returns once everything is stored. The
    child starts with the first batch that is not the last and leaves at least
    `min_seconds_left` of the run to go (by its progress so far); until then batches are stored
    in line, so a run shorter than that (a study's trial on daily bars, a few years of minute
    bars) never waits for a child to start up.
    The child has its own database connection, which cannot see the rows of a transaction still
    open in the parent: see `backtest_recorder`."""

    # Batches that may wait in the parent (~1.3 MB each encoded, for a quarter second of a busy
    # minute backtest): enough to cover the child's start-up (~1 s) and a slow commit without
    # stopping the engine; with 2, a million-bar run spent 0.2–0.9 s blocked here.
    PENDING_BATCHES = 8

    def __init__(self, *, run_id: int, log_max_lines: int, min_seconds_left: float, pending: int = PENDING_BATCHES):
        self.run_id = run_id
        self.log_max_lines = log_max_lines
        self._payloads: queue.Queue = queue.Queue(maxsize=pending)
        self._failure: tuple[str, str] | None = None  # (the error, the child's traceback text or "")
        self._process: subprocess.Popen | None = None
        self._feeder: threading.Thread | None = None
        self._closed = False
        self._created_at = time.monotonic()
        self._min_seconds_left = min_seconds_left
        # Batches stored before the child starts (and a short run's only batch): in line.
        self._in_line = backtest_database_recorder(run_id=run_id, log_max_lines=log_max_lines)

    def record(self, batch: RecordBatch) -> None:
        self._raise_if_failed()
        if self._process is None:
            if batch.final or self._seconds_left(batch) < self._min_seconds_left:
                self._in_line.record(batch)
                return
            self._start()
        self._payloads.put(batch_encoded(batch))

    def _seconds_left(self, batch: RecordBatch) -> float:
        """The run's remaining time, estimated from its progress so far."""
        elapsed = time.monotonic() - self._created_at
        return elapsed * (100 - batch.progress) / max(batch.progress, 1)

    def close(self, *, raise_failure: bool = True) -> None:
        """Wait until the batches given so far are stored (the child then exits on its own)
        and raise a failed write (unless `raise_failure` is off: the caller is already
        failing). Safe to call again."""
        if self._feeder is not None and not self._closed:
            self._closed = True
            self._payloads.put(None)
            self._payloads.join()  # every batch answered (the child exits meanwhile, on its own)
        if raise_failure:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            error, child_traceback = self._failure
            cause = ChildTraceback(child_traceback) if child_traceback else None
            raise RecordWriteFailed(f"storing the run's records failed: {error}") from cause

    def _start(self) -> None:
        from django.db import connection

        setup = {
            "database": {key: connection.settings_dict[key] for key in DATABASE_KEYS},
            "run_id": self.run_id,
            "log_max_lines": self.log_max_lines,
            # What the in-line recorder learnt from the batches it stored before the child took over.
            "deposits": self._in_line.deposits,
            "stored_orders": self._in_line.stored_orders,
        }
        self._process = subprocess.Popen(
            CHILD_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle; the child ends at EOF
        )
        # The set-up goes first; the child's start-up (Python, Django) overlaps the replay.
        self._feeder = threading.Thread(
            target=self._feed, args=(pickle.dumps(setup, protocol=5),), name=f"run-{self.run_id}-record-feeder", daemon=True
        )
        self._feeder.start()

    def _feed(self, setup: bytes) -> None:
        self._failure = self._exchange(setup)
        while (payload := self._payloads.get()) is not None:
            # After a failure, batches are still taken (and dropped) so the engine never waits on a dead writer.
            if self._failure is None:
                self._failure = self._exchange(payload)
            self._payloads.task_done()
        self._payloads.task_done()  # close() returns
        self._child_wait()  # EOF: the child exits

    def _exchange(self, payload: bytes) -> tuple[str, str] | None:
        """Send one message and wait for its reply: None, or what went wrong (see `_failure`)."""
        try:
            message_write(self._process.stdin, payload)
            reply = message_read(self._process.stdout)
            if reply is not None:
                return pickle.loads(reply)
        except (OSError, EOFError, pickle.UnpicklingError):  # the pipe broke: the child is gone
            pass
        return f"the record writer process ended unexpectedly (exit code {self._child_wait()})", ""

    def _child_wait(self) -> int:
        """Close the child's input (it exits at EOF) and wait for it to end; a child that does
        not end in time is killed rather than waited for forever."""
        with contextlib.suppress(OSError):  # a broken pipe: nothing left to send anyway
            self._process.stdin.close()
        try:
            self._process.wait(timeout=CHILD_EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        return self._process.returncode


def backtest_database_recorder(*, run_id: int, log_max_lines: int) -> DatabaseRecorder:
    """The in-line recorder of a backtest, in either process: its run's only writer of orders."""
    from runs.runners.recorder import DatabaseRecorder  # needs the app registry: see CHILD_COMMAND

    return DatabaseRecorder(run_id=run_id, log_max_lines=log_max_lines, sole_order_writer=True)


# -- messages ---------------------------------------------------------------------------------


def message_write(stream, payload: bytes) -> None:
    stream.write(len(payload).to_bytes(8, "big"))
    stream.write(payload)
    stream.flush()


def message_read(stream) -> bytes | None:
    """The next message's payload; None at EOF between messages."""
    header = stream.read(8)
    if not header:
        return None
    size = int.from_bytes(header, "big")
    payload = stream.read(size) if len(header) == 8 else b""
    if len(header) < 8 or len(payload) < size:
        raise EOFError("the record writer's pipe closed in the middle of a message")
    return payload


# -- batches as columns -----------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
NoneType = type(None)


class Records(NamedTuple):
    """A list of records of one class, as one encoded column per field (`column_encoded`)."""

    record_class: type
    columns: list[tuple[str, object]]


def batch_encoded(batch: RecordBatch) -> bytes:
    """A batch as the child's input: each list of records as `Records`, the rest as it is.
    Pickling the records themselves costs several times more (slots dataclasses pickle through
    Python code; each Decimal and datetime is reduced on its own)."""
    fields = {field.name: getattr(batch, field.name) for field in dataclasses.fields(RecordBatch)}
    # A fill's time is also its ledger entries' and its order's (often the very same object, see
    # the simulated broker): each time object of the batch is converted once. Keys are ids of
    # objects the batch keeps alive, so none is reused meanwhile.
    microseconds_of: dict[int, int] = {}
    for name, value in fields.items():
        if isinstance(value, list) and value:
            getters = field_getters(type(value[0]))
            fields[name] = Records(type(value[0]), [column_encoded(list(map(getter, value)), microseconds_of) for getter in getters])
    return pickle.dumps(fields, protocol=5)


def batch_decoded(payload: bytes) -> RecordBatch:
    fields = pickle.loads(payload)
    for name, value in fields.items():
        if isinstance(value, Records):
            columns = [column_decoded(*column) for column in value.columns]
            fields[name] = [value.record_class(*row) for row in zip(*columns, strict=True)]
    return RecordBatch(**fields)


@functools.cache
def field_getters(record_class: type) -> list:
    return [operator.attrgetter(field.name) for field in dataclasses.fields(record_class)]


def column_encoded(values: list, microseconds_of: dict[int, int]) -> tuple[str, object]:
    """One field of a list of records in the form cheapest to make and to pickle: Decimals (or
    None) as their exact text, one per line; times (UTC-aware) as integer microseconds since
    the epoch (each time object converted once per `microseconds_of`, a memo by id); strings
    joined by line breaks when none holds one; anything else (ints, the SDK's enums, which pickle
    once and are then referenced) as it is."""
    kinds = set(map(type, values))
    if Decimal in kinds and kinds <= {Decimal, NoneType}:
        return "decimal", "\n".join(map(str, values))
    if kinds == {datetime}:
        encoded = []
        for time in values:
            microseconds = microseconds_of.get(id(time))
            if microseconds is None:
                microseconds = microseconds_of[id(time)] = (time - EPOCH) // MICROSECOND
            encoded.append(microseconds)
        return "time", encoded
    if kinds == {str}:
        joined = "\n".join(values)
        if joined.count("\n") == len(values) - 1:
            return "text", joined
    return "as is", values


def column_decoded(encoding: str, values) -> list:
    if encoding == "decimal":
        return [None if text == "None" else Decimal(text) for text in values.split("\n")]
    if encoding == "time":
        return list(map(EPOCH.__add__, map(MICROSECOND.__mul__, values)))  # maps: half the time of a loop
    if encoding == "text":
        return values.split("\n")
    return values


# -- the child --------------------------------------------------------------------------------


def writer_main() -> None:
    """The child's side of the protocol (Django is already set up: see CHILD_COMMAND)."""
    from django.db import connections

    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the replies
    try:
        if (first := message_read(requests)) is None:
            return  # the parent went away before sending anything
        setup = pickle.loads(first)
        connections["default"].close()
        connections["default"].settings_dict.update(setup["database"])
        # The parent's in-line recorder already knows whether the run had orders (its map, or
        # None): the child carries on with its state instead of asking the database again.
        from runs.runners.recorder import DatabaseRecorder

        recorder = DatabaseRecorder(run_id=setup["run_id"], log_max_lines=setup["log_max_lines"])
        recorder.deposits, recorder.stored_orders = setup["deposits"], setup["stored_orders"]
        message_write(replies, pickle.dumps(None))
        while (payload := message_read(requests)) is not None:
            recorder.record(batch_decoded(payload))
            message_write(replies, pickle.dumps(None))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it in the engine's thread
        with contextlib.suppress(OSError):  # the parent may be gone
            message_write(replies, pickle.dumps((f"{type(exc).__name__}: {exc}", traceback.format_exc())))
        sys.exit(1)
    finally:
        connections.close_all()
