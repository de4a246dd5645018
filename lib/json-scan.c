/* Streaming JSON checker (see json-scan.h). One byte at a time through a small state machine,
 * except inside strings, where runs of plain bytes are skipped in a tight loop. */
#include "json-scan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

/* What the parser expects next, outside tokens. */
enum {
        E_VALUE,
        E_VALUE_OR_CLOSE,       /* after '[' */
        E_KEY,                  /* after ',' in an object */
        E_KEY_OR_CLOSE,         /* after '{' */
        E_COLON,
        E_COMMA_OR_CLOSE,
        E_END,                  /* the top-level value is complete */
};

/* The token being read. */
enum {
        L_NONE,
        L_STRING,
        L_ESCAPE,
        L_UNICODE,
        L_NUMBER,
        L_LITERAL,
};

/* Where a number is (RFC 8259 §6). */
enum {
        N_MINUS,
        N_ZERO,
        N_INT,
        N_DOT,
        N_FRAC,
        N_E,
        N_ESIGN,
        N_EXP,
};

_printf_(3, 4) static int scan_fail(JsonScan *s, int error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->message, sizeof(s->message), fmt, ap);
        va_end(ap);
        s->error = error;
        return error;
}

static int syntax_error(JsonScan *s, uint64_t at, unsigned char c) {
        if (c >= 0x20 && c < 0x7f)
                return scan_fail(s, -EBADMSG, "unexpected '%c' at byte %" PRIu64, c, at);
        return scan_fail(s, -EBADMSG, "unexpected byte 0x%02x at byte %" PRIu64, c, at);
}

int json_scan_init(JsonScan *s, const JsonScanLimits *limits) {
        if (limits->max_depth < 1 || limits->max_depth > JSON_SCAN_DEPTH_MAX ||
            limits->split_depth > limits->max_depth)
                return -EINVAL;
        *s = (JsonScan) { .limits = *limits, .expect = E_VALUE };
        return 0;
}

void json_scan_done(JsonScan *s) {
        s->spans = mfree(s->spans);
        s->n_spans = s->spans_alloc = 0;
}

static bool in_split_array(const JsonScan *s) {
        return s->limits.split_depth > 0 && s->depth == s->limits.split_depth &&
               s->stack[s->depth] == '[';
}

static int span_add(JsonScan *s, uint64_t end) {
        if (end - s->element_start > s->limits.max_split_bytes)
                return scan_fail(s, -EFBIG, "element %zu is larger than %" PRIu64 " bytes",
                                 s->n_spans, s->limits.max_split_bytes);
        if (s->n_spans == s->spans_alloc) {
                size_t n = MAX(s->spans_alloc * 2, (size_t) 1024);
                JsonSpan *p = reallocarray(s->spans, n, sizeof(JsonSpan));

                if (!p)
                        return scan_fail(s, -ENOMEM, "out of memory");
                s->spans = p;
                s->spans_alloc = n;
        }
        s->spans[s->n_spans++] = (JsonSpan) { (uint32_t) s->element_start,
                                              (uint32_t) (end - s->element_start) };
        s->in_split = false;
        return 0;
}

/* One more element in the current container. */
static int count_element(JsonScan *s, uint64_t at) {
        bool split = in_split_array(s);
        uint64_t max = split ? s->limits.max_split_elements : s->limits.max_elements, n;

        if (s->depth == 0)
                return 0;
        n = ++s->count[s->depth];
        /* Recorded elements are bounded in all, not per array: they are what costs memory. */
        if (split)
                n = (uint64_t) s->n_spans + 1;
        if (n > max) {
                s->split_overflow = split;
                return scan_fail(s, -E2BIG, "%s with more than %" PRIu64 " elements (byte %" PRIu64
                                 ")", s->stack[s->depth] == '[' ? "an array" : "an object", max, at);
        }
        return 0;
}

/* A value starts at byte `at` (its first byte). */
static int value_begin(JsonScan *s, uint64_t at) {
        int r;

        if (s->depth > 0 && s->stack[s->depth] == '[') {
                r = count_element(s, at);
                if (r < 0)
                        return r;
        }
        if (in_split_array(s)) {
                s->element_start = at;
                s->in_split = true;
        }
        return 0;
}

/* A value ended just before byte `end`. */
static int value_end(JsonScan *s, uint64_t end) {
        s->lex = L_NONE;
        s->expect = s->depth == 0 ? E_END : E_COMMA_OR_CLOSE;
        return in_split_array(s) ? span_add(s, end) : 0;
}

static int container_open(JsonScan *s, char c, uint64_t at) {
        int r = value_begin(s, at);

        if (r < 0)
                return r;
        if (s->depth == s->limits.max_depth)
                return scan_fail(s, -ELOOP, "nested deeper than %u levels (byte %" PRIu64 ")",
                                 s->limits.max_depth, at);
        s->depth++;
        s->stack[s->depth] = c;
        s->count[s->depth] = 0;
        if (s->depth == 1)
                s->top = c;
        /* Only one array is split: a second would be recorded too, each up to
         * max_split_elements (a document of many arrays, millions of spans). */
        if (in_split_array(s) && s->split_arrays++ > 0)
                return scan_fail(s, -ENOTUNIQ, "a second array at depth %u (byte %" PRIu64 ")",
                                 s->depth, at);
        s->expect = c == '{' ? E_KEY_OR_CLOSE : E_VALUE_OR_CLOSE;
        return 0;
}

static int container_close(JsonScan *s, char c, uint64_t at) {
        char open = c == '}' ? '{' : '[';
        bool ok = s->expect == E_COMMA_OR_CLOSE ||
                  (c == '}' ? s->expect == E_KEY_OR_CLOSE : s->expect == E_VALUE_OR_CLOSE);

        if (!ok || s->depth == 0 || s->stack[s->depth] != open)
                return syntax_error(s, at, (unsigned char) c);
        if (s->depth == 1)
                s->top_members = s->count[1];
        s->depth--;
        return value_end(s, at + 1);
}

static int key_begin(JsonScan *s, uint64_t at) {
        int r = count_element(s, at);

        if (r < 0)
                return r;
        s->token_start = at;
        s->is_key = true;
        s->lex = L_STRING;
        return 0;
}

static int string_end(JsonScan *s, uint64_t end) {
        if (!s->is_key)
                return value_end(s, end);
        if (s->depth == 1 && s->count[1] <= 2)
                *(s->count[1] == 1 ? &s->first_key : &s->second_key) =
                        (JsonSpan) { (uint32_t) s->token_start, (uint32_t) (end - s->token_start) };
        s->lex = L_NONE;
        s->expect = E_COLON;
        return 0;
}

static int scalar_begin(JsonScan *s, unsigned char c, uint64_t at) {
        int r = value_begin(s, at);

        if (r < 0)
                return r;
        if (c == '"') {
                s->is_key = false;
                s->lex = L_STRING;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
                s->lex = L_NUMBER;
                s->num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        } else {
                s->lex = L_LITERAL;
                s->literal = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
        }
        return 0;
}

static bool is_ws(unsigned char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A byte outside any token. */
static int structural(JsonScan *s, unsigned char c, uint64_t at) {
        if (is_ws(c))
                return 0;
        switch (s->expect) {
        case E_VALUE:
        case E_VALUE_OR_CLOSE:
                if (c == ']' && s->expect == E_VALUE_OR_CLOSE)
                        return container_close(s, (char) c, at);
                if (c == '{' || c == '[')
                        return container_open(s, (char) c, at);
                if (c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' ||
                    c == 'n')
                        return scalar_begin(s, c, at);
                break;
        case E_KEY_OR_CLOSE:
        case E_KEY:
                if (c == '}' && s->expect == E_KEY_OR_CLOSE)
                        return container_close(s, (char) c, at);
                if (c == '"')
                        return key_begin(s, at);
                break;
        case E_COLON:
                if (c == ':') {
                        s->expect = E_VALUE;
                        return 0;
                }
                break;
        case E_COMMA_OR_CLOSE:
                if (c == ',') {
                        s->expect = s->stack[s->depth] == '{' ? E_KEY : E_VALUE;
                        return 0;
                }
                if (c == '}' || c == ']')
                        return container_close(s, (char) c, at);
                break;
        default:
                break;
        }
        return syntax_error(s, at, c);
}

static bool is_digit(unsigned char c) {
        return c >= '0' && c <= '9';
}

/* Whether the number may end in its current state. */
static bool number_complete(uint8_t num) {
        return num == N_ZERO || num == N_INT || num == N_FRAC || num == N_EXP;
}

/* The next state of a number for c, or -1 when c is not part of it. */
static int number_next(uint8_t num, unsigned char c) {
        switch (num) {
        case N_MINUS:
                return c == '0' ? N_ZERO : is_digit(c) ? N_INT : -1;
        case N_ZERO:
        case N_INT:
        case N_FRAC:
                if (is_digit(c))
                        return num == N_ZERO ? -1 : num;
                if (c == '.' && num != N_FRAC)
                        return N_DOT;
                return c == 'e' || c == 'E' ? N_E : -1;
        case N_DOT:
                return is_digit(c) ? N_FRAC : -1;
        case N_E:
                return c == '+' || c == '-' ? N_ESIGN : is_digit(c) ? N_EXP : -1;
        case N_ESIGN:
        case N_EXP:
                return is_digit(c) ? N_EXP : -1;
        default:
                return -1;
        }
}

/* A byte of a number; *ret_again when it was not one and is to be read as structure. */
static int number_byte(JsonScan *s, unsigned char c, uint64_t at, bool *ret_again) {
        int next = number_next(s->num, c);

        if (next >= 0) {
                s->num = (uint8_t) next;
                return 0;
        }
        if (!number_complete(s->num) || is_digit(c))
                return scan_fail(s, -EBADMSG, "malformed number at byte %" PRIu64, at);
        *ret_again = true;
        return value_end(s, at);
}

static int escape_byte(JsonScan *s, unsigned char c, uint64_t at) {
        if (s->lex == L_ESCAPE) {
                if (c == 'u') {
                        s->lex = L_UNICODE;
                        s->left = 4;
                } else if (c && strchr("\"\\/bfnrt", c))
                        s->lex = L_STRING;
                else
                        return scan_fail(s, -EBADMSG, "bad escape in a string at byte %" PRIu64, at);
                return 0;
        }
        if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                return scan_fail(s, -EBADMSG, "bad \\u escape in a string at byte %" PRIu64, at);
        if (--s->left == 0)
                s->lex = L_STRING;
        return 0;
}

/* Plain string bytes from buf[*i] on; stops at a quote, a backslash or the end. */
static int string_run(JsonScan *s, const unsigned char *buf, size_t len, size_t *i) {
        size_t k = *i;

        while (k < len && buf[k] != '"' && buf[k] != '\\' && buf[k] >= 0x20)
                k++;
        *i = k;
        if (k == len)
                return 0;
        if (buf[k] < 0x20)
                return scan_fail(s, -EBADMSG, "control character in a string at byte %" PRIu64,
                                 s->pos + k);
        if (buf[k] == '\\') {
                s->lex = L_ESCAPE;
                return 0;
        }
        return string_end(s, s->pos + k + 1);
}

static int literal_byte(JsonScan *s, unsigned char c, uint64_t at) {
        if (c != (unsigned char) *s->literal)
                return scan_fail(s, -EBADMSG, "malformed literal at byte %" PRIu64, at);
        if (*++s->literal == '\0')
                return value_end(s, at + 1);
        return 0;
}

/* One byte (or a run of string bytes) at buf[*i]; advances *i. */
static int scan_step(JsonScan *s, const unsigned char *buf, size_t len, size_t *i) {
        uint64_t at = s->pos + *i;
        unsigned char c = buf[*i];
        bool again = false;
        int r;

        switch (s->lex) {
        case L_STRING:
                r = string_run(s, buf, len, i);
                if (*i < len)
                        (*i)++;
                return r;
        case L_ESCAPE:
        case L_UNICODE:
                r = escape_byte(s, c, at);
                break;
        case L_NUMBER:
                r = number_byte(s, c, at, &again);
                if (r >= 0 && again)
                        r = structural(s, c, at);
                break;
        case L_LITERAL:
                r = literal_byte(s, c, at);
                break;
        default:
                r = s->expect == E_END && !is_ws(c)
                            ? scan_fail(s, -EBADMSG, "trailing bytes after the JSON value at "
                                        "byte %" PRIu64, at)
                            : structural(s, c, at);
        }
        (*i)++;
        return r;
}

int json_scan_feed(JsonScan *s, const char *buf, size_t len) {
        const unsigned char *b = (const unsigned char *) buf;
        size_t i = 0;
        int r;

        if (s->error < 0)
                return s->error;
        if (len > UINT32_MAX - s->pos)
                return scan_fail(s, -EFBIG, "document larger than 4 GiB");
        while (i < len) {
                r = scan_step(s, b, len, &i);
                if (r < 0)
                        return r;
        }
        s->pos += len;
        /* An element that is still growing is refused as soon as it passes the limit. */
        if (s->in_split && s->pos - s->element_start > s->limits.max_split_bytes)
                return scan_fail(s, -EFBIG, "element %zu is larger than %" PRIu64 " bytes",
                                 s->n_spans, s->limits.max_split_bytes);
        return 0;
}

int json_scan_finish(JsonScan *s) {
        int r;

        if (s->error < 0)
                return s->error;
        if (s->lex == L_NUMBER && number_complete(s->num)) {
                r = value_end(s, s->pos);
                if (r < 0)
                        return r;
        }
        if (s->expect != E_END || s->lex != L_NONE)
                return scan_fail(s, -EBADMSG, "unexpected end of the document at byte %" PRIu64,
                                 s->pos);
        return 0;
}
