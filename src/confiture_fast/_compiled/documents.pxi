# The compiled part of the json strategy (strategies/documents.py): other strategies applied at paths
# inside json/jsonb values, every other byte of the document copied. Included by _anon.pyx.

cdef extern from *:
    r"""
    /* JSON pieces: strings (read and written the way PostgreSQL writes them), numbers and white
     * space. The json strategy's reference (tests/anon_ref.py) has the Python definitions these match. */
    #include <stddef.h>
    #include <stdint.h>

    #define CF_JSON_BAD ((size_t)-1)

    static inline size_t cf_json_ws(const uint8_t *s, size_t n, size_t i) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        return i;
    }

    static int cf_json_hex4(const uint8_t *s, size_t n, size_t i, unsigned *out) {
        unsigned v = 0;
        if (i + 4 > n)
            return -1;
        for (size_t k = i; k < i + 4; k++) {
            uint8_t c = s[k];
            int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (h < 0)
                return -1;
            v = v * 16 + (unsigned)h;
        }
        *out = v;
        return 0;
    }

    /* Reads the JSON string at s[i] == '"'. Returns the index after its closing quote, or CF_JSON_BAD.
     * With dst (n bytes of room), the unescaped bytes go there and their count to *dlen. */
    static size_t cf_json_string(const uint8_t *s, size_t n, size_t i, char *dst, size_t *dlen) {
        size_t o = 0;
        for (i++;;) {
            if (i >= n || s[i] < 0x20)
                return CF_JSON_BAD;
            uint8_t c = s[i];
            if (c == '"')
                break;
            if (c != '\\') {
                if (dst)
                    dst[o] = (char)c;
                o++;
                i++;
                continue;
            }
            if (i + 1 >= n)
                return CF_JSON_BAD;
            uint8_t e = s[i + 1];
            uint8_t simple = e == 'b' ? 8 : e == 'f' ? 12 : e == 'n' ? 10 : e == 'r' ? 13 : e == 't' ? 9
                           : (e == '"' || e == '\\' || e == '/') ? e : 0;
            if (simple) {
                if (dst)
                    dst[o] = (char)simple;
                o++;
                i += 2;
                continue;
            }
            unsigned code, low;
            if (e != 'u' || cf_json_hex4(s, n, i + 2, &code) < 0)
                return CF_JSON_BAD;
            i += 6;
            if (code >= 0xD800 && code < 0xDC00) {
                if (i + 1 >= n || s[i] != '\\' || s[i + 1] != 'u' || cf_json_hex4(s, n, i + 2, &low) < 0 ||
                    low < 0xDC00 || low >= 0xE000)
                    return CF_JSON_BAD;
                i += 6;
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            } else if ((code >= 0xDC00 && code < 0xE000) || code == 0) {
                return CF_JSON_BAD;
            }
            /* UTF-8: never longer than the 6 or 12 escape bytes it came from */
            if (dst) {
                if (code < 0x80) {
                    dst[o] = (char)code;
                } else if (code < 0x800) {
                    dst[o] = (char)(0xC0 | (code >> 6));
                    dst[o + 1] = (char)(0x80 | (code & 0x3F));
                } else if (code < 0x10000) {
                    dst[o] = (char)(0xE0 | (code >> 12));
                    dst[o + 1] = (char)(0x80 | ((code >> 6) & 0x3F));
                    dst[o + 2] = (char)(0x80 | (code & 0x3F));
                } else {
                    dst[o] = (char)(0xF0 | (code >> 18));
                    dst[o + 1] = (char)(0x80 | ((code >> 12) & 0x3F));
                    dst[o + 2] = (char)(0x80 | ((code >> 6) & 0x3F));
                    dst[o + 3] = (char)(0x80 | (code & 0x3F));
                }
            }
            o += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
        }
        if (dlen)
            *dlen = o;
        return i + 1;
    }

    /* The end of the JSON number at s[i], or CF_JSON_BAD: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
    static size_t cf_json_number(const uint8_t *s, size_t n, size_t i) {
    #define CF_D(k) ((k) < n && s[k] >= '0' && s[k] <= '9')
        if (i < n && s[i] == '-')
            i++;
        if (!CF_D(i))
            return CF_JSON_BAD;
        if (s[i] == '0')
            i++;
        else
            while (CF_D(i))
                i++;
        if (i < n && s[i] == '.' && CF_D(i + 1))
            for (i++; CF_D(i); i++) {}
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
            size_t k = i + 1;
            if (k < n && (s[k] == '+' || s[k] == '-'))
                k++;
            if (CF_D(k))
                for (i = k; CF_D(i); i++) {}
        }
        return i;
    #undef CF_D
    }

    /* Writes s as a JSON string the way PostgreSQL's json output does; dst needs 6 * n + 2 bytes. */
    static size_t cf_json_quote(const char *s, size_t n, char *dst) {
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;
        dst[o++] = '"';
        for (size_t i = 0; i < n; i++) {
            uint8_t c = (uint8_t)s[i];
            char e = c == '"' ? '"' : c == '\\' ? '\\' : c == 8 ? 'b' : c == 12 ? 'f' : c == 10 ? 'n'
                   : c == 13 ? 'r' : c == 9 ? 't' : 0;
            if (e) {
                dst[o++] = '\\';
                dst[o++] = e;
            } else if (c < 0x20) {
                dst[o++] = '\\';
                dst[o++] = 'u';
                dst[o++] = '0';
                dst[o++] = '0';
                dst[o++] = hex[c >> 4];
                dst[o++] = hex[c & 15];
            } else {
                dst[o++] = (char)c;
            }
        }
        dst[o++] = '"';
        return o;
    }
    """
    size_t CF_JSON_BAD
    size_t cf_json_ws(const uint8_t* s, size_t n, size_t i) nogil
    size_t cf_json_string(const uint8_t* s, size_t n, size_t i, char* dst, size_t* dlen) nogil
    size_t cf_json_number(const uint8_t* s, size_t n, size_t i) nogil
    size_t cf_json_quote(const char* s, size_t n, char* dst) nogil

cdef enum:
    CF_BAD_JSON = -21
    JSON_SKIP = -2  # the "path in force" inside a keep or null match: nothing is rewritten
    JSON_NOMEM = -3

# One step of a path: kind 0 key, 1 index, 2 any key, 3 any index.
cdef struct JsonStep:
    int kind
    const char* key
    size_t key_len
    long long index

# A path and the rule applied where it matches.
cdef struct JsonPath:
    const JsonStep* steps
    int nsteps
    FieldSpec* spec

# An open object or array while a value is walked.
cdef struct JsonLevel:
    bint is_object
    const uint8_t* key      # the current member's key, as written (between the quotes)
    size_t key_len
    bint key_escaped
    long long index
    int outer_active        # the path in force outside this container
    size_t start
    bint to_null            # a null rule matched the whole container

# What json_setup compiles for one rule (FieldSpec.ext): its paths and the walk's stack.
cdef struct JsonRule:
    const JsonPath* paths
    int npaths
    JsonLevel stack[64]


cdef int json_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    """Compiles the json rule's paths; their steps and sub-rules live in bytearrays in keep_alive."""
    cdef JsonRule* jr
    cdef JsonPath* paths
    cdef JsonStep* steps
    cdef FieldSpec* sub
    cdef char* buf
    compiled = rw.registry.inner_rules(rule.params)
    rule_mem = bytearray(sizeof(JsonRule))
    path_mem = bytearray(sizeof(JsonPath) * len(compiled))
    rw.keep_alive += [rule_mem, path_mem]
    buf = rule_mem
    jr = <JsonRule*>buf
    buf = path_mem
    paths = <JsonPath*>buf
    kinds = {"key": 0, "index": 1, "any_key": 2, "any_index": 3}
    for n, (path_steps, name, params) in enumerate(compiled):
        step_mem = bytearray(sizeof(JsonStep) * max(1, len(path_steps)))
        sub_mem = bytearray(sizeof(FieldSpec))
        rw.keep_alive += [step_mem, sub_mem]
        buf = step_mem
        steps = <JsonStep*>buf
        for k, (kind, arg) in enumerate(path_steps):
            steps[k].kind = kinds[kind]
            steps[k].index = arg if kind == "index" else 0
            steps[k].key = NULL
            steps[k].key_len = 0
            if kind == "key":
                key = arg.encode()
                rw.keep_alive.append(key)
                steps[k].key = key
                steps[k].key_len = len(key)
        buf = sub_mem
        sub = <FieldSpec*>buf
        rw._set_spec(sub, rw.registry.inner_rule(rule, name, params))
        paths[n].steps = steps
        paths[n].nsteps = len(path_steps)
        paths[n].spec = sub
    jr.paths = paths
    jr.npaths = len(compiled)
    spec.ext = jr
    return 0


cdef int json_field(Rewriter rw, Py_ssize_t col, FieldSpec* spec, const uint8_t* v, size_t vn,
                    OutBuf* out) noexcept nogil:
    """Walks a json/jsonb value, rewriting the strings and numbers at the rule's paths (all of them
    inside a matched object or array); every other byte is copied. Written to out as put_value does."""
    cdef JsonRule* jr = <JsonRule*>spec.ext
    cdef OutBuf* doc = &rw.arraybuf
    cdef JsonLevel* lv
    cdef size_t i, end, copied = 0, elen = 0
    cdef int depth = 0, m, active = -1
    cdef uint8_t c, close
    cdef FieldSpec* sub
    doc.len = 0
    if outbuf_reserve(&rw.elembuf, vn) < 0 or outbuf_reserve(doc, vn) < 0:
        return rw._fail(E_NOMEM, col, 0)
    i = cf_json_ws(v, vn, 0)
    while True:
        # a value starts at i
        m = active if active != -1 else json_match(rw, jr, depth)
        if m == JSON_NOMEM:
            return rw._fail(E_NOMEM, col, 0)
        sub = jr.paths[m].spec if m >= 0 else NULL
        if sub != NULL and sub.code == PASS:  # keep
            m = JSON_SKIP
            sub = NULL
        if i >= vn:
            return rw._fail(E_VALUE, col, CF_BAD_JSON)
        c = v[i]
        if c == c'{' or c == c'[':
            if depth == 64:
                return rw._fail(E_VALUE, col, CF_BAD_JSON)
            lv = &jr.stack[depth]
            depth += 1
            lv.is_object = c == c'{'
            lv.index = 0
            lv.start = i
            lv.outer_active = active
            lv.to_null = sub != NULL and ENTRIES[sub.code].flags & F_NULL_ALL
            active = JSON_SKIP if lv.to_null else m
            i = cf_json_ws(v, vn, i + 1)
            close = c'}' if lv.is_object else c']'
            if not (i < vn and v[i] == close):
                if lv.is_object:
                    i = json_key(lv, v, vn, i)
                    if i == CF_JSON_BAD:
                        return rw._fail(E_VALUE, col, CF_BAD_JSON)
                continue
        elif c == c'"':
            end = cf_json_string(v, vn, i, rw.elembuf.data, &elen)
            if end == CF_JSON_BAD:
                return rw._fail(E_VALUE, col, CF_BAD_JSON)
            if sub != NULL and elen > 0:
                if append(doc, <const char*>v + copied, i - copied) < 0:
                    return rw._fail(E_NOMEM, col, 0)
                if json_leaf(rw, col, sub, <const uint8_t*>rw.elembuf.data, elen, False, doc) < 0:
                    return -1
                copied = end
            i = end
        elif c == c'-' or c'0' <= c <= c'9':
            end = cf_json_number(v, vn, i)
            if end == CF_JSON_BAD:
                return rw._fail(E_VALUE, col, CF_BAD_JSON)
            if sub != NULL:
                if append(doc, <const char*>v + copied, i - copied) < 0:
                    return rw._fail(E_NOMEM, col, 0)
                if json_leaf(rw, col, sub, v + i, end - i, True, doc) < 0:
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
            return rw._fail(E_VALUE, col, CF_BAD_JSON)
        # after a value: close containers, then a comma (next member) or the end
        while True:
            i = cf_json_ws(v, vn, i)
            if depth == 0:
                if i != vn:
                    return rw._fail(E_VALUE, col, CF_BAD_JSON)
                if append(doc, <const char*>v + copied, vn - copied) < 0:
                    return rw._fail(E_NOMEM, col, 0)
                return rw._fail(E_NOMEM, col, 0) if put_value(rw, out, doc.data, doc.len) < 0 else 0
            lv = &jr.stack[depth - 1]
            close = c'}' if lv.is_object else c']'
            if i < vn and v[i] == c',':
                lv.index += 1
                i = cf_json_ws(v, vn, i + 1)
                if lv.is_object:
                    i = json_key(lv, v, vn, i)
                    if i == CF_JSON_BAD:
                        return rw._fail(E_VALUE, col, CF_BAD_JSON)
                break
            if not (i < vn and v[i] == close):
                return rw._fail(E_VALUE, col, CF_BAD_JSON)
            i += 1
            depth -= 1
            active = lv.outer_active
            if lv.to_null:
                if append(doc, <const char*>v + copied, lv.start - copied) < 0 or append(doc, b"null", 4) < 0:
                    return rw._fail(E_NOMEM, col, 0)
                copied = i

cdef size_t json_key(JsonLevel* lv, const uint8_t* v, size_t vn, size_t i) noexcept nogil:
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

cdef int json_match(Rewriter rw, JsonRule* jr, int depth) noexcept nogil:
    """The first path that names the current location (jstack[:depth]), -1 for none, or
    JSON_NOMEM."""
    cdef int p, k
    cdef const JsonPath* path
    cdef const JsonStep* step
    cdef JsonLevel* lv
    cdef const char* key
    cdef size_t key_len
    for p in range(jr.npaths):
        path = &jr.paths[p]
        if path.nsteps != depth:
            continue
        for k in range(depth):
            step = &path.steps[k]
            lv = &jr.stack[k]
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
                    rw.tmp.len = 0
                    if outbuf_reserve(&rw.tmp, lv.key_len) < 0:
                        return JSON_NOMEM
                    cf_json_string(lv.key - 1, lv.key_len + 2, 0, rw.tmp.data, &key_len)
                    key = rw.tmp.data
                if key_len != step.key_len or memcmp(key, step.key, key_len) != 0:
                    break
        else:
            return p
    return -1

cdef int json_leaf(Rewriter rw, Py_ssize_t col, FieldSpec* sub, const uint8_t* v, size_t vn, bint number,
                   OutBuf* doc) noexcept nogil:
    """Appends the rule's output for one JSON string (unescaped) or number to doc: a JSON string,
    null, or for noise on a number the new number."""
    cdef int rc
    rw.result.len = 0
    rc = rw._apply(col, sub, v, vn, NULL, 0, &rw.result)
    if rc < 0:
        return -1
    if rc == 1:
        return rw._fail(E_NOMEM, col, 0) if append(doc, b"null", 4) < 0 else 0
    if number and ENTRIES[sub.code].flags & F_NUMBER:
        return rw._fail(E_NOMEM, col, 0) if append(doc, rw.result.data, rw.result.len) < 0 else 0
    if outbuf_reserve(doc, 6 * rw.result.len + 2) < 0:
        return rw._fail(E_NOMEM, col, 0)
    doc.len += cf_json_quote(rw.result.data, rw.result.len, doc.data + doc.len)
    return 0


problem(CF_BAD_JSON, "not valid JSON")
register("json", 0, NULL, json_setup, json_field)
