#!/usr/bin/env python3
"""userns-wrap.py COMMAND [ARG]...: runs COMMAND as root of a new user namespace that maps
uids and gids 0..65535 to the same ids outside (so files and accounts look the same), in which
no further network, IPC, mount or user namespace may be created (max_*_namespaces = 0). For the
sandbox suite: a worker there has every capability but cannot make its namespaces, which is
how a host without namespace support looks to it. Needs root. The wrapper execs COMMAND in the
same process, so its pid is COMMAND's."""

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        # Still in the initial namespace with its privileges: write the parent's maps.
        os.close(ready_w)
        os.close(done_r)
        os.read(ready_r, 1)
        for f in ("uid_map", "gid_map"):
            with open(f"/proc/{parent}/{f}", "w") as m:
                m.write("0 0 65536\n")
        os._exit(0)
    os.close(ready_r)
    os.close(done_w)
    if libc.unshare(CLONE_NEWUSER) != 0:
        sys.exit(f"userns-wrap: unshare: {os.strerror(ctypes.get_errno())}")
    os.write(ready_w, b"x")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("userns-wrap: could not write the id maps")
    for ns in ("net", "ipc", "mnt", "user"):
        with open(f"/proc/sys/user/max_{ns}_namespaces", "w") as f:
            f.write("0\n")
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
