/* HTTP/1.1 request heads and chunked request bodies: pure decoders (bytes in, values out,
 * explicit limits, nothing allocated) shared by tasad's two servers, http.c (the API) and
 * ctl.c (the worker's control socket). What a server does with a well-formed head that it
 * cannot serve (a Transfer-Encoding, a missing Host) is its own policy; these functions only
 * refuse what is malformed (RFC 9112), and refuse it consistently:
 *  - lines end in CRLF; a bare CR or LF is refused as soon as it arrives, not when a blank line
 *    that may never come is in;
 *  - no control byte but HT anywhere in a head (so no NUL in a target or a value);
 *  - no obsolete line folding, no whitespace before a header's colon, header names are tokens;
 *  - a request line is METHOD SP origin-form-target SP HTTP/x.y, the method 1-16 uppercase
 *    letters, the target visible ASCII starting with '/'; versions other than 1.0 and 1.1 are
 *    -EPROTONOSUPPORT (505);
 *  - Content-Length is digits only; several Content-Length fields must agree (a conflict is
 *    what request smuggling is made of).
 * Version 1 of this contract; a change that accepts more must say why here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_METHOD_MAX 16U
/* Header fields of one head; more are -E2BIG (431). */
#define HTTP_HEADERS_MAX 64U
/* Limits of the chunked framing: one chunk-size line with its extensions, and all trailer
 * lines together. */
#define HTTP_CHUNK_LINE_MAX 1024U
#define HTTP_TRAILERS_MAX 8192U

typedef struct HttpHeader {
        const char *name;       /* as received (compare case-insensitively) */
        const char *value;      /* without leading and trailing whitespace */
} HttpHeader;

/* Where http_head_scan() goes on when more bytes come: zero-initialize for a new head. */
typedef struct HttpHeadScan {
        size_t pos;
        size_t line_start;
} HttpHeadScan;

/* A parsed head; every string points into the buffer given to http_head_parse(). */
typedef struct HttpHead {
        const char *method;
        const char *path;               /* the target up to '?', still %-encoded */
        const char *query;              /* the target after '?', or NULL */
        unsigned minor;                 /* HTTP/1.<minor>: 0 or 1 */
        HttpHeader headers[HTTP_HEADERS_MAX];
        size_t n_headers;
        uint64_t content_length;        /* saturated at UINT64_MAX */
        bool has_content_length;
        unsigned n_transfer_encoding;   /* Transfer-Encoding fields */
        bool chunked;                   /* exactly one Transfer-Encoding, exactly "chunked" */
        unsigned n_host;                /* Host fields */
        bool connection_close;          /* a "close" token in Connection */
        bool expect_continue;           /* Expect: 100-continue */
} HttpHead;

/* Checks buf[scan->pos..len) as it arrives (see above). Returns the length of the head through
 * its blank line once that is in (> 0), 0 while more is needed, or with a static reason in
 * *ret_why: -EBADMSG (malformed), -ENAMETOOLONG (the request line is longer than
 * max_request_line: a 414; SIZE_MAX for no such limit). A head that is too large as a whole is
 * the caller's to notice (its buffer is full and this still returns 0). */
int http_head_scan(const char *buf, size_t len, size_t max_request_line, HttpHeadScan *scan,
                   const char **ret_why);

/* Parses a complete head of len bytes that http_head_scan() accepted, in place (strings are
 * NUL-terminated inside head). -EBADMSG (400), -EPROTONOSUPPORT (505) or -E2BIG (431: more than
 * HTTP_HEADERS_MAX fields), each with a static reason in *ret_why. *ret is written on success
 * only. */
int http_head_parse(char *head, size_t len, HttpHead *ret, const char **ret_why);

/* The value of the first field called name (case-insensitive), or NULL. */
const char *http_head_header(const HttpHead *h, const char *name);

/* A chunked body being decoded: zero-initialize. */
typedef struct HttpChunked {
        unsigned state;
        uint64_t left;          /* data bytes still to come in the current chunk */
        size_t line_len;        /* bytes of the current size or trailer line */
        size_t trailers_len;
        unsigned digits;
} HttpChunked;

/* Decodes the next len bytes of a chunked body in place: the data bytes among them are moved to
 * buf[0..*ret_out), *ret_used input bytes were consumed (the rest, after the body's end, belong
 * to whatever follows it). Returns 1 when the body is complete (the last chunk, any trailers,
 * which are ignored, and the final CRLF are in), 0 while more is needed, or -EBADMSG with a
 * static reason in *ret_why (bare LF or CR, a bad chunk size, a size of more than 15 hex
 * digits, a control byte, a line or trailers above the limits). */
int http_chunked_decode(HttpChunked *d, char *buf, size_t len, size_t *ret_used,
                        size_t *ret_out, const char **ret_why);
