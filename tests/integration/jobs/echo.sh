#!/bin/sh
# echo.sh [ARG...]: prints each argument as "arg:<value>" on its own line, then copies stdin to
# stdout byte for byte (so with no arguments stdout is exactly the payload), and writes one line
# to stderr.
PATH=/usr/bin:/bin
for a in "$@"; do
        printf 'arg:%s\n' "$a"
done
printf 'echo.sh on stderr\n' >&2
exec cat
