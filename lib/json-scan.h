/* A streaming JSON checker for request bodies, run before any JSON library sees them: it checks
 * the syntax of RFC 8259 (all of it but UTF-8, which the decoder of each part checks), bounds
 * what a document may cost to decode (nesting depth, elements per array or object, bytes per
 * element of one array), and records where the elements of that array begin and end, so that
 * they can be decoded one at a time. Memory: a fixed state plus one JsonSpan per recorded
 * element (at most max_split_elements). Input comes in pieces of any size; a piece's cost is
 * linear in its length.
 *
 * Depth: the top-level array or object is at depth 1, a container inside it at depth 2, … The
 * elements of the array at split_depth are recorded: split_depth 2 with the document
 * {"jobs": [a, b]} records a and b. A document has at most one array there: a second one is
 * refused as soon as it opens (-ENOTUNIQ), so spans never exceed max_split_elements. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_SCAN_DEPTH_MAX 32U

typedef struct JsonScanLimits {
        unsigned max_depth;             /* deeper nesting: -ELOOP (1..JSON_SCAN_DEPTH_MAX) */
        uint64_t max_elements;          /* elements (members) of one array (object): -E2BIG */
        unsigned split_depth;           /* 0: nothing recorded */
        uint64_t max_split_elements;    /* elements of the array at split_depth: -E2BIG */
        uint64_t max_split_bytes;       /* bytes of one such element: -EFBIG */
} JsonScanLimits;

/* Bytes [offset, offset + length) of the document. */
typedef struct JsonSpan {
        uint32_t offset;
        uint32_t length;
} JsonSpan;

typedef struct JsonScan {
        JsonScanLimits limits;
        uint64_t pos;                   /* bytes fed so far */
        int error;                      /* sticky: every later call returns it */
        char message[128];              /* what was wrong, with its byte offset */
        bool in_split;                  /* the error (or the position) is inside an element */
        bool split_overflow;            /* the -E2BIG is of an array at split_depth */
        /* What the document turned out to be, valid after json_scan_finish() succeeded. */
        char top;                       /* '{', '[', or 0 for a scalar */
        uint64_t top_members;           /* members or elements of the top-level container */
        JsonSpan first_key;             /* the first top-level key, its quotes included */
        JsonSpan second_key;            /* the second one (length 0: none so far) */
        unsigned split_arrays;          /* arrays at split_depth: 0 or 1 */
        JsonSpan *spans;                /* the elements of that array, in order */
        size_t n_spans;
        size_t spans_alloc;
        /* Lexer and parser state. */
        uint8_t expect, lex, num, left;
        bool is_key;
        const char *literal;
        unsigned depth;
        uint64_t token_start;
        uint64_t element_start;
        char stack[JSON_SCAN_DEPTH_MAX + 1];
        uint64_t count[JSON_SCAN_DEPTH_MAX + 1];
} JsonScan;

/* -EINVAL for limits out of range. */
int json_scan_init(JsonScan *s, const JsonScanLimits *limits);
/* The next len bytes of the document (at most 4 GiB in all: -EFBIG beyond). 0, or -EBADMSG
 * (syntax), -ELOOP, -E2BIG, -EFBIG (limits), -ENOTUNIQ (a second array at split_depth),
 * -ENOMEM, each with s->message; once an error is returned, every later call returns it. */
int json_scan_feed(JsonScan *s, const char *buf, size_t len);
/* The document ended: 0 when it is one complete value (then the fields above are valid), else
 * as json_scan_feed(). */
int json_scan_finish(JsonScan *s);
/* Frees the spans; s may be initialized again. */
void json_scan_done(JsonScan *s);
