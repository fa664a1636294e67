# The compiled part of the fake_* strategies (strategies/fake.py): values picked from the locale
# pools the registry hands over (FieldSpec.pools) by the PRF digest. Included by _anon.pyx.

cdef inline void put_pick(OutBuf* b, const Pool* pool, uint64_t u) noexcept nogil:
    """Appends item u mod n of the pool; room is reserved."""
    cdef size_t i = u % pool.n
    put(b, pool.data + pool.off[i], pool.off[i + 1] - pool.off[i])


cdef int fake_name_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                         OutBuf* dst) noexcept nogil:
    put_pick(dst, &spec.pools[0], cf_load64le(h))
    put(dst, b" ", 1)
    put_pick(dst, &spec.pools[1], cf_load64le(h + 8))
    return 0


cdef int fake_first_name_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h,
                               OutBuf* tmp, OutBuf* dst) noexcept nogil:
    put_pick(dst, &spec.pools[0], cf_load64le(h))
    return 0


cdef int fake_last_name_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h,
                              OutBuf* tmp, OutBuf* dst) noexcept nogil:
    put_pick(dst, &spec.pools[1], cf_load64le(h + 8))
    return 0


cdef int fake_email_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                          OutBuf* dst) noexcept nogil:
    put_pick(dst, &spec.pools[0], cf_load64le(h))
    put(dst, b".", 1)
    put_pick(dst, &spec.pools[1], cf_load64le(h + 8))
    put(dst, b".", 1)
    put_hex(dst, h, spec.length, False)
    put(dst, b"@", 1)
    put(dst, spec.text, spec.text_len)
    return 0


cdef int fake_email_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    set_text(rw, spec, rule.params.domain.encode("ascii"))
    spec.length = rule.params.length
    return 0


cdef int fake_address_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h,
                            OutBuf* tmp, OutBuf* dst) noexcept nogil:
    """A house number, a street and a city: `1234 Street, City`."""
    cdef uint64_t u1 = cf_load64le(h + 8)
    cdef char number[8]
    cdef int i = 8, k = <int>(1 + cf_load64le(h) % 9999)
    while k:
        i -= 1
        number[i] = <char>(c'0' + k % 10)
        k //= 10
    put(dst, number + i, 8 - i)
    put(dst, b" ", 1)
    put_pick(dst, &spec.pools[0], u1)
    put(dst, b", ", 2)
    put_pick(dst, &spec.pools[1], u1 >> 32)
    return 0


register("fake_name", 0, fake_name_apply, NULL, NULL)
register("fake_first_name", 0, fake_first_name_apply, NULL, NULL)
register("fake_last_name", 0, fake_last_name_apply, NULL, NULL)
register("fake_email", 0, fake_email_apply, fake_email_setup, NULL)
register("fake_address", 0, fake_address_apply, NULL, NULL)
register("fake_company", 0, fake_first_name_apply, NULL, NULL)
