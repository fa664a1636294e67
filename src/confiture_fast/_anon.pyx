# cython: language_level=3
"""The COPY-text rewriter: anonymizes the ruled fields of COPY text rows, copies the rest as raw bytes.

Per row nothing touches Python: fields are found with memchr, runs of untouched fields are copied
as one block, and a ruled field is unescaped (only when it contains a backslash), checked to be
UTF-8, handed to its strategy and written back in PostgreSQL's own COPY TO escaping (see
docs/strategies.md). The pure-Python twin in anon_ref.py defines the expected output byte for byte.
"""

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize

from confiture_fast.strategies import RewriteError, STRATEGIES

cdef extern from "_siphash.h" nogil:
    void cf_siphash(uint64_t k0, uint64_t k1, const uint8_t* data, size_t n, uint8_t* out, int outlen)
    uint64_t cf_load64le(const uint8_t* p)

cdef extern from "_scan.h" nogil:
    size_t cf_find_tabs(const char* s, size_t n, size_t* pos, size_t max, int* suspect)
    bint cf_is_plain(const char* s, size_t n)

# Strategy codes of FieldSpec.code.
cdef enum:
    S_PASS = 0
    S_EMAIL
    S_PHONE
    S_NAME
    S_REDACT
    S_HASH

_CODES = {"email": S_EMAIL, "phone": S_PHONE, "name": S_NAME, "redact": S_REDACT, "hash": S_HASH}

# Error codes kept in the Rewriter until raise_error() turns them into a RewriteError.
cdef enum:
    E_NONE = 0
    E_NO_NEWLINE
    E_TOO_FEW
    E_TOO_MANY
    E_LONE_BACKSLASH
    E_UTF8
    E_NUL
    E_EOD_MARKER
    E_NOMEM

cdef const char* HEX_LOWER = b"0123456789abcdef"
cdef const char* HEX_UPPER = b"0123456789ABCDEF"


cdef int outbuf_reserve(OutBuf* b, size_t extra) noexcept nogil:
    cdef size_t need = b.len + extra
    cdef size_t cap
    cdef char* data
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 4096
    if cap < need:
        cap = need
    data = <char*>realloc(b.data, cap)
    if data == NULL:
        return -1
    b.data = data
    b.cap = cap
    return 0


cdef void outbuf_free(OutBuf* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline void put(OutBuf* b, const char* s, size_t n) noexcept nogil:
    """Appends n bytes; the caller has reserved room."""
    memcpy(b.data + b.len, s, n)
    b.len += n


cdef inline int append(OutBuf* b, const char* s, size_t n) noexcept nogil:
    """Appends n bytes, growing the buffer when needed; -1 when memory runs out."""
    if b.len + n > b.cap and outbuf_reserve(b, n) < 0:
        return -1
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline void put_hex(OutBuf* b, const uint8_t* h, int digits, const char* alphabet) noexcept nogil:
    """Writes the first `digits` hex digits of h, high nibble first; room is reserved."""
    cdef int i
    cdef char* o = b.data + b.len
    for i in range(digits >> 1):
        o[2 * i] = alphabet[h[i] >> 4]
        o[2 * i + 1] = alphabet[h[i] & 15]
    if digits & 1:
        o[digits - 1] = alphabet[h[digits >> 1] >> 4]
    b.len += digits


cdef inline bint odd_backslashes_before(const char* start, const char* end) noexcept nogil:
    """True when the run of backslashes ending at `end` is odd: the last one escapes what follows."""
    cdef const char* q = end
    while q > start and q[-1] == c'\\':
        q -= 1
    return ((end - q) & 1) == 1


cdef inline int hexval(char c) noexcept nogil:
    if c'0' <= c <= c'9':
        return c - c'0'
    if c'a' <= c <= c'f':
        return c - c'a' + 10
    if c'A' <= c <= c'F':
        return c - c'A' + 10
    return -1


cdef Py_ssize_t unescape(const char* f, size_t n, char* dst) noexcept nogil:
    """Decodes COPY text escapes of a field whose last backslash is complete; returns the length,
    or -1 at a backslash-period, which PostgreSQL reads as the end-of-copy marker, not as '.'."""
    cdef size_t i = 0, o = 0, k
    cdef char c
    cdef int v, d
    while i < n:
        c = f[i]
        i += 1
        if c != c'\\':
            dst[o] = c
            o += 1
            continue
        c = f[i]
        i += 1
        if c'0' <= c <= c'7':
            v = c - c'0'
            k = 1
            while k < 3 and i < n and c'0' <= f[i] <= c'7':
                v = v * 8 + (f[i] - c'0')
                i += 1
                k += 1
            c = <char>(v & 0xff)
        elif c == c'x':
            d = hexval(f[i]) if i < n else -1
            if d >= 0:
                v = d
                i += 1
                d = hexval(f[i]) if i < n else -1
                if d >= 0:
                    v = v * 16 + d
                    i += 1
                c = <char>v
        elif c == c'b':
            c = 8
        elif c == c'f':
            c = 12
        elif c == c'n':
            c = 10
        elif c == c'r':
            c = 13
        elif c == c't':
            c = 9
        elif c == c'v':
            c = 11
        elif c == c'.':
            return -1
        dst[o] = c
        o += 1
    return o


cdef Py_ssize_t utf8_error(const uint8_t* s, size_t n) noexcept nogil:
    """Offset of the first byte that is not valid UTF-8 (as Python's strict decoder sees it), or -1."""
    cdef size_t i = 0
    cdef uint8_t c, lo, hi
    cdef int more, k
    while i < n:
        while i + 8 <= n and (cf_load64le(s + i) & 0x8080808080808080ULL) == 0:
            i += 8
        if i >= n:
            break
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            more = 1
        elif 0xE0 <= c <= 0xEF:
            more = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            more = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return i
        if i + 1 >= n or not (lo <= s[i + 1] <= hi):
            return i
        for k in range(2, more + 1):
            if i + k >= n or (s[i + k] & 0xC0) != 0x80:
                return i
        i += more + 1
    return -1


def siphash24(key: bytes, data: bytes, int outlen=16) -> bytes:
    """SipHash-2-4 of `data` under a 16-byte key (8- or 16-byte output): the C PRF, for the tests."""
    cdef uint8_t out[16]
    cdef const uint8_t* k = key
    if len(key) != 16 or outlen not in (8, 16):
        raise ValueError("key must be 16 bytes and outlen 8 or 16")
    cf_siphash(cf_load64le(k), cf_load64le(k + 8), <const uint8_t*><const char*>data, len(data), out, outlen)
    return PyBytes_FromStringAndSize(<char*>out, outlen)


cdef class Rewriter:
    """Rewrites the COPY text rows of one table according to its FieldRules."""

    def __cinit__(self):
        self.specs = NULL
        self.tabs = NULL
        self.touched = NULL
        self.scratch = OutBuf(NULL, 0, 0)
        self.pybuf = OutBuf(NULL, 0, 0)

    def __init__(self, str table, list columns, list rules):
        cdef FieldSpec* spec
        cdef const uint8_t* k
        self.table = table
        self.columns = list(columns)
        self.ncols = len(columns)
        if self.ncols == 0:
            raise ValueError(f"{table}: no columns to copy")
        self.rows = 0
        self.tail = bytearray()
        self.keep_alive = []
        self.err_code = E_NONE
        self.specs = <FieldSpec*>realloc(NULL, self.ncols * sizeof(FieldSpec))
        self.tabs = <size_t*>realloc(NULL, self.ncols * sizeof(size_t))
        self.touched = <Py_ssize_t*>realloc(NULL, self.ncols * sizeof(Py_ssize_t))
        if self.specs == NULL or self.tabs == NULL or self.touched == NULL:
            raise MemoryError()
        for i in range(self.ncols):
            self.specs[i] = FieldSpec(S_PASS, 0, 0, 0, NULL, 0)
        for rule in rules:
            if not 0 <= rule.index < self.ncols or columns[rule.index] != rule.column:
                raise ValueError(f"{table}: rule for {rule.column!r} has index {rule.index}, "
                                 f"which is not that column in {columns!r}")
            spec = &self.specs[rule.index]
            if spec.code != S_PASS:
                raise ValueError(f"{table}: two rules for column {rule.column!r}")
            if rule.strategy not in _CODES:
                raise ValueError(f"{table}.{rule.column}: unknown strategy {rule.strategy!r}")
            if rule.is_array:
                raise ValueError(f"{table}.{rule.column}: array columns are not supported yet")
            strategy = STRATEGIES[rule.strategy]
            if strategy.keyed:
                if len(rule.key) != 16:
                    raise ValueError(f"{table}.{rule.column}: the key must be 16 bytes")
                self.keep_alive.append(rule.key)
                k = rule.key
                spec.k0 = cf_load64le(k)
                spec.k1 = cf_load64le(k + 8)
            spec.code = _CODES[rule.strategy]
            if spec.code in (S_EMAIL, S_HASH):
                spec.length = rule.params.length
            if spec.code == S_EMAIL:
                domain = rule.params.domain.encode("ascii")
                self.keep_alive.append(domain)
                spec.text = domain
                spec.text_len = len(domain)
        self.ntouched = 0
        for i in range(self.ncols):
            if self.specs[i].code != S_PASS:
                self.touched[self.ntouched] = i
                self.ntouched += 1

    def __dealloc__(self):
        free(self.specs)
        free(self.tabs)
        free(self.touched)
        outbuf_free(&self.scratch)
        outbuf_free(&self.pybuf)

    cdef int _fail(self, int code, Py_ssize_t col, Py_ssize_t detail) noexcept nogil:
        self.err_code = code
        self.err_col = col
        self.err_row = self.rows + 1
        self.err_detail = detail
        return -1

    cdef raise_error(self):
        code, col, detail = self.err_code, self.err_col, self.err_detail
        self.err_code = E_NONE
        problem = {
            E_NO_NEWLINE: "the data ends in the middle of this row (no final newline)",
            E_TOO_FEW: f"the row has {detail} fields, {self.ncols} expected",
            E_TOO_MANY: f"the row has more than the {self.ncols} expected fields",
            E_LONE_BACKSLASH: "the field ends with a lone backslash (a truncated escape, or an escaped "
                              "separator or newline, which COPY TO never writes)",
            E_UTF8: f"invalid UTF-8 at byte {detail} of the unescaped value",
            E_NUL: "the value contains a NUL byte, which PostgreSQL text cannot hold",
            E_EOD_MARKER: "the field contains \\. (PostgreSQL's end-of-copy marker), which COPY TO never "
                          "writes inside a value",
            E_NOMEM: "out of memory",
        }.get(code, f"unknown error {code}")
        raise RewriteError(self.table, self.err_row, self.columns[min(col, self.ncols - 1)], problem)

    cdef int rewrite_row(self, const char* row, size_t n, OutBuf* out) noexcept nogil:
        cdef size_t* tabs = self.tabs
        cdef const char* copy_from = row
        cdef const char* start
        cdef const char* stop
        cdef Py_ssize_t j, col, last = self.ncols - 1
        cdef int suspect = 0
        if n == 0 or row[n - 1] != c'\n':
            return self._fail(E_NO_NEWLINE, last, 0)
        if cf_find_tabs(row, n - 1, tabs, last, &suspect) != <size_t>last or suspect:
            return self._checked_row(row, n, out)
        for j in range(self.ntouched):
            col = self.touched[j]
            start = row + tabs[col - 1] + 1 if col > 0 else row
            stop = row + tabs[col] if col < last else row + n - 1
            if append(out, copy_from, start - copy_from) < 0:
                return self._fail(E_NOMEM, col, 0)
            if self._field(col, start, stop - start, out) < 0:
                return -1
            copy_from = stop
        if append(out, copy_from, row + n - copy_from) < 0:
            return self._fail(E_NOMEM, last, 0)
        self.rows += 1
        return 0

    cdef int _checked_row(self, const char* row, size_t n, OutBuf* out) noexcept nogil:
        """Field by field, for rows with a suspect backslash or a wrong field count: reports the first
        problem from the left, like the reference does."""
        cdef const char* end = row + n - 1
        cdef const char* p = row
        cdef const char* t
        cdef const char* copy_from = row
        cdef Py_ssize_t col = 0
        cdef Py_ssize_t last = self.ncols - 1
        while True:
            t = <const char*>memchr(p, c'\t', end - p)
            if t == NULL:
                t = end
            if t > p and t[-1] == c'\\' and odd_backslashes_before(p, t):
                return self._fail(E_LONE_BACKSLASH, col, 0)
            if self.specs[col].code != S_PASS:
                if append(out, copy_from, p - copy_from) < 0:
                    return self._fail(E_NOMEM, col, 0)
                if self._field(col, p, t - p, out) < 0:
                    return -1
                copy_from = t
            if t == end:
                if col != last:
                    return self._fail(E_TOO_FEW, col + 1, col + 1)
                break
            if col == last:
                return self._fail(E_TOO_MANY, last, 0)
            col += 1
            p = t + 1
        if append(out, copy_from, row + n - copy_from) < 0:
            return self._fail(E_NOMEM, col, 0)
        self.rows += 1
        return 0

    cdef int _field(self, Py_ssize_t col, const char* f, size_t n, OutBuf* out) noexcept nogil:
        """Writes the rewritten value of one ruled field (raw bytes f[0:n]) to out."""
        cdef FieldSpec* spec = &self.specs[col]
        cdef const uint8_t* v = <const uint8_t*>f
        cdef size_t vn = n
        cdef Py_ssize_t bad, un
        cdef uint8_t h[16]
        cdef uint64_t x
        if n == 0:
            return 0
        if n == 2 and f[0] == c'\\' and f[1] == c'N':
            if outbuf_reserve(out, 2) < 0:
                return self._fail(E_NOMEM, col, 0)
            put(out, b"\\N", 2)
            return 0
        if not cf_is_plain(f, n):  # else: plain ASCII, the raw bytes are the value
            if memchr(f, c'\\', n) != NULL:
                self.scratch.len = 0
                if outbuf_reserve(&self.scratch, n) < 0:
                    return self._fail(E_NOMEM, col, 0)
                un = unescape(f, n, self.scratch.data)
                if un < 0:
                    return self._fail(E_EOD_MARKER, col, 0)
                vn = <size_t>un
                v = <const uint8_t*>self.scratch.data
            bad = utf8_error(v, vn)
            if bad >= 0:
                return self._fail(E_UTF8, col, bad)
            if memchr(v, 0, vn) != NULL:
                return self._fail(E_NUL, col, 0)
        if outbuf_reserve(out, 64 + spec.text_len) < 0:
            return self._fail(E_NOMEM, col, 0)
        if spec.code == S_REDACT:
            put(out, b"[REDACTED]", 10)
            return 0
        cf_siphash(spec.k0, spec.k1, v, vn, h, 16)
        if spec.code == S_EMAIL:
            put(out, b"user_", 5)
            put_hex(out, h, spec.length, HEX_LOWER)
            put(out, b"@", 1)
            put(out, spec.text, spec.text_len)
        elif spec.code == S_HASH:
            put_hex(out, h, spec.length, HEX_LOWER)
        elif spec.code == S_PHONE:
            x = cf_load64le(h) % 10000
            put(out, b"+1-555-", 7)
            out.data[out.len] = <char>(c'0' + x // 1000)
            out.data[out.len + 1] = <char>(c'0' + x // 100 % 10)
            out.data[out.len + 2] = <char>(c'0' + x // 10 % 10)
            out.data[out.len + 3] = <char>(c'0' + x % 10)
            out.len += 4
        elif spec.code == S_NAME:
            put(out, b"User ", 5)
            put_hex(out, h, 4, HEX_UPPER)
        return 0

    def rewrite(self, data) -> bytes:
        """Rewrites the complete rows in `data` (any chunking); a trailing partial row waits for more."""
        cdef const unsigned char[::1] buf = data
        cdef const char* p
        cdef const char* nl
        cdef size_t n = buf.shape[0]
        cdef size_t start = 0
        cdef int rc = 0
        cdef const char* tp
        self.pybuf.len = 0
        if n == 0:
            return b""
        p = <const char*>&buf[0]
        if len(self.tail):
            nl = <const char*>memchr(p, c'\n', n)
            if nl == NULL:
                self.tail += data
                return b""
            start = nl - p + 1
            self.tail += data[:start]
            tp = self.tail
            rc = self.rewrite_row(tp, len(self.tail), &self.pybuf)
            if rc < 0:
                self.raise_error()
            del self.tail[:]
        with nogil:
            while start < n:
                nl = <const char*>memchr(p + start, c'\n', n - start)
                if nl == NULL:
                    break
                rc = self.rewrite_row(p + start, nl - p - start + 1, &self.pybuf)
                if rc < 0:
                    break
                start = nl - p + 1
        if rc < 0:
            self.raise_error()
        if start < n:
            self.tail += data[start:]
        return PyBytes_FromStringAndSize(self.pybuf.data, self.pybuf.len)

    def finish(self) -> None:
        """Raises RewriteError when the data ended inside a row."""
        if len(self.tail):
            col = min(self.tail.count(b"\t"), self.ncols - 1)
            self._fail(E_NO_NEWLINE, col, 0)
            self.raise_error()
