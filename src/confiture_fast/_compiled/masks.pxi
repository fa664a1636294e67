# The compiled part of the mask strategies (strategies/masks.py): unkeyed markers and shape-keeping
# masks. keep has none: the rewriter copies a kept column through. Included by _anon.pyx.

cdef extern from *:
    r"""
    #include "_compiled/_text.h"
    #include "_siphash.h"

    /* partial: keeps the first/last characters, masks the rest. out: n * mask_len bytes. */
    static size_t cf_partial(const uint8_t *v, size_t n, size_t keep_first, size_t keep_last,
                             const char *mask, size_t mask_len, char *out) {
        size_t nchar = cf_utf8_chars(v, n), i = 0, j = n, o = 0, c;
        if (nchar <= keep_first || nchar - keep_first <= keep_last) {
            for (c = 0; c < nchar; c++, o += mask_len)
                memcpy(out + o, mask, mask_len);
            return o;
        }
        for (c = 0; c < keep_first; c++)
            for (i++; i < n && cf_is_cont(v[i]); i++) {}
        for (c = 0; c < keep_last; c++)
            for (j--; j > 0 && cf_is_cont(v[j]); j--) {}
        memcpy(out, v, i);
        o = i;
        for (c = 0; c < nchar - keep_first - keep_last; c++, o += mask_len)
            memcpy(out + o, mask, mask_len);
        memcpy(out + o, v + j, n - j);
        return o + n - j;
    }

    /* preserve_format: ASCII digits and letters (outside the kept prefix/suffix) become keyed digits and
     * letters of the same case; everything else stays. Keyed bytes: SipHash-128 of a block counter
     * under the value's digest. out: n bytes. */
    static void cf_preserve_format(const uint8_t *v, size_t n, const uint8_t *digest, size_t keep_prefix,
                                   size_t keep_suffix, char *out) {
        size_t nchar = cf_utf8_chars(v, n), index = 0, used = 16;
        uint64_t block = 0, k0 = cf_load64le(digest), k1 = cf_load64le(digest + 8);
        uint8_t stream[16], counter[8];
        if (nchar <= keep_prefix || nchar - keep_prefix <= keep_suffix)
            keep_prefix = keep_suffix = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = v[i];
            size_t at = index;
            index += !cf_is_cont(c);
            int digit = cf_digit(c), upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
            if ((digit || upper || lower) && at >= keep_prefix && at < nchar - keep_suffix) {
                if (used == 16) {
                    cf_store64le(counter, block++);
                    cf_siphash(k0, k1, counter, 8, stream, 16);
                    used = 0;
                }
                uint8_t b = stream[used++];
                c = digit ? (uint8_t)('0' + b % 10) : (uint8_t)((upper ? 'A' : 'a') + b % 26);
            }
            out[i] = (char)c;
        }
    }
    """
    size_t cf_partial(const uint8_t* v, size_t n, size_t keep_first, size_t keep_last, const char* mask,
                      size_t mask_len, char* out) nogil
    void cf_preserve_format(const uint8_t* v, size_t n, const uint8_t* digest, size_t keep_prefix,
                            size_t keep_suffix, char* out) nogil


cdef int redact_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                      OutBuf* dst) noexcept nogil:
    put(dst, b"[REDACTED]", 10)
    return 0


cdef int null_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                    OutBuf* dst) noexcept nogil:
    return OUT_NULL


cdef int constant_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                        OutBuf* dst) noexcept nogil:
    put(dst, spec.text, spec.text_len)
    return 0


cdef int constant_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    set_text(rw, spec, rule.params.value.encode())
    return 0


cdef int partial_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                       OutBuf* dst) noexcept nogil:
    dst.len += cf_partial(v, vn, <size_t>spec.a, <size_t>spec.b, spec.text, spec.text_len, dst.data + dst.len)
    return 0


cdef int partial_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    set_text(rw, spec, rule.params.mask_char.encode())
    spec.a, spec.b = rule.params.keep_first, rule.params.keep_last
    return 0


cdef int preserve_format_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h,
                               OutBuf* tmp, OutBuf* dst) noexcept nogil:
    cf_preserve_format(v, vn, h, <size_t>spec.a, <size_t>spec.b, dst.data + dst.len)
    dst.len += vn
    return 0


cdef int preserve_format_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    spec.a, spec.b = rule.params.keep_prefix, rule.params.keep_suffix
    return 0


register("redact", F_ASCII_OUT, redact_apply, NULL, NULL)
register("null", F_ASCII_OUT | F_NULL_ALL, null_apply, NULL, NULL)
register("constant", 0, constant_apply, constant_setup, NULL)
register("partial", 0, partial_apply, partial_setup, NULL)
register("preserve_format", 0, preserve_format_apply, preserve_format_setup, NULL)
