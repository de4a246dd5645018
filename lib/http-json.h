/* JSON bodies shared by tasad's HTTP servers (http.c, ctl.c). */
#pragma once

#include <jansson.h>

/* Compact; 15 significant digits: a timestamp with milliseconds prints as 1763900000.123. */
#define HTTP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* {"error": {"code": code, "message": message}}; a message that is not UTF-8 (quoting client
 * input) keeps its ASCII and masks the rest. NULL when out of memory. */
json_t *http_error_body(const char *code, const char *message);
