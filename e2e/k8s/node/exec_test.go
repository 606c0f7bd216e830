package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countingReader is an endless exec stream: it hands out lines and counts what was taken.
type countingReader struct{ n atomic.Int64 }

var line = bytes.Repeat([]byte("0123456789abcdef"), 4)

func (r *countingReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], line)
		if n+c < len(p) || c == len(line) {
			p[n+c-1] = '\n'
		}
		n += c
	}
	r.n.Add(int64(n))
	return n, nil
}

// takenWhileStalled feeds the reader into dst and answers how much the node took from the stream
// once it stopped taking more (it must stop, and stay stopped).
func takenWhileStalled(t *testing.T, dst io.Writer) int64 {
	t.Helper()
	src := &countingReader{}
	go func() { _, _ = feedStdin(dst, src) }()
	var last int64 = -1
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(200 * time.Millisecond)
		n := src.n.Load()
		if n == last {
			time.Sleep(500 * time.Millisecond)
			if again := src.n.Load(); again != n {
				t.Fatalf("the node kept reading stdin the process does not read: %d then %d bytes", n, again)
			}
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never stopped reading stdin the process does not read (%d bytes so far)", n)
		}
		last = n
	}
}

func TestFeedStdinStopsReadingWhenTheProcessPipeIsFull(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A process that does not read its stdin, as a container's would be.
	x := exec.Command("sleep", "30")
	x.Stdin = r
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer func() { _ = x.Process.Kill(); _ = x.Wait() }()
	pipe, err := unix.FcntlInt(w.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	taken := takenWhileStalled(t, w)
	if bound := int64(pipe + stdinChunk); taken > bound {
		t.Fatalf("took %d bytes of stdin nobody reads; at most the pipe (%d) and one chunk (%d) may be", taken, pipe, stdinChunk)
	}
	t.Logf("took %d bytes (pipe %d, chunk %d)", taken, pipe, stdinChunk)
}

func TestFeedStdinStopsReadingWhenTheTerminalInputIsFull(t *testing.T) {
	master, slave, _, err := openPty("/dev/ptmx")
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer master.Close()
	defer slave.Close() // open and never read: a shell busy with something else
	taken := takenWhileStalled(t, master)
	// The line discipline's 4 KiB and the terminal's input buffers (tens of KiB), one chunk here.
	if bound := int64(256 * 1024); taken > bound {
		t.Fatalf("took %d bytes of stdin nobody reads through a terminal; bound %d", taken, bound)
	}
	t.Logf("took %d bytes through a terminal", taken)
}
