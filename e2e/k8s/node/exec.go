package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"
)

// ---- output fan-out for attach -------------------------------------------------------------

type chunk struct {
	data   []byte
	stderr bool
}

type subscriber struct {
	ch   chan chunk
	done chan struct{}
}

// broadcaster copies a container's live output to attached clients. A client that cannot keep
// up is dropped rather than stalling the container.
type broadcaster struct {
	mu   sync.Mutex
	subs map[*subscriber]bool
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[*subscriber]bool{}} }

func (b *broadcaster) publish(p []byte, stderr bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		return
	}
	c := chunk{data: append([]byte(nil), p...), stderr: stderr}
	for s := range b.subs {
		select {
		case s.ch <- c:
		default:
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

func (b *broadcaster) subscribe(stdout, stderr io.Writer) *subscriber {
	s := &subscriber{ch: make(chan chunk, 1024), done: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = true
	b.mu.Unlock()
	go func() {
		defer close(s.done)
		for c := range s.ch {
			w := stdout
			if c.stderr && stderr != nil {
				w = stderr
			}
			if w != nil {
				_, _ = w.Write(c.data)
			}
		}
	}()
	return s
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	if b.subs[s] {
		delete(b.subs, s)
		close(s.ch)
	}
	b.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
}

// streamWriter receives a container's stdout or stderr: log file + attached clients.
type streamWriter struct {
	lf     *logFile
	out    *broadcaster
	stderr bool
}

func (w *streamWriter) Write(p []byte) (int, error) {
	_, _ = w.lf.Write(p)
	w.out.publish(p, w.stderr)
	return len(p), nil
}

// ---- lookups ---------------------------------------------------------------------------------

func (p *provider) runningContainer(ns, name, cname string) (*podRuntime, *container, *proc, error) {
	rt := p.lookup(ns, name)
	if rt == nil {
		return nil, nil, nil, errdefs.NotFoundf("pod %s/%s not found on this node", ns, name)
	}
	c := rt.container(cname)
	if c == nil {
		return nil, nil, nil, errdefs.NotFoundf("container %q not found in pod %s/%s", cname, ns, name)
	}
	rt.mu.Lock()
	pr := c.proc
	rt.mu.Unlock()
	if pr == nil {
		return nil, nil, nil, errdefs.InvalidInputf("container %q in pod %s/%s is not running", cname, ns, name)
	}
	return rt, c, pr, nil
}

// ---- exec --------------------------------------------------------------------------------------

// RunInContainer runs cmd inside the container's sandbox: nsenter joins the sandbox's mount, UTS,
// IPC and pid namespaces (network is the host's anyway), then setpriv switches to the container's
// uid/gid. Environment and working directory are the container's. A non-zero exit status is
// returned as a k8s.io/utils/exec ExitError, which the streaming server reports to the client.
func (p *provider) RunInContainer(ctx context.Context, ns, name, cname string, cmd []string, attach api.AttachIO) error {
	rt, c, pr, err := p.runningContainer(ns, name, cname)
	if err != nil {
		return err
	}
	if len(cmd) == 0 {
		return errdefs.InvalidInput("no command")
	}
	rt.mu.Lock()
	env := append([]string(nil), c.env...)
	ident := c.ident
	workDir := c.workDir
	rt.mu.Unlock()

	tty := attach.TTY()
	if tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	args := []string{"--target", strconv.Itoa(pr.initPid), "--mount", "--uts", "--ipc", "--pid", "--wdns=" + workDir, "--"}
	if tty {
		// A new session inside the sandbox owning the terminal, so job control works there.
		args = append(args, setsidPath, "--ctty", "--wait")
	}
	args = append(args, ident.setprivArgs(p.cfg.Setpriv)...)
	args = append(args, cmd...)
	x := exec.Command(p.cfg.Nsenter, args...)
	// Not the pod-ip shim's LD_PRELOAD: nsenter starts on the host, where the shim's path inside
	// the sandbox does not exist, and ld.so would print its "cannot be preloaded" line into the
	// exec's output (129 bytes on every exec). Exec'd commands are therefore not shimmed: a
	// wildcard bind made by one lands on the host's wildcard (docs in README.md, "Pod addresses").
	x.Env = withoutPreload(env)
	x.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	x.WaitDelay = 2 * time.Second

	if tty {
		return p.execTTY(ctx, x, pr, attach)
	}

	// Output goes through our own pipes, not exec.Cmd's copying (which WaitDelay cuts 2 s after
	// the exit even while bytes still flow to a slow reader: the tail of a bulk output was lost).
	var outs []*outputPipe
	for _, w := range []io.Writer{attach.Stdout(), attach.Stderr()} {
		if w == nil {
			outs = append(outs, nil)
			continue
		}
		op, err := newOutputPipe(w)
		if err != nil {
			closeOutputPipes(outs)
			return err
		}
		outs = append(outs, op)
	}
	if outs[0] != nil {
		x.Stdout = outs[0].w
	}
	if outs[1] != nil {
		x.Stderr = outs[1].w
	}
	var stdin io.WriteCloser
	if in := attach.Stdin(); in != nil {
		if stdin, err = x.StdinPipe(); err != nil {
			closeOutputPipes(outs)
			return err
		}
	}
	if err := x.Start(); err != nil {
		closeOutputPipes(outs)
		return err
	}
	var copies sync.WaitGroup
	for _, op := range outs {
		if op != nil {
			_ = op.w.Close() // the child holds its own copy; EOF comes when every holder closed it
			copies.Add(1)
			go func(op *outputPipe) {
				defer copies.Done()
				op.copy()
			}(op)
		}
	}
	if stdin != nil {
		go func() {
			_, _ = feedStdin(stdin, attach.Stdin())
			_ = stdin.Close() // EOF reaches the process
		}()
	}
	werr := waitExec(ctx, x)
	for _, op := range outs {
		if op != nil {
			op.exited()
		}
	}
	copies.Wait()
	for _, op := range outs {
		if op != nil {
			_ = op.r.Close()
		}
	}
	return werr
}

// outputIdle: after the command exited, how long its output may stay silent before the exec ends
// anyway (a background child that keeps the pipe open must not hold the exec forever).
const outputIdle = 2 * time.Second

// outputPipe copies one output of an exec to its client until EOF; once the command has exited,
// until EOF or outputIdle without a byte. Time spent writing to a slow client never counts.
type outputPipe struct {
	r, w   *os.File
	dst    io.Writer
	isDone atomic.Bool
}

func newOutputPipe(dst io.Writer) (*outputPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &outputPipe{r: r, w: w, dst: dst}, nil
}

func closeOutputPipes(outs []*outputPipe) {
	for _, op := range outs {
		if op != nil {
			_ = op.r.Close()
			_ = op.w.Close()
		}
	}
}

func (op *outputPipe) copy() {
	buf := make([]byte, 32*1024)
	for {
		n, err := op.r.Read(buf)
		if n > 0 {
			if _, werr := op.dst.Write(buf[:n]); werr != nil {
				return
			}
			if op.isDone.Load() {
				_ = op.r.SetReadDeadline(time.Now().Add(outputIdle))
			}
		}
		if err != nil {
			return // EOF, or silent for outputIdle after the exit
		}
	}
}

// exited starts the idle deadline (a Read already waiting sees it too).
func (op *outputPipe) exited() {
	op.isDone.Store(true)
	_ = op.r.SetReadDeadline(time.Now().Add(outputIdle))
}

func (p *provider) execTTY(ctx context.Context, x *exec.Cmd, pr *proc, attach api.AttachIO) error {
	ptmx, tty, err := openSandboxPty(pr.initPid)
	if err != nil {
		return err
	}
	defer ptmx.Close()
	// Apply the client's terminal size before the command starts (kubectl sends it first).
	if rs := attach.Resize(); rs != nil {
		select {
		case sz := <-rs:
			setWinsize(ptmx, sz.Width, sz.Height)
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	x.Stdin, x.Stdout, x.Stderr = tty, tty, tty
	err = x.Start()
	tty.Close()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	if rs := attach.Resize(); rs != nil {
		go func() {
			for {
				select {
				case sz := <-rs:
					setWinsize(ptmx, sz.Width, sz.Height)
				case <-done:
					return
				}
			}
		}()
	}
	if in := attach.Stdin(); in != nil {
		go func() { _, _ = feedStdin(ptmx, in) }()
	}
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		if o := attach.Stdout(); o != nil {
			_, _ = io.Copy(o, ptmx)
		} else {
			_, _ = io.Copy(io.Discard, ptmx)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			// Client gone: hang up the terminal (SIGHUP to the session) and kill the session.
			ptmx.Close()
			killSessionOf(x.Process.Pid)
		case <-done:
		}
	}()
	err = waitExec(ctx, x)
	select {
	case <-outDone:
	case <-time.After(2 * time.Second):
	}
	return err
}

// stdinChunk is what the node holds of an exec's stdin at a time: one read from the stream.
const stdinChunk = 32 * 1024

// feedStdin copies an exec's stdin from the client into the process as the process takes it:
// one chunk read from the stream, then a blocking write into the process's pipe or terminal.
// When the process does not read, the pipe (or the terminal's input queue) fills, the write
// blocks and the node stops reading the stream, so the apiserver and the client are held back
// through TCP, as a kubelet holds them back. Nothing beyond one chunk is buffered here. (A
// terminal in canonical mode discards input past a full line buffer that holds no newline; that
// is the kernel's line discipline, the same under a real kubelet.)
func feedStdin(dst io.Writer, src io.Reader) (int64, error) {
	// Plain Reader/Writer: no ReaderFrom/WriterTo shortcut with buffers of its own.
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, stdinChunk))
}

// waitExec waits for an exec'd process (killing its process group if the client goes away) and
// converts its exit status for the streaming server.
func waitExec(ctx context.Context, x *exec.Cmd) error {
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			// nsenter and the command it forked share nsenter's process group.
			_ = syscall.Kill(-x.Process.Pid, syscall.SIGKILL)
		case <-stop:
		}
	}()
	err := x.Wait()
	close(stop)
	if err == nil {
		return nil
	}
	if _, ok := err.(*exec.ExitError); ok {
		code := exitCodeOf(err)
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return err
}

// ---- attach --------------------------------------------------------------------------------------

// AttachToContainer streams the container's live output to the client and, when the container
// has stdin: true, the client's input to the container (through its pty when tty: true).
func (p *provider) AttachToContainer(ctx context.Context, ns, name, cname string, attach api.AttachIO) error {
	_, c, pr, err := p.runningContainer(ns, name, cname)
	if err != nil {
		return err
	}
	sub := pr.out.subscribe(attach.Stdout(), attach.Stderr())
	defer pr.out.unsubscribe(sub)

	if in := attach.Stdin(); in != nil && pr.stdin != nil {
		go func() {
			_, _ = io.Copy(writerFunc(func(b []byte) (int, error) {
				pr.stdinMu.Lock()
				defer pr.stdinMu.Unlock()
				if pr.stdinClosed {
					return 0, io.ErrClosedPipe
				}
				return pr.stdin.Write(b)
			}), in)
			if c.spec.StdinOnce && !c.spec.TTY {
				pr.stdinMu.Lock()
				pr.stdinClosed = true
				_ = pr.stdin.Close()
				pr.stdinMu.Unlock()
			}
		}()
	}
	if rs := attach.Resize(); rs != nil && pr.ptmx != nil {
		go func() {
			for {
				select {
				case sz := <-rs:
					setWinsize(pr.ptmx, sz.Width, sz.Height)
				case <-pr.done:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	select {
	case <-pr.done:
	case <-ctx.Done():
	}
	return nil
}

const setsidPath = "/usr/bin/setsid"

// withoutPreload is env without LD_PRELOAD (see RunInContainer).
func withoutPreload(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LD_PRELOAD=") {
			out = append(out, kv)
		}
	}
	return out
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// killSessionOf kills the children of parent (nsenter) with their process groups: the command
// nsenter forked runs as a session leader inside the sandbox.
func killSessionOf(parent int) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", parent))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", parent, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// ---- logs ----------------------------------------------------------------------------------------

func (p *provider) GetContainerLogs(ctx context.Context, ns, name, cname string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	rt := p.lookup(ns, name)
	if rt == nil {
		return nil, errdefs.NotFoundf("pod %s/%s not found on this node", ns, name)
	}
	c := rt.container(cname)
	if c == nil {
		return nil, errdefs.NotFoundf("container %q not found in pod %s/%s", cname, ns, name)
	}
	rt.mu.Lock()
	restarts := int(c.status.RestartCount)
	pr := c.proc
	everRan := c.status.ContainerID != ""
	rt.mu.Unlock()

	attempt := restarts
	if opts.Previous {
		attempt = restarts - 1
		pr = nil
		if attempt < 0 {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", cname, name)
		}
	} else if !everRan {
		return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start", cname, name)
	}
	logPath := filepath.Join(rt.dir, "logs", c.spec.Name, strconv.Itoa(attempt)+".log")

	var content []byte
	var gen int
	var off int64
	live := pr != nil && pr.log != nil
	if live {
		content, gen, off = pr.log.snapshot()
	} else {
		b, err := readLogPath(logPath)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		content = b
	}
	// virtual-kubelet cannot tell tailLines=0 from "unset"; 0 means all lines here.
	if opts.Tail > 0 {
		content = tailLines(content, opts.Tail)
	}
	var r io.Reader = bytes.NewReader(content)
	if opts.Follow && live {
		r = &followReader{ctx: ctx, lf: pr.log, done: pr.done, buf: bytes.NewReader(content), gen: gen, off: off}
	}
	if opts.LimitBytes > 0 {
		r = io.LimitReader(r, int64(opts.LimitBytes))
	}
	return io.NopCloser(r), nil
}
