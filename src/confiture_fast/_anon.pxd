# The C-level face of the COPY-text rewriter, cimported by the pump (_pump.pyx).
from libc.stdint cimport uint8_t, uint64_t

cdef struct OutBuf:
    char* data
    size_t len
    size_t cap

# Grow `b` so that `extra` more bytes fit; returns -1 when memory runs out.
cdef int outbuf_reserve(OutBuf* b, size_t extra) noexcept nogil
cdef void outbuf_free(OutBuf* b) noexcept nogil

# A list of values (fake_* strategies): item i is data[off[i]:off[i + 1]].
cdef struct Pool:
    const char* data
    const unsigned int* off
    size_t n

# One step of a json strategy path: kind 0 key, 1 index, 2 any key, 3 any index.
cdef struct JsonStep:
    int kind
    const char* key
    size_t key_len
    long long index

cdef struct FieldSpec

# A json strategy path and the rule applied where it matches.
cdef struct JsonPath:
    const JsonStep* steps
    int nsteps
    FieldSpec* spec

# An open object or array while a json value is walked.
cdef struct JsonLevel:
    bint is_object
    const uint8_t* key      # the current member's key, as written (between the quotes)
    size_t key_len
    bint key_escaped
    long long index
    int outer_active        # the path in force outside this container
    size_t start
    bint to_null            # a null rule matched the whole container

# How one column is rewritten; code 0 means copied through untouched.
cdef struct FieldSpec:
    int code
    uint64_t k0
    uint64_t k1
    int length              # hex digits (email, hash, fake_email)
    const char* text        # domain, constant value or mask character
    size_t text_len
    long long a             # keep_first / keep_prefix / days / IPv4 prefix
    long long b             # keep_last / keep_suffix / relative noise flag / IPv6 prefix
    double x                # noise bound
    size_t max_out          # longest output of the fixed-shape strategies, in bytes
    Py_ssize_t key_index    # column whose value keys the PRF instead of the field's own, or -1
    bint is_array           # apply to each element of an array literal
    bint ascii_out          # the output never needs COPY escaping
    Pool pools[2]
    const JsonPath* jpaths
    int njpaths

cdef class Rewriter:
    cdef object registry       # confiture_fast.strategies.COMPILED
    cdef public str table
    cdef public list columns
    cdef public long long rows
    cdef Py_ssize_t ncols
    cdef FieldSpec* specs
    cdef size_t* tabs          # offsets of the separators of the row being rewritten
    cdef Py_ssize_t* touched   # indexes of the ruled columns, ascending
    cdef Py_ssize_t ntouched
    cdef const char* cur_row   # the row being rewritten, for per-row keys
    cdef size_t cur_n
    cdef OutBuf scratch      # the unescaped value of the field being rewritten
    cdef OutBuf keybuf       # the unescaped value of its key column
    cdef OutBuf result       # the strategy's output before escaping
    cdef OutBuf tmp          # a strategy's own scratch space
    cdef OutBuf arraybuf     # the rewritten array literal before escaping
    cdef OutBuf elembuf      # one array element, unquoted, or one JSON string, unescaped
    cdef JsonLevel jstack[64]
    cdef OutBuf pybuf        # output of the Python-level rewrite()
    cdef bytearray tail      # partial row carried over between rewrite() calls
    cdef list keep_alive     # Python objects whose buffers FieldSpecs point into
    cdef int err_code
    cdef Py_ssize_t err_col
    cdef long long err_row
    cdef Py_ssize_t err_detail
    # Rewrites one complete COPY text row (`n` bytes, ending with '\n') and appends it to `out`.
    # Returns 0, or -1 with the error kept in the object: the caller then calls raise_error() with the GIL.
    cdef int rewrite_row(self, const char* row, size_t n, OutBuf* out) noexcept nogil
    cdef raise_error(self)
    cdef int _check_structure(self, const char* row, size_t n) noexcept nogil
    cdef int _fail(self, int code, Py_ssize_t col, Py_ssize_t detail) noexcept nogil
    cdef int _value(self, Py_ssize_t col, const char* f, size_t n, OutBuf* buf,
                    const uint8_t** v, size_t* vn) noexcept nogil
    cdef int _field(self, Py_ssize_t col, const char* f, size_t n, OutBuf* out) noexcept nogil
    cdef int _array(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil
    cdef int _json(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                   OutBuf* out) noexcept nogil
    cdef int _json_match(self, FieldSpec* spec, int depth) noexcept nogil
    cdef size_t _json_key(self, JsonLevel* lv, const uint8_t* v, size_t vn, size_t i) noexcept nogil
    cdef _set_json(self, FieldSpec* spec, rule)
    cdef int _json_leaf(self, Py_ssize_t col, FieldSpec* sub, const uint8_t* v, size_t vn, bint number,
                        OutBuf* doc) noexcept nogil
    cdef int _apply(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* dst) noexcept nogil
    cdef void _fake(self, FieldSpec* spec, const uint8_t* h, OutBuf* res) noexcept nogil
    cdef _set_spec(self, FieldSpec* spec, rule)
