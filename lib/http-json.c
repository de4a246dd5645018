/* JSON bodies shared by tasad's HTTP servers (http.c, ctl.c). */
#include "http-json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static json_t *json_string_lossy(const char *s) {
        _cleanup_free_ char *copy = NULL;
        json_t *j = json_string(s);

        if (j)
                return j;
        /* Not UTF-8 (a message quoting client input): keep the ASCII, mask the rest. */
        copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++)
                if ((unsigned char) *p >= 0x80)
                        *p = '?';
        return json_string(copy);
}

/* {"error": {"code": code, "message": message}} */
json_t *http_error_body(const char *code, const char *message) {
        _cleanup_(json_decrefp) json_t *err = json_object();
        _cleanup_(json_decrefp) json_t *body = json_object();

        if (!err || !body)
                return NULL;
        if (json_object_set_new(err, "code", json_string(code)) < 0 ||
            json_object_set_new(err, "message", json_string_lossy(message)) < 0 ||
            json_object_set(body, "error", err) < 0)
                return NULL;
        return TAKE_PTR(body);
}
