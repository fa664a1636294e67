# cython: language_level=3
"""The COPY-text rewriter: anonymizes the ruled fields of COPY text rows, copies the rest as raw bytes.

Per row nothing touches Python: one SSE2 pass finds the separators, the bytes between ruled fields
are copied as blocks, and a ruled field is unescaped (only when it has a backslash), checked to be
UTF-8, handed to its strategy and written back in PostgreSQL's own COPY TO escaping (see
docs/strategies.md). The pure-Python twin in tests/anon_ref.py defines the expected output byte for byte.

This file is the row and field machinery only. Each strategy's compiled part (its C function and its
glue) is in the file of its family in _compiled/ (the twin of its module in strategies/), included
below, which registers it in the dispatch table under the strategy's name, as asyncpg's codecs do.
"""

from array import array

from libc.stdint cimport int16_t, int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memchr, memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize


cdef extern from "_siphash.h" nogil:
    void cf_siphash(uint64_t k0, uint64_t k1, const uint8_t* data, size_t n, uint8_t* out, int outlen)
    uint64_t cf_load64le(const uint8_t* p)

cdef extern from "_scan.h" nogil:
    size_t cf_find_tabs(const char* s, size_t n, size_t* pos, size_t max, int* suspect)
    bint cf_is_plain(const char* s, size_t n)

# Not a strategy's problem but the array parser's (an E_VALUE detail like the strategies' own).
cdef enum:
    CF_BAD_ARRAY = -20
    CF_BAD_BINARY_ARRAY = -30
    CF_BAD_JSONB = -31

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
    E_VALUE
    E_NOMEM
    E_BAD_HEADER        # COPY binary: what follows is the binary format's own structure
    E_FIELD_COUNT
    E_BAD_LENGTH
    E_AFTER_TRAILER
    E_TRUNCATED

# HEX_PAIRS[upper][2 * byte:2 * byte + 2]: the byte's two hex digits.
cdef char HEX_PAIRS[2][512]
for _upper, _digits in enumerate((b"0123456789abcdef", b"0123456789ABCDEF")):
    for _c in range(256):
        HEX_PAIRS[_upper][2 * _c] = _digits[_c >> 4]
        HEX_PAIRS[_upper][2 * _c + 1] = _digits[_c & 15]

# COPY TO's escaping, as PostgreSQL writes it: ESCAPES[c] is the letter after the backslash, or 0.
cdef char ESCAPES[256]
for _c in range(256):
    ESCAPES[_c] = 0
for _c, _letter in ((8, b"b"), (9, b"t"), (10, b"n"), (11, b"v"), (12, b"f"), (13, b"r"), (92, b"\\")):
    ESCAPES[_c] = _letter[0]

# E_VALUE details -> the problem they mean; each compiled strategy adds its own (problem()).
_VALUE_PROBLEMS = {CF_BAD_ARRAY: "not an array literal in PostgreSQL's output form",
                   CF_BAD_BINARY_ARRAY: "not an array in COPY's binary form (ndim, flags, element type, "
                                        "dimensions, elements)",
                   CF_BAD_JSONB: "a binary jsonb value that does not start with version byte 1"}


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


cdef inline void put_hex(OutBuf* b, const uint8_t* h, int digits, bint upper) noexcept nogil:
    """Writes the first `digits` hex digits of h, high nibble first; room is reserved."""
    cdef int i
    cdef char* o = b.data + b.len
    cdef const char* pairs = HEX_PAIRS[upper]
    for i in range(digits >> 1):
        memcpy(o + 2 * i, pairs + 2 * h[i], 2)
    if digits & 1:
        o[digits - 1] = pairs[2 * h[digits >> 1]]
    b.len += digits


cdef int escape_append(OutBuf* b, const char* s, size_t n) noexcept nogil:
    """Appends a value in COPY text escaping; -1 when memory runs out."""
    cdef size_t i
    cdef char e
    cdef char* o
    if outbuf_reserve(b, 2 * n) < 0:
        return -1
    o = b.data + b.len
    for i in range(n):
        e = ESCAPES[<uint8_t>s[i]]
        if e:
            o[0] = c'\\'
            o[1] = e
            o += 2
        else:
            o[0] = s[i]
            o += 1
    b.len = o - b.data
    return 0


cdef inline int put_value(Rewriter rw, OutBuf* out, const char* s, size_t n) noexcept nogil:
    """Appends a rewritten value as the rewriter's format carries it: raw in COPY binary (whose
    length word the caller writes), escaped in COPY text; -1 when memory runs out."""
    return append(out, s, n) if rw.raw_values else escape_append(out, s, n)


cdef int array_quote_append(OutBuf* b, const char* s, size_t n) noexcept nogil:
    """Appends an array element as array_out writes it: double-quoted when it is empty, reads as
    NULL, or holds braces, commas, quotes, backslashes or white space."""
    cdef size_t i
    cdef bint quote = n == 0 or (n == 4 and is_null_word(s))
    cdef uint8_t c
    for i in range(n):
        c = <uint8_t>s[i]
        if c == c'{' or c == c'}' or c == c',' or c == c'"' or c == c'\\' or c == c' ' or 9 <= c <= 13:
            quote = True
            break
    if not quote:
        return append(b, s, n)
    if outbuf_reserve(b, 2 * n + 2) < 0:
        return -1
    put(b, b'"', 1)
    for i in range(n):
        if s[i] == c'"' or s[i] == c'\\':
            put(b, b"\\", 1)
        put(b, s + i, 1)
    put(b, b'"', 1)
    return 0


cdef inline bint is_null_word(const char* s) noexcept nogil:
    """True for NULL in any letter case (4 bytes)."""
    return ((s[0] | 32) == c'n' and (s[1] | 32) == c'u' and (s[2] | 32) == c'l' and (s[3] | 32) == c'l')


cdef inline bint odd_backslashes_before(const char* start, const char* end) noexcept nogil:
    """True when the run of backslashes ending at `end` is odd: the last one escapes what follows."""
    cdef const char* q = end
    while q > start and (q - 1)[0] == c'\\':
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


# -- the dispatch table --------------------------------------------------------------------------
# A strategy's function appends its output for one non-empty, non-NULL unescaped value v to dst,
# which has (3 + spec.text_len) * vn + 512 + spec.max_out + spec.text_len bytes of room; h is the
# PRF digest (16 bytes) when the rule is keyed, else NULL; tmp is scratch space it may grow.
# Returns 0, OUT_NULL when the output is NULL, OUT_NOMEM, or a negative problem code of its own.
# The output is the strategy's `reference` (in its module), byte for byte.
ctypedef int (*apply_fn)(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                         OutBuf* dst) noexcept nogil
# A strategy that reads the whole field its own way (documents) writes it COPY-escaped to out
# itself; 0, or -1 with the error set in the rewriter.
ctypedef int (*field_fn)(Rewriter rw, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                         OutBuf* out) noexcept nogil
# Fills the fields of spec the strategy reads from the rule's params.
ctypedef int (*setup_fn)(Rewriter rw, FieldSpec* spec, object rule) except -1

cdef struct Entry:
    apply_fn apply
    field_fn field
    setup_fn setup
    int flags

cdef enum:
    PASS = 0            # the code of a column copied through: no rule, or a rule that keeps the value
    MAX_CODES = 64
    OUT_NULL = 1
    OUT_NOMEM = -1
    F_ASCII_OUT = 1     # the output never needs COPY escaping
    F_NULL_ALL = 2      # writes NULL for every value: an array or a JSON container becomes one NULL
    F_NUMBER = 4        # inside JSON, the output is a number, not a string

cdef Entry ENTRIES[MAX_CODES]

# Strategy name -> its code in ENTRIES, as the compiled files registered them; COPIED for the rest.
CODES = {}
COPIED = PASS


cdef register(str name, int flags, apply_fn apply, setup_fn setup, field_fn field):
    """Gives the compiled strategy `name` the next code of the dispatch table."""
    code = len(CODES) + 1
    if name in CODES or code >= MAX_CODES or (apply == NULL) == (field == NULL):
        raise RuntimeError(f"compiled strategy {name!r}: registered twice, table full, or not one function")
    ENTRIES[code].apply = apply
    ENTRIES[code].field = field
    ENTRIES[code].setup = setup
    ENTRIES[code].flags = flags
    CODES[name] = code


cdef problem(int detail, str text):
    """Names a strategy's negative return code for the RewriteError."""
    if detail in _VALUE_PROBLEMS or detail >= OUT_NOMEM:
        raise RuntimeError(f"problem code {detail} already used: {text}")
    _VALUE_PROBLEMS[detail] = text


cdef set_text(Rewriter rw, FieldSpec* spec, bytes raw):
    """Points spec.text at raw, which the rewriter keeps alive."""
    rw.keep_alive.append(raw)
    spec.text = raw
    spec.text_len = len(raw)


# One file per family of strategies, as in strategies/ (a new family adds its line here).
include "_compiled/pseudonyms.pxi"
include "_compiled/masks.pxi"
include "_compiled/typed.pxi"
include "_compiled/fake.pxi"
include "_compiled/documents.pxi"


def compiled_flags() -> dict:
    """Strategy name -> the names of its compiled entry's flags (the registry's tests compare them)."""
    names = {F_ASCII_OUT: "ascii_out", F_NULL_ALL: "null_all", F_NUMBER: "number"}
    return {name: {n for f, n in names.items() if ENTRIES[code].flags & f} for name, code in CODES.items()}


def siphash24(key: bytes, data: bytes, int outlen=16) -> bytes:
    """SipHash-2-4 of `data` under a 16-byte key (8- or 16-byte output): the C PRF, for the tests."""
    cdef uint8_t out[16]
    cdef const uint8_t* k = key
    if len(key) != 16 or outlen not in (8, 16):
        raise ValueError("key must be 16 bytes and outlen 8 or 16")
    cf_siphash(cf_load64le(k), cf_load64le(k + 8), <const uint8_t*><const char*>data, len(data), out, outlen)
    return PyBytes_FromStringAndSize(<char*>out, outlen)


cdef class Rewriter:
    """Rewrites the COPY text rows of one table according to its FieldRules.

    `registry` (confiture_fast.strategies.COMPILED) maps a rule to its entry in the dispatch table,
    its pools and its inner rules, and gives the error type: this module imports no application module.
    """

    def __cinit__(self):
        self.specs = NULL
        self.tabs = NULL
        self.touched = NULL
        self.scratch = OutBuf(NULL, 0, 0)
        self.keybuf = OutBuf(NULL, 0, 0)
        self.result = OutBuf(NULL, 0, 0)
        self.tmp = OutBuf(NULL, 0, 0)
        self.arraybuf = OutBuf(NULL, 0, 0)
        self.elembuf = OutBuf(NULL, 0, 0)
        self.pybuf = OutBuf(NULL, 0, 0)

    def __init__(self, str table, list columns, list rules, registry):
        self.registry = registry
        self.table = table
        self.columns = list(columns)
        self.ncols = len(columns)
        if self.ncols == 0:
            raise ValueError(f"{table}: no columns to copy")
        self.rows = 0
        self.raw_values = False
        self.tail = bytearray()
        self.keep_alive = []
        self.err_code = E_NONE
        self.specs = <FieldSpec*>realloc(NULL, self.ncols * sizeof(FieldSpec))
        self.tabs = <size_t*>realloc(NULL, self.ncols * sizeof(size_t))
        self.touched = <Py_ssize_t*>realloc(NULL, self.ncols * sizeof(Py_ssize_t))
        if self.specs == NULL or self.tabs == NULL or self.touched == NULL:
            raise MemoryError()
        for i in range(self.ncols):
            self.specs[i].code = PASS
        seen = set()
        for rule in rules:
            if not 0 <= rule.index < self.ncols or columns[rule.index] != rule.column:
                raise ValueError(f"{table}: rule for {rule.column!r} has index {rule.index}, "
                                 f"which is not that column in {columns!r}")
            if rule.index in seen:
                raise ValueError(f"{table}: two rules for column {rule.column!r}")
            seen.add(rule.index)
            if rule.strategy not in self.registry.codes:
                raise ValueError(f"{table}.{rule.column}: unknown strategy {rule.strategy!r}")
            if not -1 <= rule.key_index < self.ncols:
                raise ValueError(f"{table}.{rule.column}: key column index {rule.key_index} out of range")
            self._set_spec(&self.specs[rule.index], rule)
        self.ntouched = 0
        for i in range(self.ncols):
            if self.specs[i].code != PASS:
                self.touched[self.ntouched] = i
                self.ntouched += 1

    cdef _set_spec(self, FieldSpec* spec, rule):
        """Fills the C description of one rule: the generic fields here, the strategy's own in its
        setup function; Python objects it points into go to keep_alive."""
        cdef const uint8_t* k
        cdef const char* text
        cdef Entry* entry
        p = rule.params
        code = self.registry.codes[rule.strategy]
        if code != PASS and code not in CODES.values():
            raise ValueError(f"{self.table}.{rule.column}: {rule.strategy!r} has no compiled function (code {code})")
        spec.code = code
        entry = &ENTRIES[spec.code]
        spec.key_index = rule.key_index
        spec.is_array = rule.is_array and not entry.flags & F_NULL_ALL
        spec.ascii_out = entry.flags & F_ASCII_OUT
        spec.keyed = rule.strategy in self.registry.keyed
        spec.k0 = spec.k1 = 0
        spec.text = NULL
        spec.text_len = spec.max_out = 0
        spec.length = 0
        spec.a = spec.b = 0
        spec.x = 0
        spec.ext = NULL
        if spec.keyed:
            if len(rule.key) != 16:
                raise ValueError(f"{self.table}.{rule.column}: the key must be 16 bytes")
            k = rule.key
            spec.k0 = cf_load64le(k)
            spec.k1 = cf_load64le(k + 8)
        if entry.setup != NULL:
            entry.setup(self, spec, rule)
        pools = self.registry.pools(rule.strategy, p)
        if pools is not None:
            for i, values in enumerate(pools):
                encoded = [v.encode() for v in values]
                blob = b"".join(encoded)
                offsets = array("I", [0])
                for v in encoded:
                    offsets.append(offsets[len(offsets) - 1] + len(v))
                self.keep_alive += [blob, offsets]
                text = blob
                spec.pools[i].data = text
                spec.pools[i].off = <const unsigned int*><size_t>offsets.buffer_info()[0]
                spec.pools[i].n = len(encoded)
                spec.max_out += max(map(len, encoded))
            spec.max_out += 64 + spec.text_len

    def __dealloc__(self):
        free(self.specs)
        free(self.tabs)
        free(self.touched)
        outbuf_free(&self.scratch)
        outbuf_free(&self.keybuf)
        outbuf_free(&self.result)
        outbuf_free(&self.tmp)
        outbuf_free(&self.arraybuf)
        outbuf_free(&self.elembuf)
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
            E_VALUE: _VALUE_PROBLEMS.get(detail, "unreadable value"),
            E_NOMEM: "out of memory",
            E_BAD_HEADER: "not COPY's binary format: the header's signature or flags are not PostgreSQL's",
            E_FIELD_COUNT: f"the row has {detail} fields, {self.ncols} expected",
            E_BAD_LENGTH: "a field length below -1",
            E_AFTER_TRAILER: "data after the end-of-data trailer",
            E_TRUNCATED: "the data ends in the middle of a row or before the end-of-data trailer",
        }.get(code, f"unknown error {code}")
        raise self.registry.error(self.table, self.err_row, self.columns[min(col, self.ncols - 1)], problem)

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
            if self._check_structure(row, n) < 0:
                return -1
        self.cur_row = row
        self.cur_n = n
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

    cdef int rewrite_message(self, const char* msg, size_t n, OutBuf* out) noexcept nogil:
        """PostgreSQL sends each row of COPY text as one message."""
        return self.rewrite_row(msg, n, out)

    cdef int end_of_data(self) noexcept nogil:
        return 0

    cdef int _check_structure(self, const char* row, size_t n) noexcept nogil:
        """The careful look at a row whose separators the fast scan could not vouch for: finds each
        separator, refuses a field ending in a lone backslash (it would escape the separator) and a
        wrong field count, reporting the first problem from the left. Fills self.tabs."""
        cdef const char* end = row + n - 1
        cdef const char* p = row
        cdef const char* t
        cdef Py_ssize_t col = 0
        cdef Py_ssize_t last = self.ncols - 1
        while True:
            t = <const char*>memchr(p, c'\t', end - p)
            if t == NULL:
                t = end
            if t > p and (t - 1)[0] == c'\\' and odd_backslashes_before(p, t):
                return self._fail(E_LONE_BACKSLASH, col, 0)
            if t == end:
                if col != last:
                    return self._fail(E_TOO_FEW, col + 1, col + 1)
                return 0
            if col == last:
                return self._fail(E_TOO_MANY, last, 0)
            self.tabs[col] = t - row
            col += 1
            p = t + 1

    cdef int _value(self, Py_ssize_t col, const char* f, size_t n, OutBuf* buf,
                    const uint8_t** v, size_t* vn) noexcept nogil:
        """Points v at the unescaped value of field f (decoded into buf when it has escapes)."""
        cdef Py_ssize_t un
        v[0] = <const uint8_t*>f
        vn[0] = n
        if memchr(f, c'\\', n) != NULL:
            buf.len = 0
            if outbuf_reserve(buf, n) < 0:
                return self._fail(E_NOMEM, col, 0)
            un = unescape(f, n, buf.data)
            if un < 0:
                return self._fail(E_EOD_MARKER, col, 0)
            v[0] = <const uint8_t*>buf.data
            vn[0] = <size_t>un
        return 0

    cdef int _field(self, Py_ssize_t col, const char* f, size_t n, OutBuf* out) noexcept nogil:
        """Writes the rewritten value of one ruled field (raw bytes f[0:n]) to out."""
        cdef FieldSpec* spec = &self.specs[col]
        cdef const uint8_t* v
        cdef const uint8_t* kv = NULL
        cdef const char* kf
        cdef size_t vn, kn = 0
        cdef Py_ssize_t bad, kcol = spec.key_index
        cdef int rc
        if n == 0:
            return 0
        if n == 2 and f[0] == c'\\' and f[1] == c'N':
            return self._fail(E_NOMEM, col, 0) if append(out, b"\\N", 2) < 0 else 0
        v = <const uint8_t*>f
        vn = n
        if not cf_is_plain(f, n):  # else: plain ASCII, the raw bytes are the value
            if self._value(col, f, n, &self.scratch, &v, &vn) < 0:
                return -1
            bad = utf8_error(v, vn)
            if bad >= 0:
                return self._fail(E_UTF8, col, bad)
            if memchr(v, 0, vn) != NULL:
                return self._fail(E_NUL, col, 0)
        if kcol >= 0:  # the PRF reads another column of the row (a per-row key)
            kf = self.cur_row + (self.tabs[kcol - 1] + 1 if kcol > 0 else 0)
            kn = (self.tabs[kcol] if kcol < self.ncols - 1 else self.cur_n - 1) - (kf - self.cur_row)
            if not (kn == 2 and kf[0] == c'\\' and kf[1] == c'N'):
                if self._value(kcol, kf, kn, &self.keybuf, &kv, &kn) < 0:
                    return -1
        if ENTRIES[spec.code].field != NULL:  # the strategy reads the whole value its own way
            return ENTRIES[spec.code].field(self, col, spec, v, vn, out)
        if spec.is_array:
            return self._array(col, spec, v, vn, kv, kn, out)
        if spec.ascii_out:  # output needs no escaping: straight into the row
            rc = self._apply(col, spec, v, vn, kv, kn, out)
            if rc == 1:
                rc = self._fail(E_NOMEM, col, 0) if append(out, b"\\N", 2) < 0 else 0
            return rc
        self.result.len = 0
        rc = self._apply(col, spec, v, vn, kv, kn, &self.result)
        if rc == 1:
            return self._fail(E_NOMEM, col, 0) if append(out, b"\\N", 2) < 0 else 0
        if rc < 0:
            return -1
        return self._fail(E_NOMEM, col, 0) if escape_append(out, self.result.data, self.result.len) < 0 else 0

    cdef int _array(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil:
        """Applies the strategy to each element of an array literal in PostgreSQL's output form
        ([dims=]{a,"b c",NULL,{...}}) and writes the new literal, COPY-escaped, to out."""
        cdef OutBuf* arr = &self.arraybuf
        cdef OutBuf* elem = &self.elembuf
        cdef size_t i = 0, start
        cdef int depth = 0, rc
        cdef bint quoted
        cdef uint8_t c
        arr.len = 0
        if outbuf_reserve(arr, vn + 2) < 0:
            return self._fail(E_NOMEM, col, 0)
        if i < vn and v[i] == c'[':  # dimension bounds, e.g. [0:2]=
            start = i
            while i < vn and v[i] != c'=':
                c = v[i]
                if not (c'0' <= c <= c'9' or c == c'[' or c == c']' or c == c':' or c == c'-'):
                    return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                i += 1
            if i == vn:
                return self._fail(E_VALUE, col, CF_BAD_ARRAY)
            i += 1
            put(arr, <const char*>v + start, i - start)
        if i >= vn or v[i] != c'{':
            return self._fail(E_VALUE, col, CF_BAD_ARRAY)
        while True:
            # at the start of an item (or of an empty array's closing brace)
            if i < vn and v[i] == c'{':
                if depth == 64:
                    return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                depth += 1
                if append(arr, b"{", 1) < 0:
                    return self._fail(E_NOMEM, col, 0)
                i += 1
                if not (i < vn and v[i] == c'}'):  # else an empty array: closed below
                    continue
            elif i >= vn or v[i] == c',' or v[i] == c'}':
                return self._fail(E_VALUE, col, CF_BAD_ARRAY)
            else:
                quoted = v[i] == c'"'
                elem.len = 0
                if outbuf_reserve(elem, vn) < 0:
                    return self._fail(E_NOMEM, col, 0)
                if quoted:
                    i += 1
                    while i < vn and v[i] != c'"':
                        if v[i] == c'\\':
                            i += 1
                            if i == vn:
                                break
                        elem.data[elem.len] = <char>v[i]
                        elem.len += 1
                        i += 1
                    if i == vn:
                        return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                    i += 1
                else:
                    while i < vn:
                        c = v[i]
                        if (c == c'{' or c == c'}' or c == c',' or c == c'"' or c == c'\\' or c == c' '
                                or 9 <= c <= 13):
                            break
                        elem.data[elem.len] = <char>c
                        elem.len += 1
                        i += 1
                    if i < vn and v[i] != c',' and v[i] != c'}':
                        return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                if not quoted and elem.len == 4 and is_null_word(elem.data):
                    rc = 1
                elif elem.len == 0:
                    rc = 2
                else:
                    self.result.len = 0
                    if kv != NULL:
                        rc = self._apply(col, spec, <const uint8_t*>elem.data, elem.len, kv, kn, &self.result)
                    else:
                        rc = self._apply(col, spec, <const uint8_t*>elem.data, elem.len,
                                         <const uint8_t*>elem.data, elem.len, &self.result)
                    if rc < 0:
                        return -1
                if rc == 1:
                    if append(arr, b"NULL", 4) < 0:
                        return self._fail(E_NOMEM, col, 0)
                elif rc == 2:
                    if append(arr, b'""', 2) < 0:
                        return self._fail(E_NOMEM, col, 0)
                elif array_quote_append(arr, self.result.data, self.result.len) < 0:
                    return self._fail(E_NOMEM, col, 0)
            # after an item: closing braces, then a comma or the end
            while i < vn and v[i] == c'}':
                if depth == 0:
                    return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                depth -= 1
                if append(arr, b"}", 1) < 0:
                    return self._fail(E_NOMEM, col, 0)
                i += 1
            if depth == 0:
                if i != vn:
                    return self._fail(E_VALUE, col, CF_BAD_ARRAY)
                break
            if i >= vn or v[i] != c',':
                return self._fail(E_VALUE, col, CF_BAD_ARRAY)
            if append(arr, b",", 1) < 0:
                return self._fail(E_NOMEM, col, 0)
            i += 1
        return self._fail(E_NOMEM, col, 0) if escape_append(out, arr.data, arr.len) < 0 else 0

    cdef int _apply(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* dst) noexcept nogil:
        """Appends the strategy's output for a non-empty, non-NULL value v to dst, unescaped, through
        the dispatch table. A keyed rule's PRF reads kv (the key column's value) when given, else v.
        Returns 0, 1 when the output is NULL, or -1 with the error set."""
        cdef uint8_t h[16]
        cdef const uint8_t* digest = NULL
        cdef int rc
        if outbuf_reserve(dst, (3 + spec.text_len) * vn + 512 + spec.max_out + spec.text_len) < 0:
            return self._fail(E_NOMEM, col, 0)
        if spec.keyed:
            if kv == NULL:
                cf_siphash(spec.k0, spec.k1, v, vn, h, 16)
            else:
                cf_siphash(spec.k0, spec.k1, kv, kn, h, 16)
            digest = h
        rc = ENTRIES[spec.code].apply(spec, v, vn, digest, &self.tmp, dst)
        if rc == OUT_NOMEM:
            return self._fail(E_NOMEM, col, 0)
        if rc < 0:
            return self._fail(E_VALUE, col, rc)
        return rc

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


# -- COPY binary -----------------------------------------------------------------------------------
cdef enum:
    FORM_JSONB = 1      # jsonb, or an array of jsonb: each value starts with a version byte (1)
    FORM_ARRAY = 2      # the binary array format: ndim, flags, element type, dimensions, elements
    HEADER_LEN = 19     # signature, flags, header-extension length
    MAX_DIMS = 6        # PostgreSQL's MAXDIM

cdef char SIGNATURE[11]
memcpy(SIGNATURE, <const char*>b"PGCOPY\n\xff\r\n\x00", 11)
cdef char NULL_LENGTH[4]
memcpy(NULL_LENGTH, <const char*>b"\xff\xff\xff\xff", 4)


cdef inline uint32_t be32(const void* p) noexcept nogil:
    cdef const uint8_t* u = <const uint8_t*>p
    return (<uint32_t>u[0] << 24) | (<uint32_t>u[1] << 16) | (<uint32_t>u[2] << 8) | u[3]


cdef inline void set_be32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef class BinaryRewriter(Rewriter):
    """Rewrites COPY binary data of one table with the same rules as Rewriter, for tables whose ruled
    columns are of text-like types (text, varchar, bpchar, json, jsonb and their arrays): there a
    value's bytes are its text (after jsonb's version byte), so each strategy gets exactly what the
    text path hands it, unescaped already, and its output goes back behind a new length word. The
    other columns pass as their binary form, which neither server then prints or parses.

    The data may arrive in any chunking: the start of a header or row whose end has not arrived yet
    waits in `carry` (only that unit is copied; whole units are rewritten where they lie). `jsonb`
    lists the columns (indexes) of type jsonb or jsonb[]. tests/anon_ref.py holds its reference.
    """

    def __cinit__(self):
        self.forms = NULL
        self.carry = OutBuf(NULL, 0, 0)
        self.stage = 0

    def __init__(self, str table, list columns, list rules, registry, jsonb=()):
        Rewriter.__init__(self, table, columns, rules, registry)
        self.raw_values = True
        self.forms = <unsigned char*>calloc(self.ncols, 1)
        if self.forms == NULL:
            raise MemoryError()
        for i in jsonb:
            if not 0 <= i < self.ncols:
                raise ValueError(f"{table}: jsonb column index {i} out of range")
            self.forms[i] |= FORM_JSONB
        for rule in rules:
            if rule.is_array:
                self.forms[rule.index] |= FORM_ARRAY

    def __dealloc__(self):
        free(self.forms)
        outbuf_free(&self.carry)

    def rewrite(self, data) -> bytes:
        """Rewrites the complete rows in `data` (any chunking); a partial one waits for more."""
        cdef const unsigned char[::1] buf = data
        cdef size_t n = buf.shape[0]
        cdef int rc = 0
        self.pybuf.len = 0
        if n == 0:
            return b""
        with nogil:
            rc = self.rewrite_message(<const char*>&buf[0], n, &self.pybuf)
        if rc < 0:
            self.raise_error()
        return PyBytes_FromStringAndSize(self.pybuf.data, self.pybuf.len)

    def finish(self) -> None:
        """Raises RewriteError when the data ended inside a row or before the trailer."""
        if self.end_of_data() < 0:
            self.raise_error()

    cdef int rewrite_message(self, const char* p, size_t n, OutBuf* out) noexcept nogil:
        cdef size_t need = 0, take
        cdef Py_ssize_t r
        while self.carry.len:  # complete the waiting unit with just the bytes it lacks
            r = self._measure(self.carry.data, self.carry.len, &need)
            if r < 0:
                return -1
            if r > 0:
                if self._unit(self.carry.data, r, out) < 0:
                    return -1
                self.carry.len = 0
                break
            if n == 0:
                return 0
            take = need if need < n else n
            if append(&self.carry, p, take) < 0:
                return self._fail(E_NOMEM, 0, 0)
            p += take
            n -= take
        while n:
            r = self._measure(p, n, &need)
            if r < 0:
                return -1
            if r == 0:
                return self._fail(E_NOMEM, 0, 0) if append(&self.carry, p, n) < 0 else 0
            if self._unit(p, r, out) < 0:
                return -1
            p += r
            n -= r
        return 0

    cdef int end_of_data(self) noexcept nogil:
        if self.carry.len or self.stage != 2:
            return self._fail(E_TRUNCATED, self.ncols - 1, 0)
        return 0

    cdef Py_ssize_t _measure(self, const char* p, size_t n, size_t* need) noexcept nogil:
        """The length of the header, row or trailer at p when all of it is there, else 0 with the
        fewest bytes still missing in need; -1 with the error set for a structure COPY TO never
        writes (found as soon as its bytes are there). Notes each field's offset in self.tabs."""
        cdef size_t off, ext
        cdef int fc
        cdef Py_ssize_t col
        cdef int32_t flen
        if self.stage == 0:
            if n < HEADER_LEN:
                need[0] = HEADER_LEN - n
                return 0
            ext = be32(p + 15)
            if memcmp(p, SIGNATURE, 11) != 0 or be32(p + 11) & 0x7FFF0000 or ext > 0x7FFFFFFF:
                return self._fail(E_BAD_HEADER, 0, 0)  # bits 16-30 of the flags: OIDs, or unknown
            if n < HEADER_LEN + ext:
                need[0] = HEADER_LEN + ext - n
                return 0
            return HEADER_LEN + ext
        if self.stage == 2:
            return self._fail(E_AFTER_TRAILER, self.ncols - 1, 0)
        if n < 2:
            need[0] = 2 - n
            return 0
        fc = <int16_t>((<uint8_t>p[0] << 8) | <uint8_t>p[1])
        if fc == -1:
            return 2
        if fc != self.ncols:
            return self._fail(E_FIELD_COUNT, self.ncols - 1, fc)
        off = 2
        for col in range(self.ncols):
            if n < off + 4:
                need[0] = off + 4 - n
                return 0
            self.tabs[col] = off
            flen = <int32_t>be32(p + off)
            off += 4
            if flen < -1:
                return self._fail(E_BAD_LENGTH, col, 0)
            if flen > 0:
                if n - off < <size_t>flen:
                    need[0] = <size_t>flen - (n - off)
                    return 0
                off += <size_t>flen
        return off

    cdef int _unit(self, const char* p, size_t n, OutBuf* out) noexcept nogil:
        """Writes one unit _measure found complete: header and trailer as they are, a row rewritten."""
        if self.stage == 0 or n == 2:  # the header, or the trailer (a row has at least one field)
            self.stage += 1
            return self._fail(E_NOMEM, 0, 0) if append(out, p, n) < 0 else 0
        return self._tuple(p, n, out)

    cdef int _tuple(self, const char* p, size_t n, OutBuf* out) noexcept nogil:
        cdef const char* copy_from = p
        cdef const char* f
        cdef Py_ssize_t j, col
        cdef int32_t flen
        self.cur_row = p
        self.cur_n = n
        for j in range(self.ntouched):
            col = self.touched[j]
            f = p + self.tabs[col]
            flen = <int32_t>be32(f)
            if append(out, copy_from, f - copy_from) < 0:
                return self._fail(E_NOMEM, col, 0)
            if self._bfield(col, <const uint8_t*>f + 4, flen, out) < 0:
                return -1
            copy_from = f + 4 + (flen if flen > 0 else 0)
        if append(out, copy_from, p + n - copy_from) < 0:
            return self._fail(E_NOMEM, self.ncols - 1, 0)
        self.rows += 1
        return 0

    cdef int _text(self, Py_ssize_t col, bint jsonb, const uint8_t* v, size_t n,
                   const uint8_t** t, size_t* tn) noexcept nogil:
        """Points t at the text of a value: the value itself, or for jsonb what follows its version byte."""
        if jsonb:
            if n == 0 or v[0] != 1:
                return self._fail(E_VALUE, col, CF_BAD_JSONB)
            v += 1
            n -= 1
        t[0] = v
        tn[0] = n
        return 0

    cdef int _bfield(self, Py_ssize_t col, const uint8_t* v, Py_ssize_t n, OutBuf* out) noexcept nogil:
        """Writes one ruled field (its value v[0:n], n = -1 for NULL) with its length word to out."""
        cdef FieldSpec* spec = &self.specs[col]
        cdef const uint8_t* t
        cdef const uint8_t* kv = NULL
        cdef const char* kf
        cdef size_t tn, kn = 0
        cdef Py_ssize_t kcol = spec.key_index
        cdef int32_t klen
        if n < 0:
            return self._fail(E_NOMEM, col, 0) if append(out, NULL_LENGTH, 4) < 0 else 0
        if kcol >= 0:  # the PRF reads another column of the row (a per-row key)
            kf = self.cur_row + self.tabs[kcol]
            klen = <int32_t>be32(kf)
            if klen >= 0 and self._text(kcol, self.forms[kcol] & FORM_JSONB, <const uint8_t*>kf + 4, klen,
                                        &kv, &kn) < 0:
                return -1
        if self.forms[col] & FORM_ARRAY:
            if not spec.is_array:  # a strategy that writes NULL for every value, the whole array
                return self._fail(E_NOMEM, col, 0) if append(out, NULL_LENGTH, 4) < 0 else 0
            return self._barray(col, spec, v, n, kv, kn, out)
        if self._text(col, self.forms[col] & FORM_JSONB, v, n, &t, &tn) < 0:
            return -1
        return 0 if self._bvalue(col, spec, self.forms[col] & FORM_JSONB, t, tn, kv, kn, out) >= 0 else -1

    cdef int _bvalue(self, Py_ssize_t col, FieldSpec* spec, bint jsonb, const uint8_t* t, size_t tn,
                     const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil:
        """Writes the length word and the rule's output for one value whose text is t[0:tn] (a
        field or an array element): empty stays empty. Returns 0, 1 when it wrote NULL, or -1."""
        cdef size_t pos = out.len
        cdef Py_ssize_t bad
        cdef int rc
        if outbuf_reserve(out, 5 + tn) < 0:
            return self._fail(E_NOMEM, col, 0)
        out.len += 4
        if jsonb:
            out.data[out.len] = 1
            out.len += 1
        if tn == 0:
            set_be32(out.data + pos, out.len - pos - 4)
            return 0
        if not cf_is_plain(<const char*>t, tn):  # else plain ASCII without NUL: nothing to check
            bad = utf8_error(t, tn)
            if bad >= 0:
                return self._fail(E_UTF8, col, bad)
            if memchr(t, 0, tn) != NULL:
                return self._fail(E_NUL, col, 0)
        if ENTRIES[spec.code].field != NULL:  # the strategy reads the whole value its own way
            if ENTRIES[spec.code].field(self, col, spec, t, tn, out) < 0:
                return -1
        else:
            rc = self._apply(col, spec, t, tn, kv, kn, out)
            if rc < 0:
                return -1
            if rc == 1:
                out.len = pos
                put(out, NULL_LENGTH, 4)
                return 1
        set_be32(out.data + pos, out.len - pos - 4)
        return 0

    cdef int _barray(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t n,
                     const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil:
        """Applies the rule to each element of a binary array (any dimensions): NULL and empty
        elements stay, the header is copied, with its has-NULL flag set when an output is NULL."""
        cdef const uint8_t* end = v + n
        cdef const uint8_t* e
        cdef const uint8_t* t
        cdef size_t hdr, pos, tn
        cdef uint64_t nitems = 1, i
        cdef int32_t ndim, dim, elen
        cdef bint jsonb = self.forms[col] & FORM_JSONB, nulls = False
        cdef int rc
        if n < 12:
            return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
        ndim = <int32_t>be32(v)
        if ndim < 0 or ndim > MAX_DIMS or be32(v + 4) > 1:
            return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
        hdr = 12 + 8 * <size_t>ndim
        if n < hdr:
            return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
        if ndim == 0:
            nitems = 0
        for i in range(<uint64_t>ndim):
            dim = <int32_t>be32(v + 12 + 8 * i)
            nitems *= <uint64_t>dim if dim >= 0 else 0
            if dim < 0 or nitems > (n - hdr) // 4:  # every element takes a length word at least
                return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
        pos = out.len
        if outbuf_reserve(out, 4 + hdr) < 0:
            return self._fail(E_NOMEM, col, 0)
        out.len += 4
        put(out, <const char*>v, hdr)
        e = v + hdr
        for i in range(nitems):
            if end - e < 4:
                return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
            elen = <int32_t>be32(e)
            e += 4
            if elen == -1:
                if append(out, NULL_LENGTH, 4) < 0:
                    return self._fail(E_NOMEM, col, 0)
                nulls = True
                continue
            if elen < -1 or end - e < elen:
                return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
            if self._text(col, jsonb, e, elen, &t, &tn) < 0:
                return -1
            rc = self._bvalue(col, spec, jsonb, t, tn, kv, kn, out)
            if rc < 0:
                return -1
            nulls = nulls or rc == 1
            e += elen
        if e != end:
            return self._fail(E_VALUE, col, CF_BAD_BINARY_ARRAY)
        if nulls:
            set_be32(out.data + pos + 8, 1)
        set_be32(out.data + pos, out.len - pos - 4)
        return 0
