#!/usr/bin/env python3
"""Runs a command under a real pseudo-terminal and drives it like a person at a terminal.

Used by tests to prove `kubectl exec -it` gets a TTY whose size follows a resize.
Usage: pty-exec.py ROWS COLS -- command args...
Reads steps from stdin as JSON lines: {"send": "text"} | {"expect": "regex", "timeout": s} |
{"resize": [rows, cols]}. Prints the whole transcript to stdout, exits with the command's code
(or 124 when an expectation times out).
"""
import fcntl, json, os, pty, re, select, signal, struct, sys, termios, time

def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

def main():
    rows, cols = int(sys.argv[1]), int(sys.argv[2])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    steps = [json.loads(l) for l in sys.stdin if l.strip()]
    pid, fd = pty.fork()
    if pid == 0:
        set_size(0, rows, cols)
        os.execvp(cmd[0], cmd)
    out = b""
    def read_some(timeout):
        nonlocal out
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            out += data
        return True
    for step in steps:
        if "send" in step:
            os.write(fd, step["send"].encode())
        elif "resize" in step:
            set_size(fd, step["resize"][0], step["resize"][1])
            os.kill(pid, signal.SIGWINCH)
        elif "expect" in step:
            deadline = time.time() + step.get("timeout", 20)
            pat = re.compile(step["expect"].encode())
            start = len(out)
            while not pat.search(out[start:]):
                if time.time() > deadline or not read_some(0.2):
                    sys.stdout.write(out.decode(errors="replace"))
                    sys.stderr.write("timed out expecting %r\n" % step["expect"])
                    os.kill(pid, signal.SIGKILL)
                    sys.exit(124)
    # drain until the command exits
    deadline = time.time() + 30
    while time.time() < deadline and read_some(0.2):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    else:
        done, status = 0, 0
    if not done:
        done, status = os.waitpid(pid, 0)
    while read_some(0.05):
        pass
    sys.stdout.write(out.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status))

main()
