/* tasactl: the command line, the verb table, and the configuration behind the client. */
#include <getopt.h>
#include <stdarg.h>

#include "client.h"
#include "config.h"
#include "output.h"
#include "parse.h"
#include "tasactl.h"
#include "tasad-build.h"

bool arg_json = false;
bool arg_stdin = false;
bool arg_each = false;
bool arg_wait = false;
bool arg_stderr = false;
const char *arg_payload_file = NULL;
const char *arg_id = NULL;
const char *arg_batch_id = NULL;
const char *arg_queue = NULL;
const char *arg_timeout = NULL;
uint64_t arg_timeout_usec = USEC_INFINITY;
static const char *arg_config = NULL;
static const char *arg_scheduler_socket = NULL;
static const char *arg_results_socket = NULL;
static const char *arg_token_file = NULL;

static Client *client = NULL;
static uint64_t max_request = 0;
static char *worker_socket_dir = NULL;

/* Long options without a short form. Verb options come last and in the order of their bits in
 * Verb.options (OPTION_BIT). */
enum {
        ARG_VERSION = 0x100,
        ARG_JSON,
        ARG_SCHEDULER_SOCKET,
        ARG_RESULTS_SOCKET,
        ARG_TOKEN_FILE,
        ARG_STDIN,
        ARG_PAYLOAD_FILE,
        ARG_ID,
        ARG_TIMEOUT,
        ARG_EACH,
        ARG_WAIT,
        ARG_STDERR,
        ARG_QUEUE,
        ARG_BATCH_ID,
};
#define OPTION_BIT(arg) (1u << ((arg) - ARG_STDIN))
#define OPT_SUBMIT                                                                       \
        (OPTION_BIT(ARG_STDIN) | OPTION_BIT(ARG_PAYLOAD_FILE) | OPTION_BIT(ARG_ID) |     \
         OPTION_BIT(ARG_TIMEOUT) | OPTION_BIT(ARG_EACH) | OPTION_BIT(ARG_WAIT) |        \
         OPTION_BIT(ARG_BATCH_ID))

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, ARG_JSON },
        { "scheduler-socket", required_argument, NULL, ARG_SCHEDULER_SOCKET },
        { "results-socket", required_argument, NULL, ARG_RESULTS_SOCKET },
        { "token-file", required_argument, NULL, ARG_TOKEN_FILE },
        { "stdin", no_argument, NULL, ARG_STDIN },
        { "payload-file", required_argument, NULL, ARG_PAYLOAD_FILE },
        { "id", required_argument, NULL, ARG_ID },
        { "timeout", required_argument, NULL, ARG_TIMEOUT },
        { "each", no_argument, NULL, ARG_EACH },
        { "wait", no_argument, NULL, ARG_WAIT },
        { "stderr", no_argument, NULL, ARG_STDERR },
        { "queue", required_argument, NULL, ARG_QUEUE },
        { "batch-id", required_argument, NULL, ARG_BATCH_ID },
        {},
};

typedef struct Verb {
        const char *name;
        size_t min_args, max_args;      /* positional arguments after the verb */
        unsigned options;               /* OPTION_BIT()s of the verb options it accepts */
        const char *synopsis;
        int (*run)(int argc, char *argv[]);
} Verb;

static const Verb verbs[] = {
        { "submit", 1, SIZE_MAX, OPT_SUBMIT, "QUEUE [ARG]...", verb_submit },
        { "status", 1, 1, OPTION_BIT(ARG_QUEUE), "ID", verb_status },
        { "result", 1, 1, OPTION_BIT(ARG_QUEUE) | OPTION_BIT(ARG_STDERR), "ID", verb_result },
        { "wait", 1, SIZE_MAX, OPTION_BIT(ARG_QUEUE) | OPTION_BIT(ARG_TIMEOUT), "ID...", verb_wait },
        { "cancel", 1, 1, OPTION_BIT(ARG_QUEUE), "ID", verb_cancel },
        { "queues", 0, 0, 0, "", verb_queues },
        { "dead", 1, 1, 0, "QUEUE", verb_dead },
        { "requeue", 2, 2, 0, "QUEUE ID", verb_requeue },
        { "policy", 1, 2, 0, "check NAME|FILE | groups", verb_policy },
        { "worker", 2, 2, 0, "status|pause|resume|drain QUEUE", verb_worker },
};

/* --help: the reference card; man/tasactl.1 says the same at length (keep them in step). */
static const char help_text[] =
"Usage: tasactl [OPTION]... VERB [ARGUMENT]...\n"
"Submit jobs to tasad queues and follow them, through the sockets of\n"
"tasad-scheduler (submit, cancel, requeue) and tasad-results (all reads).\n"
"\n"
"Verbs:\n"
"  submit QUEUE [ARG]...  submit one job with these arguments; print its id\n"
"  status ID              show a job's state, outcome and accounting\n"
"  result ID              print what the job wrote to stdout (or --stderr)\n"
"  wait ID...             wait until the jobs are final; print, for each,\n"
"                         \"ID STATE OUTCOME\"\n"
"  cancel ID              cancel a queued, delayed or running job\n"
"  queues                 list the queues: jobs per state, workers\n"
"  dead QUEUE             list the jobs in a queue's dead-letter list\n"
"  requeue QUEUE ID       move a dead job back to the ready list\n"
"  policy check NAME|FILE validate a seccomp profile (by name from the\n"
"                         policy directories, or a file) and print the\n"
"                         resolved rules; nothing is sent to a daemon\n"
"  policy groups          list the system call groups profiles can use\n"
"  worker status QUEUE    this host's worker of QUEUE: state, slots, jobs\n"
"  worker pause QUEUE     stop taking jobs (running ones go on)\n"
"  worker resume QUEUE    take jobs again\n"
"  worker drain QUEUE     as systemctl stop: finish or give back, then exit\n"
"\n"
"Global options (before or after the verb):\n"
"  -c, --config=FILE      configuration file with the socket paths (default:\n"
"                         $TASAD_CONF, else " TASAD_CONF_DEFAULT ", and\n"
"                         built-in defaults when that does not exist)\n"
"      --scheduler-socket=PATH|URL\n"
"                         tasad-scheduler's socket, or http://HOST:PORT of\n"
"                         its TCP listener (default: $TASAD_SCHEDULER_SOCKET,\n"
"                         else scheduler_socket)\n"
"      --results-socket=PATH|URL\n"
"                         tasad-results' socket or TCP listener (default:\n"
"                         $TASAD_RESULTS_SOCKET, else results_socket)\n"
"      --token-file=FILE  an API token (its first line), sent to TCP\n"
"                         listeners (default: $TASAD_TOKEN_FILE)\n"
"      --json             machine output: the daemons' JSON objects, one\n"
"                         compact object per line\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"Submit options:\n"
"      --stdin            the job's stdin (payload) is our standard input,\n"
"                         any bytes\n"
"      --payload-file=FILE\n"
"                         the job's stdin is the content of FILE\n"
"      --id=KEY           idempotency key: no second job with this id is\n"
"                         submitted to the queue ([A-Za-z0-9_.:-]{1,64})\n"
"      --timeout=DURATION\n"
"                         the job's timeout (\"90s\", \"5m\"), at most the queue's\n"
"      --each             one job per non-empty line of standard input, the\n"
"                         line's whitespace-separated words appended to the\n"
"                         ARGs; sent in batches of 10000; one id per line\n"
"      --batch-id=NAME    with --each: every line in one batch named NAME (at\n"
"                         most 1000000 jobs, job ids NAME.0, NAME.1, ...); the\n"
"                         same command run again stores nothing twice\n"
"      --wait             wait for the job, copy its stdout to stdout and its\n"
"                         stderr to stderr, exit with the job's exit status\n"
"                         (with --json: print its final status instead)\n"
"\n"
"Job options:\n"
"      --queue=QUEUE      status, result, wait, cancel: look in QUEUE only\n"
"      --stderr           result: print the job's stderr, not its stdout\n"
"      --timeout=DURATION\n"
"                         wait: give up after DURATION in all (exit status 2)\n"
"\n"
"Job arguments that begin with \"-\" follow \"--\": tasactl submit q -- -v host\n"
"\n"
"Exit status:\n"
"  0      success; wait: every job is done\n"
"  1      failure, explained in one line on stderr; wait: a job failed or\n"
"         was cancelled; submit --wait: the job failed without exiting\n"
"         (cancelled, lease lost, sandbox violation, resource limit, ...)\n"
"  2      usage error; wait: --timeout passed before every job was final\n"
"  N      submit --wait: the job exited with status N\n"
"  124    submit --wait: the job was killed at its timeout\n"
"  128+N  submit --wait: the job was killed by signal N\n"
"\n"
"Environment:\n"
"  TASAD_CONF, TASAD_SCHEDULER_SOCKET, TASAD_RESULTS_SOCKET, TASAD_TOKEN_FILE\n"
"                         see above\n"
"\n"
"Examples:\n"
"  tasactl submit tnmap 127.0.0.1\n"
"                         submit one job to queue tnmap, print its id\n"
"  seq 1000 | tasactl submit square --each > ids\n"
"                         submit 1000 jobs, one argument each\n"
"  tasactl wait --timeout 10m $(cat ids)\n"
"                         wait up to 10 minutes for all of them\n"
"  tasactl submit --wait --stdin gzip < f > f.gz\n"
"                         run one job like a local command\n"
"  tasactl --json status ID | jq -r .outcome\n"
"                         one field of a job's status\n"
"\n"
"See docs/tasactl.md and docs/api.md.\n";

int tasactl_usage_error(const char *format, ...) {
        char buf[2048];
        va_list ap;
        size_t n;

        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, " (see 'tasactl --help')");
        output_line(buf);
        return TASACTL_EXIT_USAGE;
}

/* Usage errors inside main.c: the line, then -EINVAL (main() turns it into exit status 2). */
#define USAGE(...) (tasactl_usage_error(__VA_ARGS__), -EINVAL)

static const char *option_name(int val) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == val)
                        return o->name;
        return "?";
}

/* getopt_long's '?' and ':' as one usage line (opterr is off). */
static int option_error(int c, char *argv[]) {
        const char *arg = argv[optind - 1];
        size_t n = strcspn(arg, "=");

        if (c == ':')
                return optopt >= ARG_VERSION || optopt == 0 ?
                        USAGE("option '--%s' needs a value", option_name(optopt)) :
                        USAGE("option '-%c' needs a value", optopt);
        if (optopt >= ARG_VERSION || optopt == 'h')
                return USAGE("option '--%s' takes no value", option_name(optopt));
        if (optopt > 0)
                return USAGE("unknown option '-%c'", optopt);
        return USAGE("unknown option '%.*s'", (int) n, arg);
}

static int parse_timeout(const char *s) {
        if (parse_duration(s, &arg_timeout_usec) < 0)
                return USAGE("invalid duration '%s' for --timeout (e.g. 90s, 5m, 1h30m)",
                                           s);
        arg_timeout = s;
        return 0;
}

/* Sets the arg_* of one option. */
static int parse_option(int c) {
        switch (c) {
        case 'c': arg_config = optarg; break;
        case ARG_JSON: arg_json = true; break;
        case ARG_SCHEDULER_SOCKET: arg_scheduler_socket = optarg; break;
        case ARG_RESULTS_SOCKET: arg_results_socket = optarg; break;
        case ARG_TOKEN_FILE: arg_token_file = optarg; break;
        case ARG_STDIN: arg_stdin = true; break;
        case ARG_PAYLOAD_FILE: arg_payload_file = optarg; break;
        case ARG_ID: arg_id = optarg; break;
        case ARG_TIMEOUT: return parse_timeout(optarg);
        case ARG_EACH: arg_each = true; break;
        case ARG_BATCH_ID: arg_batch_id = optarg; break;
        case ARG_WAIT: arg_wait = true; break;
        case ARG_STDERR: arg_stderr = true; break;
        case ARG_QUEUE: arg_queue = optarg; break;
        default: return USAGE("unhandled option %d", c);
        }
        return 0;
}

static bool option_has_value(int val) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == val)
                        return o->has_arg != no_argument;
        return false;
}

/* Options anywhere on the line: getopt's "-" mode hands over the other arguments in order
 * (whatever POSIXLY_CORRECT says); everything after "--" is an argument. Returns 1 to go on,
 * 0 to exit successfully (--help, --version), -EINVAL for a usage error, -ENOMEM.
 * *ret_args: the verb and its arguments (borrowed from argv); *ret_seen: verb options given. */
static int parse_argv(int argc, char *argv[], char ***ret_args, int *ret_n, unsigned *ret_seen) {
        _cleanup_free_ char **args = calloc((size_t) argc + 1, sizeof(char *));
        unsigned seen = 0;
        int c, r, n = 0;

        if (!args)
                return output_oom();
        opterr = 0;
        while ((c = getopt_long(argc, argv, "-:hc:", options, NULL)) >= 0) {
                if (c == 1) {
                        args[n++] = optarg;
                        continue;
                }
                if (c == 'h' || c == ARG_VERSION) {
                        fputs(c == 'h' ? help_text : "tasactl (tasad) " TASAD_VERSION "\n", stdout);
                        return 0;
                }
                if (c == '?' || c == ':')
                        return option_error(c, argv);
                if (option_has_value(c) && !*optarg)
                        return USAGE("option '--%s' needs a non-empty value",
                                                    option_name(c));
                r = parse_option(c);
                if (r < 0)
                        return r;
                if (c >= ARG_STDIN)
                        seen |= OPTION_BIT(c);
        }
        while (optind < argc)
                args[n++] = argv[optind++];
        *ret_args = TAKE_PTR(args);
        *ret_n = n;
        *ret_seen = seen;
        return 1;
}

/* Optimal string alignment distance (Damerau-Levenshtein without reuse): insertions,
 * deletions, substitutions and swaps of neighbours each cost 1. Both strings are short (a verb,
 * and what was typed, cut at 63 bytes). */
static size_t edit_distance(const char *a, const char *b) {
        size_t n = MIN(strlen(a), (size_t) 63), m = MIN(strlen(b), (size_t) 63);
        size_t d[64][64];

        for (size_t i = 0; i <= n; i++)
                d[i][0] = i;
        for (size_t j = 0; j <= m; j++)
                d[0][j] = j;
        for (size_t i = 1; i <= n; i++)
                for (size_t j = 1; j <= m; j++) {
                        size_t cost = a[i - 1] != b[j - 1];

                        d[i][j] = MIN(MIN(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                                d[i][j] = MIN(d[i][j], d[i - 2][j - 2] + 1);
                }
        return d[n][m];
}

/* "unknown verb 'X'", and as git does, the nearest verbs when one is at most 2 edits away:
 * "; did you mean 'status'?" (or "'a' or 'b'" for two at the same distance). */
static int unknown_verb(const char *typed) {
        char hint[128] = "";
        size_t best = 3, len = 0;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                best = MIN(best, edit_distance(typed, verbs[i].name));
        for (size_t i = 0; best <= 2 && i < ELEMENTSOF(verbs); i++)
                if (edit_distance(typed, verbs[i].name) == best)
                        len += (size_t) snprintf(hint + len, sizeof(hint) - MIN(len, sizeof(hint)),
                                                 "%s'%s'", len ? " or " : "; did you mean ",
                                                 verbs[i].name);
        return USAGE("unknown verb '%s'%s%s", typed, hint, *hint ? "?" : "");
}

/* The verb of argv[0], with its arguments and options checked. */
static int verb_find(int argc, char *argv[], unsigned seen, const Verb **ret) {
        const Verb *v = NULL;
        size_t n = argc > 0 ? (size_t) argc - 1 : 0;

        if (argc <= 0)
                return USAGE("missing verb");
        for (size_t i = 0; i < ELEMENTSOF(verbs) && !v; i++)
                if (streq(verbs[i].name, argv[0]))
                        v = &verbs[i];
        if (!v)
                return unknown_verb(argv[0]);
        if (n < v->min_args || n > v->max_args)
                return USAGE("%s arguments for '%s'; usage: tasactl %s %s",
                                           n < v->min_args ? "missing" : "too many", v->name,
                                           v->name, v->synopsis);
        for (size_t i = 1; i <= v->min_args; i++)
                if (!*argv[i])
                        return USAGE("empty argument for '%s'; usage: tasactl %s %s",
                                                   v->name, v->name, v->synopsis);
        for (int a = ARG_STDIN; a <= ARG_QUEUE; a++)
                if ((seen & OPTION_BIT(a)) && !(v->options & OPTION_BIT(a)))
                        return USAGE("option '--%s' does not apply to '%s'",
                                                   option_name(a), v->name);
        *ret = v;
        return 0;
}

static const char *env_nonempty(const char *name) {
        const char *e = secure_getenv(name);
        return e && *e ? e : NULL;
}

/* The configuration file, or built-in defaults when the default file does not exist (a
 * client host without tasad.conf) or no file is needed (both sockets given). A file named by
 * -c or $TASAD_CONF must exist: a typo there would otherwise silently mean the defaults. */
static int config_load(const char *scheduler, const char *results, TasadConfig **ret) {
        const char *path = arg_config ?: env_nonempty("TASAD_CONF");
        _cleanup_free_ char *error = NULL;
        int r;

        if (!(scheduler && results)) {
                r = tasad_config_load(path ?: TASAD_CONF_DEFAULT, ret, &error);
                if (r != -ENOENT || path) {
                        if (r < 0 && error)
                                return output_error(r, "%s", error);
                        if (r < 0)
                                return output_error(r, "cannot load configuration %s: %m",
                                                    path ?: TASAD_CONF_DEFAULT);
                        return 0;
                }
        }
        r = tasad_config_new_default(ret);
        return r < 0 ? output_error(r, "cannot set up the default configuration: %m") : 0;
}

/* --token-file / $TASAD_TOKEN_FILE: the token is the file's first line. */
static int token_load(Client *c) {
        const char *path = arg_token_file ?: env_nonempty("TASAD_TOKEN_FILE");
        _cleanup_fclose_ FILE *f = NULL;
        char buf[512];
        size_t n;
        int r;

        if (!path)
                return 0;
        f = fopen(path, "re");
        if (!f)
                return output_error(errno, "cannot read the token file %s: %m", path);
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = '\0';
        n = strcspn(buf, "\r\n");
        buf[n] = '\0';
        if (n == 0) {
                explicit_bzero(buf, sizeof(buf));
                return output_error(EINVAL, "the token file %s is empty", path);
        }
        r = client_set_token(c, buf);
        explicit_bzero(buf, sizeof(buf));
        return r;
}

int tasactl_config(TasadConfig **ret) {
        return config_load(NULL, NULL, ret);
}

int tasactl_client(Client **ret) {
        _cleanup_(tasad_config_freep) TasadConfig *config = NULL;
        const char *sched = arg_scheduler_socket ?: env_nonempty("TASAD_SCHEDULER_SOCKET");
        const char *res = arg_results_socket ?: env_nonempty("TASAD_RESULTS_SOCKET");
        int r;

        if (!client) {
                r = config_load(sched, res, &config);
                if (r < 0)
                        return r;
                r = client_new(sched ?: config->scheduler_socket, res ?: config->results_socket,
                               &client);
                if (r < 0)
                        return r;
                r = token_load(client);
                if (r < 0)
                        return r;
                max_request = config->max_request;
                worker_socket_dir = strdup(config->worker_socket_dir);
                if (!worker_socket_dir)
                        return output_oom();
        }
        *ret = client;
        return 0;
}

uint64_t tasactl_max_request(void) {
        return max_request;
}

const char *tasactl_worker_socket_dir(void) {
        return worker_socket_dir;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char **args = NULL;
        const Verb *verb = NULL;
        unsigned seen = 0;
        int n = 0, r;

        r = parse_argv(argc, argv, &args, &n, &seen);
        if (r > 0)
                r = verb_find(n, args, seen, &verb);
        if (r < 0)
                return r == -EINVAL ? TASACTL_EXIT_USAGE : TASACTL_EXIT_FAILURE;
        if (!verb) /* --help, --version */
                return TASACTL_EXIT_OK;
        r = verb->run(n, args);
        client = client_free(client);
        worker_socket_dir = mfree(worker_socket_dir);
        if (output_flush() < 0)
                return TASACTL_EXIT_FAILURE;
        return r < 0 ? TASACTL_EXIT_FAILURE : r;
}
