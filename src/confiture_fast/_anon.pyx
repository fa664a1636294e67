# cython: language_level=3
"""The COPY-text rewriter: anonymizes the ruled fields of COPY text rows, copies the rest as raw bytes.

Per row nothing touches Python: one SSE2 pass finds the separators, the bytes between ruled fields
are copied as blocks, and a ruled field is unescaped (only when it has a backslash), checked to be
UTF-8, handed to its strategy and written back in PostgreSQL's own COPY TO escaping (see
docs/strategies.md). The pure-Python twin in tests/anon_ref.py defines the expected output byte for byte.
"""

from array import array

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize


cdef extern from "_siphash.h" nogil:
    void cf_siphash(uint64_t k0, uint64_t k1, const uint8_t* data, size_t n, uint8_t* out, int outlen)
    uint64_t cf_load64le(const uint8_t* p)

cdef extern from "_scan.h" nogil:
    size_t cf_find_tabs(const char* s, size_t n, size_t* pos, size_t max, int* suspect)
    bint cf_is_plain(const char* s, size_t n)

cdef extern from "_json.h" nogil:
    size_t CF_JSON_BAD
    size_t cf_json_ws(const uint8_t* s, size_t n, size_t i)
    size_t cf_json_string(const uint8_t* s, size_t n, size_t i, char* dst, size_t* dlen)
    size_t cf_json_number(const uint8_t* s, size_t n, size_t i)
    size_t cf_json_quote(const char* s, size_t n, char* dst)

cdef extern from "_strategies.h" nogil:
    int CF_BAD_DATE, CF_BAD_CALENDAR, CF_BAD_NUMBER, CF_TOO_LARGE, CF_BAD_IP
    size_t cf_partial(const uint8_t* v, size_t n, size_t keep_first, size_t keep_last, const char* mask,
                      size_t mask_len, char* out)
    void cf_preserve_format(const uint8_t* v, size_t n, const uint8_t* digest, size_t keep_prefix,
                            size_t keep_suffix, char* out)
    void cf_uuid(const uint8_t* digest, char* out)
    long cf_date_shift(const uint8_t* v, size_t n, long long shift, char* out)
    long cf_noise(const uint8_t* v, size_t n, const uint8_t* digest, int relative, double param, char* tmp,
                  char* out, size_t cap)
    long cf_ip(const uint8_t* v, size_t n, const uint8_t* digest, int keep4, int keep6, char* out)

# Not a strategy's problem but the array parser's (an E_VALUE detail like the CF_* codes).
cdef enum:
    CF_BAD_ARRAY = -20
    CF_BAD_JSON = -21
    JSON_SKIP = -2  # the "path in force" inside a keep or null match: nothing is rewritten
    JSON_NOMEM = -3

# Strategy codes of FieldSpec.code: the compiled dispatch table, indexed by each strategy's `code`.
cdef enum:
    S_PASS = 0
    S_EMAIL
    S_PHONE
    S_NAME
    S_REDACT
    S_HASH
    S_NULL
    S_CONSTANT
    S_PARTIAL
    S_PRESERVE_FORMAT
    S_UUID
    S_DATE_SHIFT
    S_NOISE
    S_IP
    S_FAKE_NAME
    S_FAKE_FIRST_NAME
    S_FAKE_LAST_NAME
    S_FAKE_EMAIL
    S_FAKE_ADDRESS
    S_FAKE_COMPANY
    S_JSON

# One past the last code: each strategy's module names its code (the registry checks the range).
N_CODES = S_JSON + 1

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

_VALUE_PROBLEMS = {
    CF_BAD_DATE: "not an ISO date or timestamp (set DateStyle to ISO)",
    CF_BAD_CALENDAR: "not a valid calendar date",
    CF_BAD_NUMBER: "not a plain decimal number",
    CF_TOO_LARGE: "value too large for noise",
    CF_BAD_IP: "not an IP address",
    CF_BAD_ARRAY: "not an array literal in PostgreSQL's output form",
    CF_BAD_JSON: "not valid JSON",
}


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


cdef inline void put_pick(OutBuf* b, const Pool* pool, uint64_t u) noexcept nogil:
    """Appends item u mod n of the pool; room is reserved."""
    cdef size_t i = u % pool.n
    put(b, pool.data + pool.off[i], pool.off[i + 1] - pool.off[i])


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
        self.tail = bytearray()
        self.keep_alive = []
        self.err_code = E_NONE
        self.specs = <FieldSpec*>realloc(NULL, self.ncols * sizeof(FieldSpec))
        self.tabs = <size_t*>realloc(NULL, self.ncols * sizeof(size_t))
        self.touched = <Py_ssize_t*>realloc(NULL, self.ncols * sizeof(Py_ssize_t))
        if self.specs == NULL or self.tabs == NULL or self.touched == NULL:
            raise MemoryError()
        for i in range(self.ncols):
            self.specs[i].code = S_PASS
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
            if self.specs[i].code != S_PASS:
                self.touched[self.ntouched] = i
                self.ntouched += 1

    cdef _set_spec(self, FieldSpec* spec, rule):
        """Fills the C description of one rule; Python objects it points into go to keep_alive."""
        cdef const uint8_t* k
        cdef const char* text
        p = rule.params
        spec.code = self.registry.codes[rule.strategy]
        spec.key_index = rule.key_index
        # null and keep act on the whole value; the others element by element on arrays
        spec.is_array = rule.is_array and spec.code != S_NULL
        spec.ascii_out = spec.code in (S_EMAIL, S_HASH, S_PHONE, S_NAME, S_REDACT, S_NULL, S_UUID)
        spec.k0 = spec.k1 = 0
        spec.text = NULL
        spec.text_len = spec.max_out = 0
        if rule.strategy in self.registry.keyed:
            if len(rule.key) != 16:
                raise ValueError(f"{self.table}.{rule.column}: the key must be 16 bytes")
            k = rule.key
            spec.k0 = cf_load64le(k)
            spec.k1 = cf_load64le(k + 8)
        raw = None
        if spec.code in (S_EMAIL, S_FAKE_EMAIL):
            raw = p.domain.encode("ascii")
        elif spec.code == S_CONSTANT:
            raw = p.value.encode()
        elif spec.code == S_PARTIAL:
            raw = p.mask_char.encode()
        if raw is not None:
            self.keep_alive.append(raw)
            text = raw
            spec.text = text
            spec.text_len = len(raw)
        if spec.code in (S_EMAIL, S_HASH, S_FAKE_EMAIL):
            spec.length = p.length
        if spec.code == S_PARTIAL:
            spec.a, spec.b = p.keep_first, p.keep_last
        elif spec.code == S_PRESERVE_FORMAT:
            spec.a, spec.b = p.keep_prefix, p.keep_suffix
        elif spec.code == S_DATE_SHIFT:
            spec.a = p.days
        elif spec.code == S_NOISE:
            spec.b = p.relative is not None
            spec.x = p.relative if p.relative is not None else p.absolute
        elif spec.code == S_IP:
            spec.a, spec.b = p.prefix, p.prefix_v6
        spec.njpaths = 0
        if spec.code == S_JSON:
            self._set_json(spec, rule)
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

    cdef _set_json(self, FieldSpec* spec, rule):
        """Compiles the json rule's paths; their steps and sub-rules live in bytearrays in keep_alive."""
        cdef JsonPath* paths
        cdef JsonStep* steps
        cdef FieldSpec* sub
        cdef char* buf
        compiled = self.registry.inner_rules(rule.params)
        path_mem = bytearray(sizeof(JsonPath) * len(compiled))
        self.keep_alive.append(path_mem)
        buf = path_mem
        paths = <JsonPath*>buf
        kinds = {"key": 0, "index": 1, "any_key": 2, "any_index": 3}
        for n, (path_steps, name, params) in enumerate(compiled):
            step_mem = bytearray(sizeof(JsonStep) * max(1, len(path_steps)))
            sub_mem = bytearray(sizeof(FieldSpec))
            self.keep_alive += [step_mem, sub_mem]
            buf = step_mem
            steps = <JsonStep*>buf
            for k, (kind, arg) in enumerate(path_steps):
                steps[k].kind = kinds[kind]
                steps[k].index = arg if kind == "index" else 0
                steps[k].key = NULL
                steps[k].key_len = 0
                if kind == "key":
                    key = arg.encode()
                    self.keep_alive.append(key)
                    steps[k].key = key
                    steps[k].key_len = len(key)
            buf = sub_mem
            sub = <FieldSpec*>buf
            self._set_spec(sub, self.registry.inner_rule(rule, name, params))
            paths[n].steps = steps
            paths[n].nsteps = len(path_steps)
            paths[n].spec = sub
        spec.jpaths = paths
        spec.njpaths = len(compiled)

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
        if kcol >= 0:  # the PRF reads another column of the row (date_shift per_row_key)
            kf = self.cur_row + (self.tabs[kcol - 1] + 1 if kcol > 0 else 0)
            kn = (self.tabs[kcol] if kcol < self.ncols - 1 else self.cur_n - 1) - (kf - self.cur_row)
            if not (kn == 2 and kf[0] == c'\\' and kf[1] == c'N'):
                if self._value(kcol, kf, kn, &self.keybuf, &kv, &kn) < 0:
                    return -1
        if spec.code == S_JSON:
            return self._json(col, spec, v, vn, out)
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

    cdef int _json(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                   OutBuf* out) noexcept nogil:
        """Walks a json/jsonb value, rewriting the strings and numbers at the rule's paths (all of them
        inside a matched object or array); every other byte is copied. Written COPY-escaped to out."""
        cdef OutBuf* doc = &self.arraybuf
        cdef JsonLevel* lv
        cdef size_t i, end, copied = 0, elen = 0
        cdef int depth = 0, m, active = -1
        cdef uint8_t c, close
        cdef FieldSpec* sub
        doc.len = 0
        if outbuf_reserve(&self.elembuf, vn) < 0 or outbuf_reserve(doc, vn) < 0:
            return self._fail(E_NOMEM, col, 0)
        i = cf_json_ws(v, vn, 0)
        while True:
            # a value starts at i
            m = active if active != -1 else self._json_match(spec, depth)
            if m == JSON_NOMEM:
                return self._fail(E_NOMEM, col, 0)
            sub = spec.jpaths[m].spec if m >= 0 else NULL
            if sub != NULL and sub.code == S_PASS:  # keep
                m = JSON_SKIP
                sub = NULL
            if i >= vn:
                return self._fail(E_VALUE, col, CF_BAD_JSON)
            c = v[i]
            if c == c'{' or c == c'[':
                if depth == 64:
                    return self._fail(E_VALUE, col, CF_BAD_JSON)
                lv = &self.jstack[depth]
                depth += 1
                lv.is_object = c == c'{'
                lv.index = 0
                lv.start = i
                lv.outer_active = active
                lv.to_null = sub != NULL and sub.code == S_NULL
                active = JSON_SKIP if lv.to_null else m
                i = cf_json_ws(v, vn, i + 1)
                close = c'}' if lv.is_object else c']'
                if not (i < vn and v[i] == close):
                    if lv.is_object:
                        i = self._json_key(lv, v, vn, i)
                        if i == CF_JSON_BAD:
                            return self._fail(E_VALUE, col, CF_BAD_JSON)
                    continue
            elif c == c'"':
                end = cf_json_string(v, vn, i, self.elembuf.data, &elen)
                if end == CF_JSON_BAD:
                    return self._fail(E_VALUE, col, CF_BAD_JSON)
                if sub != NULL and elen > 0:
                    if append(doc, <const char*>v + copied, i - copied) < 0:
                        return self._fail(E_NOMEM, col, 0)
                    if self._json_leaf(col, sub, <const uint8_t*>self.elembuf.data, elen, False, doc) < 0:
                        return -1
                    copied = end
                i = end
            elif c == c'-' or c'0' <= c <= c'9':
                end = cf_json_number(v, vn, i)
                if end == CF_JSON_BAD:
                    return self._fail(E_VALUE, col, CF_BAD_JSON)
                if sub != NULL:
                    if append(doc, <const char*>v + copied, i - copied) < 0:
                        return self._fail(E_NOMEM, col, 0)
                    if self._json_leaf(col, sub, v + i, end - i, True, doc) < 0:
                        return -1
                    copied = end
                i = end
            elif vn - i >= 4 and memcmp(v + i, b"true", 4) == 0:
                i += 4
            elif vn - i >= 5 and memcmp(v + i, b"false", 5) == 0:
                i += 5
            elif vn - i >= 4 and memcmp(v + i, b"null", 4) == 0:
                i += 4
            else:
                return self._fail(E_VALUE, col, CF_BAD_JSON)
            # after a value: close containers, then a comma (next member) or the end
            while True:
                i = cf_json_ws(v, vn, i)
                if depth == 0:
                    if i != vn:
                        return self._fail(E_VALUE, col, CF_BAD_JSON)
                    if append(doc, <const char*>v + copied, vn - copied) < 0:
                        return self._fail(E_NOMEM, col, 0)
                    return self._fail(E_NOMEM, col, 0) if escape_append(out, doc.data, doc.len) < 0 else 0
                lv = &self.jstack[depth - 1]
                close = c'}' if lv.is_object else c']'
                if i < vn and v[i] == c',':
                    lv.index += 1
                    i = cf_json_ws(v, vn, i + 1)
                    if lv.is_object:
                        i = self._json_key(lv, v, vn, i)
                        if i == CF_JSON_BAD:
                            return self._fail(E_VALUE, col, CF_BAD_JSON)
                    break
                if not (i < vn and v[i] == close):
                    return self._fail(E_VALUE, col, CF_BAD_JSON)
                i += 1
                depth -= 1
                active = lv.outer_active
                if lv.to_null:
                    if append(doc, <const char*>v + copied, lv.start - copied) < 0 or append(doc, b"null", 4) < 0:
                        return self._fail(E_NOMEM, col, 0)
                    copied = i

    cdef size_t _json_key(self, JsonLevel* lv, const uint8_t* v, size_t vn, size_t i) noexcept nogil:
        """Reads `"key" :` at i into lv; returns where the member's value starts, or CF_JSON_BAD."""
        cdef size_t end
        if i >= vn or v[i] != c'"':
            return CF_JSON_BAD
        end = cf_json_string(v, vn, i, NULL, NULL)
        if end == CF_JSON_BAD:
            return CF_JSON_BAD
        lv.key = v + i + 1
        lv.key_len = end - i - 2
        lv.key_escaped = memchr(lv.key, c'\\', lv.key_len) != NULL
        end = cf_json_ws(v, vn, end)
        if end >= vn or v[end] != c':':
            return CF_JSON_BAD
        return cf_json_ws(v, vn, end + 1)

    cdef int _json_match(self, FieldSpec* spec, int depth) noexcept nogil:
        """The first path that names the current location (jstack[:depth]), -1 for none, or
        JSON_NOMEM."""
        cdef int p, k
        cdef const JsonPath* path
        cdef const JsonStep* step
        cdef JsonLevel* lv
        cdef const char* key
        cdef size_t key_len
        for p in range(spec.njpaths):
            path = &spec.jpaths[p]
            if path.nsteps != depth:
                continue
            for k in range(depth):
                step = &path.steps[k]
                lv = &self.jstack[k]
                if step.kind == 2 or step.kind == 3:
                    if lv.is_object != (step.kind == 2):
                        break
                elif step.kind == 1:
                    if lv.is_object or lv.index != step.index:
                        break
                else:
                    if not lv.is_object:
                        break
                    key = <const char*>lv.key
                    key_len = lv.key_len
                    if lv.key_escaped:  # compare the unescaped key
                        self.tmp.len = 0
                        if outbuf_reserve(&self.tmp, lv.key_len) < 0:
                            return JSON_NOMEM
                        cf_json_string(lv.key - 1, lv.key_len + 2, 0, self.tmp.data, &key_len)
                        key = self.tmp.data
                    if key_len != step.key_len or memcmp(key, step.key, key_len) != 0:
                        break
            else:
                return p
        return -1

    cdef int _json_leaf(self, Py_ssize_t col, FieldSpec* sub, const uint8_t* v, size_t vn, bint number,
                        OutBuf* doc) noexcept nogil:
        """Appends the rule's output for one JSON string (unescaped) or number to doc: a JSON string,
        null, or for noise on a number the new number."""
        cdef int rc
        self.result.len = 0
        rc = self._apply(col, sub, v, vn, NULL, 0, &self.result)
        if rc < 0:
            return -1
        if rc == 1:
            return self._fail(E_NOMEM, col, 0) if append(doc, b"null", 4) < 0 else 0
        if number and sub.code == S_NOISE:
            return self._fail(E_NOMEM, col, 0) if append(doc, self.result.data, self.result.len) < 0 else 0
        if outbuf_reserve(doc, 6 * self.result.len + 2) < 0:
            return self._fail(E_NOMEM, col, 0)
        doc.len += cf_json_quote(self.result.data, self.result.len, doc.data + doc.len)
        return 0

    cdef int _apply(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* dst) noexcept nogil:
        """Appends the strategy's output for a non-empty, non-NULL value v to dst, unescaped.
        The PRF reads kv (the key column's value) when given, else v. Returns 0, 1 when the output
        is NULL, or -1 with the error set."""
        cdef uint8_t h[16]
        cdef uint64_t x
        cdef long long shift
        cdef long r = 0
        cdef OutBuf* tmp = &self.tmp
        if outbuf_reserve(dst, (3 + spec.text_len) * vn + 512 + spec.max_out + spec.text_len) < 0:
            return self._fail(E_NOMEM, col, 0)
        if spec.code == S_REDACT:
            put(dst, b"[REDACTED]", 10)
            return 0
        if spec.code == S_NULL:
            return 1
        if spec.code == S_CONSTANT:
            put(dst, spec.text, spec.text_len)
            return 0
        if spec.code == S_PARTIAL:
            dst.len += cf_partial(v, vn, <size_t>spec.a, <size_t>spec.b, spec.text, spec.text_len,
                                  dst.data + dst.len)
            return 0
        if kv == NULL:
            cf_siphash(spec.k0, spec.k1, v, vn, h, 16)
        else:
            cf_siphash(spec.k0, spec.k1, kv, kn, h, 16)
        if spec.code == S_EMAIL:
            put(dst, b"user_", 5)
            put_hex(dst, h, spec.length, False)
            put(dst, b"@", 1)
            put(dst, spec.text, spec.text_len)
        elif spec.code == S_HASH:
            put_hex(dst, h, spec.length, False)
        elif spec.code == S_PHONE:
            x = cf_load64le(h) % 10000
            put(dst, b"+1-555-", 7)
            dst.data[dst.len] = <char>(c'0' + x // 1000)
            dst.data[dst.len + 1] = <char>(c'0' + x // 100 % 10)
            dst.data[dst.len + 2] = <char>(c'0' + x // 10 % 10)
            dst.data[dst.len + 3] = <char>(c'0' + x % 10)
            dst.len += 4
        elif spec.code == S_NAME:
            put(dst, b"User ", 5)
            put_hex(dst, h, 4, True)
        elif spec.code == S_UUID:
            cf_uuid(h, dst.data + dst.len)
            dst.len += 36
        elif spec.code == S_PRESERVE_FORMAT:
            cf_preserve_format(v, vn, h, <size_t>spec.a, <size_t>spec.b, dst.data + dst.len)
            dst.len += vn
        elif spec.code == S_DATE_SHIFT:
            x = cf_load64le(h) % <uint64_t>(2 * spec.a)
            shift = <long long>x - spec.a if <long long>x < spec.a else <long long>x - spec.a + 1
            r = cf_date_shift(v, vn, shift, dst.data + dst.len)
        elif spec.code == S_NOISE:
            if outbuf_reserve(tmp, vn + 2) < 0:
                return self._fail(E_NOMEM, col, 0)
            r = cf_noise(v, vn, h, <int>spec.b, spec.x, tmp.data, dst.data + dst.len, vn + 400)
        elif spec.code == S_IP:
            r = cf_ip(v, vn, h, <int>spec.a, <int>spec.b, dst.data + dst.len)
        else:
            self._fake(spec, h, dst)
        if r < 0:
            return self._fail(E_VALUE, col, r)
        dst.len += r
        return 0

    cdef void _fake(self, FieldSpec* spec, const uint8_t* h, OutBuf* res) noexcept nogil:
        """Writes a fake_* value picked by the digest h to res (sized by spec.max_out)."""
        cdef uint64_t u0 = cf_load64le(h), u1 = cf_load64le(h + 8)
        cdef char number[8]
        cdef int i, k
        if spec.code == S_FAKE_FIRST_NAME or spec.code == S_FAKE_COMPANY:
            put_pick(res, &spec.pools[0], u0)
        elif spec.code == S_FAKE_LAST_NAME:
            put_pick(res, &spec.pools[1], u1)
        elif spec.code == S_FAKE_NAME:
            put_pick(res, &spec.pools[0], u0)
            put(res, b" ", 1)
            put_pick(res, &spec.pools[1], u1)
        elif spec.code == S_FAKE_EMAIL:
            put_pick(res, &spec.pools[0], u0)
            put(res, b".", 1)
            put_pick(res, &spec.pools[1], u1)
            put(res, b".", 1)
            put_hex(res, h, spec.length, False)
            put(res, b"@", 1)
            put(res, spec.text, spec.text_len)
        elif spec.code == S_FAKE_ADDRESS:
            k = <int>(1 + u0 % 9999)
            i = 8
            while k:
                i -= 1
                number[i] = <char>(c'0' + k % 10)
                k //= 10
            put(res, number + i, 8 - i)
            put(res, b" ", 1)
            put_pick(res, &spec.pools[0], u1)
            put(res, b", ", 2)
            put_pick(res, &spec.pools[1], u1 >> 32)

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
