/* HTTP/1.1 request heads and chunked bodies (see http-head.h). */
#include "http-head.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "strutil.h"

/* ---- the head, byte by byte as it arrives ---------------------------------------------- */

static bool is_ctl_byte(unsigned char c) {
        return (c < 0x20 && c != '\t') || c == 0x7f;
}

int http_head_scan(const char *buf, size_t len, size_t max_request_line, HttpHeadScan *scan,
                   const char **ret_why) {
        size_t i;

        for (i = scan->pos; i < len; i++) {
                unsigned char c = (unsigned char) buf[i];

                /* The first line is the only one starting at 0; its length so far is i + 1. */
                if (scan->line_start == 0 && c != '\r' && i >= max_request_line)
                        return *ret_why = "Request line too long", -ENAMETOOLONG;
                if (c == '\r') {
                        if (i + 1 == len)
                                break;  /* its LF is yet to come */
                        if (buf[i + 1] != '\n')
                                return *ret_why = "Bare CR in the request head", -EBADMSG;
                        if (i == scan->line_start)
                                return (int) (i + 2);
                        scan->line_start = i + 2;
                        i++;
                } else if (c == '\n')
                        return *ret_why = "Bare LF in the request head (lines end in CRLF)",
                               -EBADMSG;
                else if (is_ctl_byte(c))
                        return *ret_why = "Control byte in the request head", -EBADMSG;
        }
        scan->pos = i;
        return 0;
}

/* ---- the complete head ------------------------------------------------------------------- */

static size_t span_upper(const char *s) {
        size_t n = 0;

        while (s[n] >= 'A' && s[n] <= 'Z')
                n++;
        return n;
}

/* Visible ASCII: what a request target may consist of. */
static size_t span_visible(const char *s) {
        size_t n = 0;

        while (s[n] > 0x20 && s[n] < 0x7f)
                n++;
        return n;
}

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* HTTP/1.0 and HTTP/1.1; -EPROTONOSUPPORT for another well-formed version. */
static int version_parse(const char *v, HttpHead *h, const char **ret_why) {
        if (streq(v, "HTTP/1.1") || streq(v, "HTTP/1.0")) {
                h->minor = (unsigned) (v[7] - '0');
                return 0;
        }
        if (strlen(v) == 8 && strncmp(v, "HTTP/", 5) == 0 && is_digit(v[5]) && v[6] == '.' &&
            is_digit(v[7]))
                return *ret_why = "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)",
                       -EPROTONOSUPPORT;
        return *ret_why = "Malformed request line", -EBADMSG;
}

/* "METHOD SP TARGET SP VERSION"; the method, the path and the query become NUL-terminated in
 * place. */
static int request_line_parse(char *line, HttpHead *h, const char **ret_why) {
        size_t n = span_upper(line), m;
        char *target, *query;
        int r;

        if (n < 1 || n > HTTP_METHOD_MAX || line[n] != ' ')
                return *ret_why = "Malformed request line", -EBADMSG;
        target = line + n + 1;
        m = span_visible(target);
        if (target[0] != '/' || target[m] != ' ')
                return *ret_why = "Malformed request line", -EBADMSG;
        r = version_parse(target + m + 1, h, ret_why);
        if (r < 0)
                return r;
        line[n] = '\0';
        target[m] = '\0';
        query = memchr(target, '?', m);
        if (query)
                *query++ = '\0';
        h->method = line;
        h->path = target;
        h->query = query;
        return 0;
}

/* Digits only; saturates at UINT64_MAX (far above any limit). */
static int length_parse(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (*s == '\0')
                return -EINVAL;
        for (; *s; s++) {
                if (!is_digit(*s))
                        return -EINVAL;
                v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

static int content_length_parse(const char *value, HttpHead *h, const char **ret_why) {
        uint64_t len;

        if (length_parse(value, &len) < 0)
                return *ret_why = "Malformed Content-Length", -EBADMSG;
        if (h->has_content_length && h->content_length != len)
                return *ret_why = "Conflicting Content-Length headers", -EBADMSG;
        h->content_length = len;
        h->has_content_length = true;
        return 0;
}

/* Whether the comma-separated list holds the token (case-insensitive, OWS around items). */
static bool list_has_token(const char *list, const char *token) {
        size_t n = strlen(token);

        for (const char *p = list;;) {
                size_t len;

                p += strspn(p, " \t,");
                if (*p == '\0')
                        return false;
                len = strcspn(p, ",");
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == n && strncasecmp(p, token, n) == 0)
                        return true;
                p += strcspn(p, ",");
        }
}

/* Records what the fields that frame the message or the connection say. */
static int header_note(const char *name, const char *value, HttpHead *h, bool *te_chunked,
                       const char **ret_why) {
        if (strcasecmp(name, "Content-Length") == 0)
                return content_length_parse(value, h, ret_why);
        if (strcasecmp(name, "Transfer-Encoding") == 0) {
                *te_chunked = h->n_transfer_encoding++ == 0 && strcasecmp(value, "chunked") == 0;
        } else if (strcasecmp(name, "Host") == 0)
                h->n_host++;
        else if (strcasecmp(name, "Connection") == 0)
                h->connection_close = h->connection_close || list_has_token(value, "close");
        else if (strcasecmp(name, "Expect") == 0)
                h->expect_continue = strcasecmp(value, "100-continue") == 0;
        return 0;
}

/* "Name: value" with optional whitespace around the value. */
static int header_parse(char *line, HttpHead *h, bool *te_chunked, const char **ret_why) {
        size_t n = 0;
        char *value, *end;

        if (line[0] == ' ' || line[0] == '\t')
                return *ret_why = "Obsolete line folding in the request head", -EBADMSG;
        while (is_tchar(line[n]))
                n++;
        if (n == 0 || line[n] != ':')
                return *ret_why = "Malformed header line", -EBADMSG;
        if (h->n_headers == HTTP_HEADERS_MAX)
                return *ret_why = "Too many header fields", -E2BIG;
        line[n] = '\0';
        value = line + n + 1 + strspn(line + n + 1, " \t");
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = '\0';
        h->headers[h->n_headers++] = (HttpHeader) { line, value };
        return header_note(line, value, h, te_chunked, ret_why);
}

int http_head_parse(char *head, size_t len, HttpHead *ret, const char **ret_why) {
        HttpHead h = {};
        bool te_chunked = false;
        char *line = head, *eol;
        int r;

        for (bool first = true;; first = false) {
                eol = memchr(line, '\r', len - (size_t) (line - head));
                if (!eol)
                        return *ret_why = "Malformed request head", -EBADMSG;
                *eol = '\0';
                if (eol == line && !first)
                        break;
                r = first ? request_line_parse(line, &h, ret_why)
                          : header_parse(line, &h, &te_chunked, ret_why);
                if (r < 0)
                        return r;
                line = eol + 2;
        }
        h.chunked = h.n_transfer_encoding == 1 && te_chunked;
        *ret = h;
        return 0;
}

const char *http_head_header(const HttpHead *h, const char *name) {
        for (size_t i = 0; i < h->n_headers; i++)
                if (strcasecmp(h->headers[i].name, name) == 0)
                        return h->headers[i].value;
        return NULL;
}

/* ---- chunked bodies ---------------------------------------------------------------------- */

enum {
        CHUNK_SIZE,             /* hex digits of a chunk size */
        CHUNK_BWS,              /* after the digits: whitespace before ';', or CR */
        CHUNK_EXT,              /* after ';': extensions (ignored) up to CR */
        CHUNK_SIZE_LF,          /* the LF after a size line */
        CHUNK_DATA,
        CHUNK_DATA_CR,          /* the CRLF after a chunk's data */
        CHUNK_DATA_LF,
        CHUNK_TRAILER,          /* at the start of a trailer line (or the final CRLF) */
        CHUNK_TRAILER_LINE,
        CHUNK_TRAILER_LF,       /* the LF ending a trailer line */
        CHUNK_FINAL_LF,         /* the LF of the final CRLF */
        CHUNK_DONE,
};

/* After a size line: data, or the trailers after the last (zero-size) chunk. */
static void chunk_size_done(HttpChunked *d) {
        d->state = d->left > 0 ? CHUNK_DATA : CHUNK_TRAILER;
}

/* One byte of framing (anything but chunk data). 0 or -EBADMSG. */
static int chunk_frame_byte(HttpChunked *d, unsigned char c, const char **ret_why) {
        switch (d->state) {
        case CHUNK_SIZE:
                if (unhexchar((char) c) >= 0) {
                        if (++d->digits > 15)
                                return *ret_why = "Chunk size too large", -EBADMSG;
                        d->left = d->left << 4 | (uint64_t) unhexchar((char) c);
                        return 0;
                }
                if (d->digits == 0)
                        return *ret_why = "Malformed chunk size", -EBADMSG;
                d->state = CHUNK_BWS;
                return chunk_frame_byte(d, c, ret_why);
        case CHUNK_BWS:
                if (++d->line_len > HTTP_CHUNK_LINE_MAX)
                        return *ret_why = "Chunk size line too long", -EBADMSG;
                if (c == ' ' || c == '\t')
                        return 0;
                if (c == ';') {
                        d->state = CHUNK_EXT;
                        return 0;
                }
                /* Whitespace after a size only comes before an extension. */
                if (c == '\r' && d->line_len == 1) {
                        d->state = CHUNK_SIZE_LF;
                        return 0;
                }
                return *ret_why = "Malformed chunk size", -EBADMSG;
        case CHUNK_EXT:
                if (++d->line_len > HTTP_CHUNK_LINE_MAX)
                        return *ret_why = "Chunk size line too long", -EBADMSG;
                if (c == '\r')
                        d->state = CHUNK_SIZE_LF;
                else if (is_ctl_byte(c))
                        return *ret_why = "Control byte in a chunk extension", -EBADMSG;
                return 0;
        case CHUNK_SIZE_LF:
                if (c != '\n')
                        return *ret_why = "Bare CR in the chunked framing", -EBADMSG;
                chunk_size_done(d);
                return 0;
        case CHUNK_DATA_CR:
                if (c != '\r')
                        return *ret_why = "Chunk data longer than its size", -EBADMSG;
                d->state = CHUNK_DATA_LF;
                return 0;
        case CHUNK_DATA_LF:
                if (c != '\n')
                        return *ret_why = "Bare CR in the chunked framing", -EBADMSG;
                *d = (HttpChunked) { .state = CHUNK_SIZE, .trailers_len = d->trailers_len };
                return 0;
        case CHUNK_TRAILER:
                if (c == '\r') {
                        d->state = CHUNK_FINAL_LF;
                        return 0;
                }
                d->state = CHUNK_TRAILER_LINE;
                return chunk_frame_byte(d, c, ret_why);
        case CHUNK_TRAILER_LINE:
                if (++d->trailers_len > HTTP_TRAILERS_MAX)
                        return *ret_why = "Trailers too large", -EBADMSG;
                if (c == '\r')
                        d->state = CHUNK_TRAILER_LF;
                else if (c == '\n')
                        return *ret_why = "Bare LF in the chunked framing", -EBADMSG;
                else if (is_ctl_byte(c))
                        return *ret_why = "Control byte in a trailer", -EBADMSG;
                return 0;
        case CHUNK_TRAILER_LF:
                if (c != '\n')
                        return *ret_why = "Bare CR in the chunked framing", -EBADMSG;
                d->state = CHUNK_TRAILER;
                return 0;
        case CHUNK_FINAL_LF:
                if (c != '\n')
                        return *ret_why = "Bare CR in the chunked framing", -EBADMSG;
                d->state = CHUNK_DONE;
                return 0;
        default:
                return *ret_why = "Malformed chunked body", -EBADMSG;
        }
}

int http_chunked_decode(HttpChunked *d, char *buf, size_t len, size_t *ret_used,
                        size_t *ret_out, const char **ret_why) {
        size_t i = 0, out = 0;
        int r;

        while (i < len && d->state != CHUNK_DONE) {
                if (d->state == CHUNK_DATA) {
                        size_t n = (size_t) MIN(d->left, (uint64_t) (len - i));

                        memmove(buf + out, buf + i, n);
                        out += n;
                        i += n;
                        d->left -= n;
                        if (d->left == 0)
                                d->state = CHUNK_DATA_CR;
                        continue;
                }
                r = chunk_frame_byte(d, (unsigned char) buf[i++], ret_why);
                if (r < 0)
                        return r;
        }
        *ret_used = i;
        *ret_out = out;
        return d->state == CHUNK_DONE;
}
