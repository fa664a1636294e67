# The C-level face of the COPY-text rewriter, cimported by the pump (_pump.pyx).
from libc.stdint cimport uint8_t, uint64_t

cdef struct OutBuf:
    char* data
    size_t len
    size_t cap

# Grow `b` so that `extra` more bytes fit; returns -1 when memory runs out.
cdef int outbuf_reserve(OutBuf* b, size_t extra) noexcept nogil
cdef void outbuf_free(OutBuf* b) noexcept nogil

# A list of values a strategy picks from: item i is data[off[i]:off[i + 1]].
cdef struct Pool:
    const char* data
    const unsigned int* off
    size_t n

# How one column is rewritten; code 0 means copied through untouched. What the parameter fields
# hold is up to the strategy: its compiled file (_compiled/*.pxi) fills them in its setup function.
cdef struct FieldSpec:
    int code                # the strategy's entry in the dispatch table (_anon.CODES)
    bint keyed              # its function reads the PRF digest
    uint64_t k0
    uint64_t k1
    int length              # hex digits written
    const char* text        # a text parameter, e.g. a domain or a mask character
    size_t text_len
    long long a             # integer parameters
    long long b
    double x                # a real parameter
    size_t max_out          # longest output of the fixed-shape strategies, in bytes
    Py_ssize_t key_index    # column whose value keys the PRF instead of the field's own, or -1
    bint is_array           # apply to each element of an array literal
    bint ascii_out          # the output never needs COPY escaping
    Pool pools[2]
    void* ext               # what a strategy compiles for itself, kept alive by the Rewriter

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
    cdef OutBuf arraybuf     # the rewritten array literal (or document) before escaping
    cdef OutBuf elembuf      # one array element, unquoted, or a strategy's unescaped piece
    cdef OutBuf pybuf        # output of the Python-level rewrite()
    cdef bytearray tail      # partial row carried over between rewrite() calls
    cdef list keep_alive     # Python objects whose buffers FieldSpecs point into
    cdef bint raw_values     # values are written as they are (COPY binary), not COPY-text escaped
    cdef int err_code
    cdef Py_ssize_t err_col
    cdef long long err_row
    cdef Py_ssize_t err_detail
    # Rewrites one complete COPY text row (`n` bytes, ending with '\n') and appends it to `out`.
    # Returns 0, or -1 with the error kept in the object: the caller then calls raise_error() with the GIL.
    cdef int rewrite_row(self, const char* row, size_t n, OutBuf* out) noexcept nogil
    # One COPY data message as the pump receives it (for text, one row); the same return as rewrite_row.
    cdef int rewrite_message(self, const char* msg, size_t n, OutBuf* out) noexcept nogil
    # After the last message: -1 (error kept) when the data ended inside a row.
    cdef int end_of_data(self) noexcept nogil
    cdef raise_error(self)
    cdef int _check_structure(self, const char* row, size_t n) noexcept nogil
    cdef int _fail(self, int code, Py_ssize_t col, Py_ssize_t detail) noexcept nogil
    cdef int _value(self, Py_ssize_t col, const char* f, size_t n, OutBuf* buf,
                    const uint8_t** v, size_t* vn) noexcept nogil
    cdef int _field(self, Py_ssize_t col, const char* f, size_t n, OutBuf* out) noexcept nogil
    cdef int _array(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil
    cdef int _apply(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    const uint8_t* kv, size_t kn, OutBuf* dst) noexcept nogil
    cdef _set_spec(self, FieldSpec* spec, rule)


# The COPY-binary rewriter: the same rules and strategies, on the binary format's raw values.
cdef class BinaryRewriter(Rewriter):
    cdef unsigned char* forms  # per column: FORM_* bits (jsonb version byte, array)
    cdef OutBuf carry          # the start of a header or tuple whose end has not arrived yet
    cdef int stage             # 0 before the header, 1 tuples, 2 after the trailer
    cdef Py_ssize_t _measure(self, const char* p, size_t n, size_t* need) noexcept nogil
    cdef int _unit(self, const char* p, size_t n, OutBuf* out) noexcept nogil
    cdef int _tuple(self, const char* p, size_t n, OutBuf* out) noexcept nogil
    cdef int _text(self, Py_ssize_t col, bint jsonb, const uint8_t* v, size_t n,
                   const uint8_t** t, size_t* tn) noexcept nogil
    cdef int _bfield(self, Py_ssize_t col, const uint8_t* v, Py_ssize_t n, OutBuf* out) noexcept nogil
    cdef int _bvalue(self, Py_ssize_t col, FieldSpec* spec, bint jsonb, const uint8_t* t, size_t tn,
                     const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil
    cdef int _barray(self, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t n,
                     const uint8_t* kv, size_t kn, OutBuf* out) noexcept nogil
