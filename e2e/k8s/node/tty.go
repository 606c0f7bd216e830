package main

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openPty allocates a pseudo-terminal from the devpts instance of ptmxPath. The master stays
// non-blocking (only SyscallConn is used, never Fd()), so closing it unblocks readers.
// It returns the slave's number in that instance.
func openPty(ptmxPath string) (master, slave *os.File, n int, err error) {
	master, err = os.OpenFile(ptmxPath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, 0, err
	}
	var sfd int
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		if n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN); ioErr != nil {
			return
		}
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno != 0 {
			ioErr = errno
			return
		}
		sfd = int(r)
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		master.Close()
		return nil, nil, 0, err
	}
	return master, os.NewFile(uintptr(sfd), fmt.Sprintf("pts-%d", n)), n, nil
}

// openSandboxPty allocates the terminal from the sandbox's private devpts (bwrap --dev), so that
// inside the sandbox it is a visible /dev/pts/N: ttyname(3), tty(1) and job control work.
func openSandboxPty(initPid int) (master, slave *os.File, err error) {
	master, slave, _, err = openPty(fmt.Sprintf("/proc/%d/root/dev/pts/ptmx", initPid))
	if err != nil {
		master, slave, _, err = openPty("/dev/ptmx")
	}
	return master, slave, err
}

func setWinsize(master *os.File, cols, rows uint16) {
	rc, err := master.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
}
