#include "control.h"

#include <jansson.h>

#include "auth.h"
#include "config.h"
#include "ctl.h"
#include "http-listen.h"
#include "log.h"
#include "worker.h"

static bool may_read(CtlRequest *req, Worker *w) {
        uid_t uid;
        gid_t gid;
        pid_t pid;

        /* The control socket is always a Unix socket (http_listen_fd); no credentials, no access. */
        if (ctl_request_peer(req, &uid, &gid, &pid) < 0) {
                ctl_reply_error(req, 403, "forbidden", "no peer credentials");
                return false;
        }
        if (uid == 0 || uid == geteuid() || auth_uid_in_groups(uid, gid, worker_queue(w)->read_groups) > 0)
                return true;
        ctl_reply_error(req, 403, "forbidden", "user %u may not read the worker of queue '%s'",
                         (unsigned) uid, worker_queue(w)->name);
        return false;
}

static bool may_change(CtlRequest *req, Worker *w) {
        uid_t uid;
        gid_t gid;
        pid_t pid;

        if (ctl_request_peer(req, &uid, &gid, &pid) >= 0 && (uid == 0 || uid == geteuid()))
                return true;
        ctl_reply_error(req, 403, "forbidden", "only root or the worker's user may change the "
                         "worker of queue '%s' (user %u)", worker_queue(w)->name, (unsigned) uid);
        return false;
}

static int reply_status(CtlRequest *req, Worker *w) {
        json_t *st = worker_status_json(w);

        if (!st)
                return -ENOMEM;
        return ctl_reply_json(req, 200, st);
}

static int on_status(CtlRequest *req, void *userdata) {
        Worker *w = userdata;

        if (!may_read(req, w))
                return 0;
        return reply_status(req, w);
}

static int on_pause(CtlRequest *req, void *userdata) {
        Worker *w = userdata;

        if (!may_change(req, w))
                return 0;
        worker_pause(w);
        return reply_status(req, w);
}

static int on_resume(CtlRequest *req, void *userdata) {
        Worker *w = userdata;
        int r;

        if (!may_change(req, w))
                return 0;
        r = worker_resume(w);
        if (r == -ESHUTDOWN)
                return ctl_reply_error(req, 409, "conflict", "the worker is draining"), 0;
        if (r < 0)
                return r;
        return reply_status(req, w);
}

static int on_drain(CtlRequest *req, void *userdata) {
        Worker *w = userdata;

        if (!may_change(req, w))
                return 0;
        worker_drain(w);
        return reply_status(req, w);
}

static const CtlRoute routes[] = {
        { "GET", "/v1/worker", on_status },
        { "POST", "/v1/worker/pause", on_pause },
        { "POST", "/v1/worker/resume", on_resume },
        { "POST", "/v1/worker/drain", on_drain },
};

int worker_control_start(sd_event *e, Worker *w, const char *path, CtlServer **ret) {
        bool activated = false;
        int fd = -EBADF, r;

        r = http_listen_fd("control", path, &fd, &activated);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "Another process serves the control socket %s (a "
                                       "worker of queue '%s' with the same worker_socket_dir?); "
                                       "refusing to start.", path, worker_queue(w)->name);
        if (r < 0)
                return log_error_errno(r, "Failed to open the control socket %s: %m", path);
        r = ctl_server_new(e, fd, routes, ELEMENTSOF(routes), w, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to serve the control socket: %m");
        log_info("Control socket: %s%s.", activated ? "passed by systemd, " : "", path);
        return 0;
}
