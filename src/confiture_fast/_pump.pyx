# cython: language_level=3
"""The COPY pump: source `COPY ... TO STDOUT` -> rewriter -> target `COPY ... FROM STDIN`, on libpq.

The loop runs with the GIL released and makes no Python call per row. It borrows the `PGconn *` of
psycopg connections: safe because psycopg's C (or ctypes) implementation and this extension use the
same system libpq; `check_libpq()` refuses psycopg's binary wheel, which bundles a private copy.
"""

from libc.stdint cimport int64_t
from libc.stdlib cimport strtoll
from libc.string cimport memcpy

from confiture_fast._anon cimport BinaryRewriter, OutBuf, Rewriter, outbuf_free, outbuf_reserve


cdef extern from "libpq-fe.h" nogil:
    ctypedef struct PGconn:
        pass
    ctypedef struct PGresult:
        pass
    ctypedef enum ExecStatusType:
        PGRES_EMPTY_QUERY
        PGRES_COMMAND_OK
        PGRES_TUPLES_OK
        PGRES_COPY_OUT
        PGRES_COPY_IN
        PGRES_BAD_RESPONSE
        PGRES_NONFATAL_ERROR
        PGRES_FATAL_ERROR
    PGresult* PQexec(PGconn* conn, const char* query)
    ExecStatusType PQresultStatus(const PGresult* res)
    char* PQresultErrorMessage(const PGresult* res)
    char* PQresultErrorField(const PGresult* res, int fieldcode)
    char* PQerrorMessage(const PGconn* conn)
    char* PQcmdTuples(PGresult* res)
    void PQclear(PGresult* res)
    int PQgetCopyData(PGconn* conn, char** buffer, int async_)
    int PQputCopyData(PGconn* conn, const char* buffer, int nbytes)
    int PQputCopyEnd(PGconn* conn, const char* errormsg)
    PGresult* PQgetResult(PGconn* conn)
    void PQfreemem(void* ptr)
    int PQlibVersion()
    int PQsetnonblocking(PGconn* conn, int arg)
    int PQisnonblocking(const PGconn* conn)

cdef enum:
    PG_DIAG_SQLSTATE = 67  # 'C'
    PUBLISH_EVERY = 1024   # rows between two progress counter updates


class PumpError(Exception):
    """A COPY failed on one side. `side` is 'source' or 'target'; `sqlstate` may be None."""

    def __init__(self, side, message, sqlstate=None):
        super().__init__(f"{side}: {message}")
        self.side = side
        self.message = message
        self.sqlstate = sqlstate


def check_libpq(conn):
    """Refuse a psycopg whose libpq is not the one this extension is linked with."""
    import psycopg

    if psycopg.pq.__impl__ == "binary":
        raise RuntimeError(
            "psycopg's binary wheel bundles its own libpq; the COPY pump needs the system one: "
            "pip uninstall psycopg-binary && pip install 'psycopg[c]'")
    if psycopg.pq.version() != PQlibVersion():
        raise RuntimeError(f"psycopg uses libpq {psycopg.pq.version()}, the pump {PQlibVersion()}")


cdef PGconn* _ptr(conn) except NULL:
    cdef size_t addr = conn.pgconn.pgconn_ptr
    if addr == 0:
        raise ValueError("connection is closed")
    return <PGconn*>addr


cdef str _text(const char* s):
    return (<bytes>s).decode("utf-8", "replace").strip() if s != NULL else ""


cdef _raise_result(str side, PGresult* res, PGconn* conn):
    cdef const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE) if res != NULL else NULL
    msg = _text(PQresultErrorMessage(res)) if res != NULL else ""
    if not msg:
        msg = _text(PQerrorMessage(conn))
    sqlstate = (<bytes>state).decode() if state != NULL else None
    if res != NULL:
        PQclear(res)
    raise PumpError(side, msg or "connection lost", sqlstate)


cdef int64_t _finish(str side, PGconn* conn) except -1:
    """Collects the results after a COPY; returns the row count of its command tag."""
    cdef PGresult* res
    cdef int64_t n = -1
    while True:
        with nogil:
            res = PQgetResult(conn)
        if res == NULL:
            return n
        if PQresultStatus(res) != PGRES_COMMAND_OK:
            _raise_result(side, res, conn)
        n = strtoll(PQcmdTuples(res), NULL, 10)
        PQclear(res)


def pump(src, dst, bytes copy_out, bytes copy_in, Rewriter rewriter=None, Py_ssize_t batch_size=5000,
         Py_ssize_t batch_bytes=1 << 23, int64_t[:] counters=None, Py_ssize_t slot=0, bint binary=False):
    """Streams one COPY from `src` to `dst`. Both connections must be idle in a transaction.

    `binary`: the statements use COPY's binary format, whose last message is the trailer, not a row
    (the header travels with the first row); the rewriter, if any, is then a BinaryRewriter.

    After an error the source may still be in COPY OUT: the caller discards both connections
    (the target's COPY was ended with an error, so its transaction only needs a rollback).

    Rows are gathered and written to the target every `batch_size` rows or `batch_bytes` bytes,
    whichever comes first. `counters[2*slot]` and `counters[2*slot+1]` (shared memory) get the rows and bytes read so far,
    every PUBLISH_EVERY rows. Returns (rows_read, rows_written, bytes_read, bytes_written).
    """
    if rewriter is not None and binary != isinstance(rewriter, BinaryRewriter):
        raise ValueError("the rewriter's format (COPY text or binary) is not that of the statements")
    cdef PGconn* s = _ptr(src)
    cdef PGconn* d = _ptr(dst)
    # psycopg runs libpq in nonblocking mode, where PQputCopyData queues whatever a slow target has not
    # taken yet: memory would grow with the table. Blocking mode waits instead, for the pump's duration.
    cdef int s_nb = PQisnonblocking(s), d_nb = PQisnonblocking(d)
    PQsetnonblocking(s, 0)
    PQsetnonblocking(d, 0)
    try:
        return _pump(s, d, copy_out, copy_in, rewriter, batch_size, batch_bytes, counters, slot, binary)
    finally:
        PQsetnonblocking(s, s_nb)
        PQsetnonblocking(d, d_nb)


cdef _pump(PGconn* s, PGconn* d, bytes copy_out, bytes copy_in, Rewriter rewriter, Py_ssize_t batch_size,
           Py_ssize_t batch_bytes, int64_t[:] counters, Py_ssize_t slot, bint binary):
    cdef PGresult* res
    cdef OutBuf out
    cdef char* row = NULL
    cdef int n = 0
    cdef int failed = 0  # 1 source read, 2 target write, 3 rewrite, 4 out of memory
    cdef int64_t rows = 0, bytes_in = 0, bytes_out = 0, gathered = 0
    cdef int64_t* ctr = NULL
    cdef const char* sql_in = copy_in
    cdef const char* sql_out = copy_out
    cdef bint has_rw = rewriter is not None
    if counters is not None:
        if 2 * slot + 1 >= counters.shape[0]:
            raise IndexError("progress slot out of range")
        ctr = &counters[2 * slot]
    if batch_bytes < 1 or batch_size < 1:
        raise ValueError("batch_size and batch_bytes must be positive")

    with nogil:
        res = PQexec(d, sql_in)
    if PQresultStatus(res) != PGRES_COPY_IN:
        _raise_result("target", res, d)
    PQclear(res)
    with nogil:
        res = PQexec(s, sql_out)
    if PQresultStatus(res) != PGRES_COPY_OUT:
        PQputCopyEnd(d, "source COPY failed")
        try:
            _finish("target", d)
        except PumpError:
            pass
        _raise_result("source", res, s)
    PQclear(res)

    out.data = NULL
    out.len = 0
    out.cap = 0
    try:
        with nogil:
            if outbuf_reserve(&out, 1 << 16) < 0:
                failed = 4
            while failed == 0:
                n = PQgetCopyData(s, &row, 0)
                if n < 0:
                    if n == -2:
                        failed = 1
                    break
                rows += 1
                gathered += 1
                bytes_in += n
                if has_rw:
                    if rewriter.rewrite_message(row, <size_t>n, &out) < 0:
                        failed = 3
                elif outbuf_reserve(&out, <size_t>n) < 0:
                    failed = 4
                else:
                    memcpy(out.data + out.len, row, <size_t>n)
                    out.len += <size_t>n
                PQfreemem(row)
                row = NULL
                if failed == 0 and (gathered >= batch_size or out.len >= <size_t>batch_bytes):
                    if PQputCopyData(d, out.data, <int>out.len) != 1:
                        failed = 2
                    bytes_out += out.len
                    out.len = 0
                    gathered = 0
                if ctr != NULL and rows % PUBLISH_EVERY == 0:
                    ctr[0] = rows
                    ctr[1] = bytes_in
            if failed == 0 and has_rw and rewriter.end_of_data() < 0:
                failed = 3
            if failed == 0 and out.len > 0:
                if PQputCopyData(d, out.data, <int>out.len) != 1:
                    failed = 2
                bytes_out += out.len
                out.len = 0
            if binary and rows > 0:
                rows -= 1  # the trailer
            if ctr != NULL:
                ctr[0] = rows
                ctr[1] = bytes_in
    finally:
        outbuf_free(&out)

    if failed == 0:
        rows_out = _finish("source", s)
        if PQputCopyEnd(d, NULL) != 1:
            _raise_result("target", NULL, d)
        rows_in = _finish("target", d)
        return rows_out, rows_in, bytes_in, bytes_out

    # Abort the target COPY so its transaction rolls back, then report the first cause.
    PQputCopyEnd(d, b"confiture-fast: sync aborted")
    try:
        _finish("target", d)
    except PumpError as exc:
        target_exc = exc
    else:
        target_exc = None
    if failed == 1:
        _finish("source", s)
        _raise_result("source", NULL, s)
    if failed == 2:
        if target_exc is not None:
            raise target_exc
        _raise_result("target", NULL, d)
    if failed == 3:
        rewriter.raise_error()
    raise MemoryError("COPY buffer")
