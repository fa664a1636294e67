/* Character tests the compiled strategies share: ASCII digits and UTF-8 characters. */
#ifndef CONFITURE_FAST_TEXT_H
#define CONFITURE_FAST_TEXT_H

#include <stddef.h>
#include <stdint.h>

static inline int cf_is_cont(uint8_t c) { return (c & 0xC0) == 0x80; }
static inline int cf_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static inline size_t cf_utf8_chars(const uint8_t *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += !cf_is_cont(s[i]);
    return count;
}

#endif
