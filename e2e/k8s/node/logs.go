package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync"
	"time"
)

// logSegmentMax bounds one log segment; a container keeps the current and the previous segment,
// so at most 2*logSegmentMax bytes per container attempt (the oldest output is dropped first).
var logSegmentMax int64 = 5 << 20

// logFile is a bounded, rotating container log (stdout and stderr interleaved).
type logFile struct {
	mu   sync.Mutex
	path string // current segment; the previous one is path+".1"
	f    *os.File
	size int64
	gen  int // incremented on every rotation
}

func createLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(path + ".1")
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	if l.size > 0 && l.size+int64(len(p)) > logSegmentMax {
		_ = l.f.Close()
		_ = os.Rename(l.path, l.path+".1")
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			l.f = nil
			return len(p), nil
		}
		l.f, l.size = f, 0
		l.gen++
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, err
	}
	return len(p), nil
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// snapshot returns the whole retained log plus the position (generation, offset in the current
// segment) just after it, for a follower to continue from.
func (l *logFile) snapshot() ([]byte, int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, _ := os.ReadFile(l.path + ".1")
	cur, _ := os.ReadFile(l.path)
	return append(old, cur...), l.gen, int64(len(cur))
}

// since returns what was written after (gen, off).
func (l *logFile) since(gen int, off int64) ([]byte, int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []byte
	if gen < l.gen {
		// The segment we were reading was rotated to .1 (older rotations are lost).
		if gen == l.gen-1 {
			if old, err := os.ReadFile(l.path + ".1"); err == nil && int64(len(old)) > off {
				out = append(out, old[off:]...)
			}
		}
		off = 0
	}
	cur, _ := os.ReadFile(l.path)
	if int64(len(cur)) > off {
		out = append(out, cur[off:]...)
		off = int64(len(cur))
	}
	return out, l.gen, off
}

// readLogPath reads a finished log (no live writer).
func readLogPath(path string) ([]byte, error) {
	old, _ := os.ReadFile(path + ".1")
	cur, err := os.ReadFile(path)
	if err != nil && len(old) == 0 {
		return nil, err
	}
	return append(old, cur...), nil
}

// tailLines keeps the last n lines (n < 0: everything).
func tailLines(b []byte, n int) []byte {
	if n < 0 {
		return b
	}
	if n == 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	count := 0
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			count++
			if count == n {
				return b[i+1:]
			}
		}
	}
	return b
}

// followReader streams the initial content and then whatever the live logFile gets, until the
// container attempt has ended (done closed) and everything was read, or ctx is cancelled.
type followReader struct {
	ctx  context.Context
	lf   *logFile
	done <-chan struct{}
	buf  *bytes.Reader
	gen  int
	off  int64
}

func (r *followReader) Read(p []byte) (int, error) {
	for {
		if r.buf != nil && r.buf.Len() > 0 {
			return r.buf.Read(p)
		}
		ended := false
		select {
		case <-r.done:
			ended = true
		default:
		}
		data, gen, off := r.lf.since(r.gen, r.off)
		r.gen, r.off = gen, off
		if len(data) > 0 {
			r.buf = bytes.NewReader(data)
			continue
		}
		if ended {
			return 0, io.EOF
		}
		select {
		case <-r.ctx.Done():
			return 0, io.EOF
		case <-r.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
