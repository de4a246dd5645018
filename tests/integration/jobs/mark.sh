#!/bin/sh
# mark.sh TAG [SECONDS]: appends "start TAG WORKER PID" to $TASAD_IT_MARK, sleeps SECONDS
# (default $TASAD_IT_SLEEP, else 0) in a child recorded as "sleep TAG WORKER CHILDPID", then
# appends "end TAG WORKER PID" and prints TAG. WORKER is $TASAD_IT_WORKER (set per worker in its
# own copy of the queue file), so the test can tell which worker ran which job. Each line is one
# short O_APPEND write, so concurrent jobs do not interleave.
PATH=/usr/bin:/bin
tag=$1
secs=${2:-${TASAD_IT_SLEEP:-0}}
w=${TASAD_IT_WORKER:--}
printf 'start %s %s %s\n' "$tag" "$w" "$$" >>"$TASAD_IT_MARK"
if [ "$secs" != 0 ]; then
        sleep "$secs" &
        spid=$!
        printf 'sleep %s %s %s\n' "$tag" "$w" "$spid" >>"$TASAD_IT_MARK"
        wait "$spid"
fi
printf 'end %s %s %s\n' "$tag" "$w" "$$" >>"$TASAD_IT_MARK"
printf '%s\n' "$tag"
