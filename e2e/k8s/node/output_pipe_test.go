package main

import (
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowWriter takes every write, slowly: a client that reads its exec output late.
type slowWriter struct {
	mu    sync.Mutex
	n     int
	delay time.Duration
	// the first write after the command exited takes this long (a client stalled at the end)
	stall   time.Duration
	exited  atomic.Bool
	stalled bool
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exited.Load() && !w.stalled {
		w.stalled = true
		time.Sleep(w.stall)
	}
	w.n += len(p)
	return len(p), nil
}

func runWithOutputPipe(t *testing.T, dst *slowWriter, args ...string) time.Duration {
	t.Helper()
	op, err := newOutputPipe(dst)
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command(args[0], args[1:]...)
	x.Stdout = op.w
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	_ = op.w.Close()
	done := make(chan struct{})
	go func() {
		op.copy()
		close(done)
	}()
	if err := x.Wait(); err != nil {
		t.Fatal(err)
	}
	exitedAt := time.Now()
	dst.exited.Store(true)
	op.exited()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("output copy did not end")
	}
	_ = op.r.Close()
	return time.Since(exitedAt)
}

// The whole output reaches a client that is still reading it long after the command exited
// (exec.Cmd's WaitDelay cut such a tail after 2 s).
func TestOutputPipeDeliversAllOfItToASlowReader(t *testing.T) {
	const size = 4 << 20
	// Slow enough that the pipe is full when the command exits; then the client stalls for longer
	// than outputIdle with the pipe's last 64 KiB still to come.
	dst := &slowWriter{delay: 5 * time.Millisecond, stall: outputIdle + time.Second}
	after := runWithOutputPipe(t, dst, "head", "-c", "4194304", "/dev/zero")
	if dst.n != size {
		t.Fatalf("got %d of %d bytes", dst.n, size)
	}
	if after < outputIdle {
		t.Fatalf("the copy ended %v after the exit: the client's stall did not happen after it", after)
	}
}

// A background child that keeps the pipe open ends the exec outputIdle after the exit, not when
// the child exits.
func TestOutputPipeEndsAfterIdleWhenABackgroundChildHoldsThePipe(t *testing.T) {
	dst := &slowWriter{}
	after := runWithOutputPipe(t, dst, "sh", "-c", "sleep 30 & echo hi")
	if dst.n != 3 {
		t.Fatalf("got %d bytes, want 3", dst.n)
	}
	if after > outputIdle+3*time.Second {
		t.Fatalf("the copy ended %v after the exit, want about %v", after, outputIdle)
	}
}
