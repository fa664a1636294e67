# The compiled part of the pseudonym strategies (strategies/pseudonyms.py): keyed, fixed-shape
# ASCII output from the PRF digest. Included by _anon.pyx.

cdef extern from *:
    r"""
    /* uuid: the digest as a version-4, RFC 4122-variant UUID. out: 36 bytes. */
    static void cf_uuid(const uint8_t *digest, char *out) {
        static const char hex[] = "0123456789abcdef";
        uint8_t b[16];
        memcpy(b, digest, 16);
        b[6] = (uint8_t)((b[6] & 0x0F) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3F) | 0x80);
        for (int i = 0, o = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                out[o++] = '-';
            out[o++] = hex[b[i] >> 4];
            out[o++] = hex[b[i] & 15];
        }
    }
    """
    void cf_uuid(const uint8_t* digest, char* out) nogil


cdef int email_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                     OutBuf* dst) noexcept nogil:
    put(dst, b"user_", 5)
    put_hex(dst, h, spec.length, False)
    put(dst, b"@", 1)
    put(dst, spec.text, spec.text_len)
    return 0


cdef int email_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    set_text(rw, spec, rule.params.domain.encode("ascii"))
    spec.length = rule.params.length
    return 0


cdef int phone_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                     OutBuf* dst) noexcept nogil:
    cdef uint64_t x = cf_load64le(h) % 10000
    put(dst, b"+1-555-", 7)
    dst.data[dst.len] = <char>(c'0' + x // 1000)
    dst.data[dst.len + 1] = <char>(c'0' + x // 100 % 10)
    dst.data[dst.len + 2] = <char>(c'0' + x // 10 % 10)
    dst.data[dst.len + 3] = <char>(c'0' + x % 10)
    dst.len += 4
    return 0


cdef int name_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                    OutBuf* dst) noexcept nogil:
    put(dst, b"User ", 5)
    put_hex(dst, h, 4, True)
    return 0


cdef int hash_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                    OutBuf* dst) noexcept nogil:
    put_hex(dst, h, spec.length, False)
    return 0


cdef int hash_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    spec.length = rule.params.length
    return 0


cdef int uuid_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                    OutBuf* dst) noexcept nogil:
    cf_uuid(h, dst.data + dst.len)
    dst.len += 36
    return 0


register("email", F_ASCII_OUT, email_apply, email_setup, NULL)
register("phone", F_ASCII_OUT, phone_apply, NULL, NULL)
register("name", F_ASCII_OUT, name_apply, NULL, NULL)
register("hash", F_ASCII_OUT, hash_apply, hash_setup, NULL)
register("uuid", F_ASCII_OUT, uuid_apply, NULL, NULL)
