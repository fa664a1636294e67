# The C-level face of the COPY-text rewriter, cimported by the pump (_pump.pyx).

cdef struct OutBuf:
    char* data
    size_t len
    size_t cap

# Grow `b` so that `extra` more bytes fit; returns -1 when memory runs out.
cdef int outbuf_reserve(OutBuf* b, size_t extra) noexcept nogil
cdef void outbuf_free(OutBuf* b) noexcept nogil

cdef class Rewriter:
    cdef public str table
    cdef public list columns
    cdef public long long rows
    # Rewrites one complete COPY text row (`n` bytes, ending with '\n') and appends it to `out`.
    # Returns 0, or -1 with the error kept in the object: the caller then calls raise_error() with the GIL.
    cdef int rewrite_row(self, const char* row, size_t n, OutBuf* out) noexcept nogil
    cdef raise_error(self)
