#!/bin/sh
# tree.sh: a job that only SIGKILL of its whole process group can stop. It ignores SIGTERM
# (inherited by its children), starts a child `sleep` and an orphaned grandchild `sleep` (its
# parent subshell exits at once, so it is reparented away from the job but stays in the job's
# process group), records "JOBPID CHILDPID ORPHANPID" in $TASAD_IT_TMP/tree.pids (atomically,
# via rename), then waits.
PATH=/usr/bin:/bin
trap '' TERM
sleep 120 &
child=$!
orphan=$( (sleep 120 >/dev/null 2>&1 </dev/null & echo $!) )
printf '%s %s %s\n' "$$" "$child" "$orphan" >"$TASAD_IT_TMP/tree.pids.tmp"
mv "$TASAD_IT_TMP/tree.pids.tmp" "$TASAD_IT_TMP/tree.pids"
echo started
wait "$child"
