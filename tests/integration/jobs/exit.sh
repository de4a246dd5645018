#!/bin/sh
# exit.sh CODE: appends "run CODE PID" to $TASAD_IT_MARK when that is set (so attempts can be
# counted), prints one line and exits with CODE. CODE "sig:NAME" makes the job kill itself with
# that signal instead.
PATH=/usr/bin:/bin
code=${1:-0}
if [ -n "$TASAD_IT_MARK" ]; then
        printf 'run %s %s\n' "$code" "$$" >>"$TASAD_IT_MARK"
fi
printf 'exiting with %s\n' "$code"
case $code in
sig:*) kill -s "${code#sig:}" $$ ;;
esac
exit "$code"
