package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

type termMode int

const (
	termNone     termMode = iota
	termDelete            // deleted in the API: report a terminal status, remove state, remove the object
	termReplace           // a new incarnation took the name: remove state quietly
	termShutdown          // node stopping: kill only
)

type condState struct {
	status corev1.ConditionStatus
	at     metav1.Time
}

// container is the runtime state of one (init) container; fields are guarded by podRuntime.mu.
type container struct {
	spec    corev1.Container
	init    bool
	sidecar bool
	status  corev1.ContainerStatus
	proc    *proc
	env     []string // environment of the current attempt (exec reuses it)
	ident   identity
	workDir string
}

// proc is one running sandbox (one container attempt).
type proc struct {
	cmd      *exec.Cmd
	initPid  int    // host pid of the sandbox's pid-1 (bwrap's init)
	pidNS    string // "pid:[inode]" of the sandbox
	started  time.Time
	done     chan struct{}
	exitCode int // valid after done
	ptmx     *os.File
	stdin    io.WriteCloser // nil unless container stdin
	out      *broadcaster
	log      *logFile

	stdinMu     sync.Mutex
	stdinClosed bool
}

type podRuntime struct {
	p   *provider
	key string
	uid types.UID
	dir string
	log *slog.Logger

	ctx        context.Context // cancelled when the pod must stop
	cancel     context.CancelFunc
	killNow    chan struct{} // closed to cut the grace period short
	killOnce   sync.Once
	dirty      chan struct{}
	stopNotify chan struct{}
	runDone    chan struct{}
	notifyMu   sync.Mutex

	mu           sync.Mutex
	pod          *corev1.Pod
	startTime    metav1.Time
	containers   []*container // init containers first, in spec order
	volumes      map[string]string
	volumesReady bool
	initialized  bool
	finalPhase   corev1.PodPhase
	mode         termMode
	grace        time.Duration
	conds        map[corev1.PodConditionType]condState
	podIP        string // "" until assigned (podaddr.go)
}

func newPodRuntime(p *provider, pod *corev1.Pod) *podRuntime {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &podRuntime{
		p:          p,
		key:        podKey(pod.Namespace, pod.Name),
		uid:        pod.UID,
		dir:        filepath.Join(p.cfg.StateDir, "pods", string(pod.UID)),
		log:        p.log.With("pod", podKey(pod.Namespace, pod.Name)),
		ctx:        ctx,
		cancel:     cancel,
		killNow:    make(chan struct{}),
		dirty:      make(chan struct{}, 1),
		stopNotify: make(chan struct{}),
		runDone:    make(chan struct{}),
		pod:        pod.DeepCopy(),
		startTime:  metav1.Now(),
		conds:      map[corev1.PodConditionType]condState{},
	}
	hasInit := len(pod.Spec.InitContainers) > 0
	add := func(spec corev1.Container, init bool) {
		c := &container{spec: spec, init: init}
		c.sidecar = init && spec.RestartPolicy != nil && *spec.RestartPolicy == corev1.ContainerRestartPolicyAlways
		reason := "ContainerCreating"
		if init || hasInit {
			reason = "PodInitializing"
		}
		started := false
		c.status = corev1.ContainerStatus{
			Name:    spec.Name,
			Image:   spec.Image,
			Started: &started,
			State:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
		}
		rt.containers = append(rt.containers, c)
	}
	for _, c := range pod.Spec.InitContainers {
		add(c, true)
	}
	for _, c := range pod.Spec.Containers {
		add(c, false)
	}
	return rt
}

func (rt *podRuntime) markDirty() {
	select {
	case rt.dirty <- struct{}{}:
	default:
	}
}

func (rt *podRuntime) updateMeta(pod *corev1.Pod) {
	rt.mu.Lock()
	rt.pod.ObjectMeta = *pod.ObjectMeta.DeepCopy()
	rt.mu.Unlock()
}

// address is the pod's IP: its own loopback address once assigned, else the node's.
func (rt *podRuntime) address() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.podIP == "" {
		return hostAddr
	}
	return rt.podIP
}

// assignAddress gives the pod its address (before volumes and env, which may show it) and
// records it in the pod copy the downward API reads.
func (rt *podRuntime) assignAddress() error {
	ip, err := podAddrFor(rt.p.cfg.PodAddrs, string(rt.uid), rt.pod.Spec.HostNetwork)
	if err != nil {
		return err
	}
	rt.mu.Lock()
	rt.podIP = ip
	rt.pod.Status.PodIP = ip
	rt.pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	rt.mu.Unlock()
	if ip != hostAddr {
		rt.log.Info("pod address", "ip", ip)
	}
	return nil
}

func (rt *podRuntime) container(name string) *container {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, c := range rt.containers {
		if c.spec.Name == name || (name == "" && !c.init) {
			return c
		}
	}
	return nil
}

// ---- status ------------------------------------------------------------------------------

func (rt *podRuntime) snapshot() *corev1.Pod {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	pod := rt.pod.DeepCopy()
	pod.Status = rt.buildStatusLocked()
	return pod
}

func (rt *podRuntime) condLocked(t corev1.PodConditionType, s corev1.ConditionStatus, reason, msg string) corev1.PodCondition {
	prev, ok := rt.conds[t]
	if !ok || prev.status != s {
		prev = condState{status: s, at: metav1.Now()}
		rt.conds[t] = prev
	}
	return corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: prev.at}
}

func (rt *podRuntime) phaseLocked() corev1.PodPhase {
	if rt.finalPhase != "" {
		return rt.finalPhase
	}
	if !rt.volumesReady || !rt.initialized {
		return corev1.PodPending
	}
	var waiting, running, stopped, succeeded int
	for _, c := range rt.containers {
		if c.init {
			continue
		}
		st := c.status
		switch {
		case st.State.Running != nil:
			running++
		case st.State.Terminated != nil:
			stopped++
			if st.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case st.LastTerminationState.Terminated != nil:
			stopped++
			if st.LastTerminationState.Terminated.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		policy := rt.pod.Spec.RestartPolicy
		switch {
		case policy == corev1.RestartPolicyAlways || policy == "":
			return corev1.PodRunning
		case stopped == succeeded:
			return corev1.PodSucceeded
		case policy == corev1.RestartPolicyNever:
			return corev1.PodFailed
		default:
			return corev1.PodRunning
		}
	}
	return corev1.PodPending
}

func (rt *podRuntime) buildStatusLocked() corev1.PodStatus {
	phase := rt.phaseLocked()
	st := corev1.PodStatus{
		Phase:     phase,
		HostIP:    hostAddr,
		HostIPs:   []corev1.HostIP{{IP: hostAddr}},
		StartTime: &rt.startTime,
		QOSClass:  rt.pod.Status.QOSClass,
	}
	if rt.podIP != "" {
		// Like a kubelet: no pod IP before the sandbox has its network.
		st.PodIP, st.PodIPs = rt.podIP, []corev1.PodIP{{IP: rt.podIP}}
	}
	var notReady []string
	for _, c := range rt.containers {
		cs := *c.status.DeepCopy()
		if c.init {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			notReady = append(notReady, c.spec.Name)
		}
	}
	t, f := corev1.ConditionTrue, corev1.ConditionFalse
	ready := func(ok bool) corev1.ConditionStatus {
		if ok {
			return t
		}
		return f
	}
	var conds []corev1.PodCondition
	conds = append(conds, rt.condLocked(corev1.PodReadyToStartContainers, ready(rt.volumesReady), "", ""))
	initReason := ""
	if !rt.initialized {
		initReason = "ContainersNotInitialized"
	}
	conds = append(conds, rt.condLocked(corev1.PodInitialized, ready(rt.initialized), initReason, ""))
	readyReason, readyMsg := "", ""
	if len(notReady) > 0 {
		readyReason, readyMsg = "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(notReady, " "))
	}
	if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
		readyReason = "PodCompleted"
		if phase == corev1.PodFailed {
			readyReason = "PodFailed"
		}
	}
	conds = append(conds,
		rt.condLocked(corev1.PodReady, ready(len(notReady) == 0), readyReason, readyMsg),
		rt.condLocked(corev1.ContainersReady, ready(len(notReady) == 0), readyReason, readyMsg),
		rt.condLocked(corev1.PodScheduled, t, "", ""),
	)
	st.Conditions = conds
	return st
}

// notifier pushes the latest status to virtual-kubelet whenever the runtime changes.
func (rt *podRuntime) notifier() {
	for {
		select {
		case <-rt.dirty:
		case <-rt.stopNotify:
			return
		}
		rt.notifyNow()
	}
}

func (rt *podRuntime) notifyNow() {
	rt.notifyMu.Lock()
	defer rt.notifyMu.Unlock()
	cb := rt.p.callback()
	if cb == nil || !rt.p.mayNotify(rt) {
		return
	}
	cb(rt.snapshot())
}

// ---- lifecycle ---------------------------------------------------------------------------

func (rt *podRuntime) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (rt *podRuntime) run() {
	go rt.notifier()
	rt.markDirty()
	defer close(rt.runDone)

	if err := os.MkdirAll(filepath.Join(rt.dir, "logs"), 0o755); err != nil {
		rt.log.Error("state dir", "err", err)
	}
	// The pod's address first (volumes and env may show it): retried while every address of
	// the node's range is taken.
	if !rt.retryCreating("no pod address", rt.assignAddress) {
		return
	}
	// Volumes: retried until they can be built (e.g. a Secret created after the pod).
	if !rt.retryCreating("volumes not ready", func() error {
		vols, tokens, err := materialiseVolumes(rt.ctx, rt.p.client, rt.pod, filepath.Join(rt.dir, "volumes"), podFileOwner(rt.pod))
		if err != nil {
			return err
		}
		rt.mu.Lock()
		rt.volumes, rt.volumesReady = vols, true
		rt.mu.Unlock()
		rt.markDirty()
		if len(tokens) > 0 {
			go rt.refreshTokens(tokens)
		}
		return nil
	}) {
		return
	}

	sideCtx, sideCancel := context.WithCancel(rt.ctx)
	var sideWG sync.WaitGroup
	defer func() {
		sideCancel()
		sideWG.Wait()
	}()
	policy := rt.pod.Spec.RestartPolicy

	for _, c := range rt.containers {
		if !c.init {
			continue
		}
		if c.sidecar {
			sideWG.Add(1)
			go func() {
				defer sideWG.Done()
				rt.supervise(sideCtx, c, func(int) bool { return true })
			}()
			if !rt.waitStarted(c) {
				return
			}
			continue
		}
		code, ran := rt.supervise(rt.ctx, c, func(code int) bool { return code != 0 && policy != corev1.RestartPolicyNever })
		if !ran || rt.ctx.Err() != nil {
			return
		}
		if code != 0 {
			rt.mu.Lock()
			rt.finalPhase = corev1.PodFailed
			rt.mu.Unlock()
			rt.markDirty()
			return
		}
	}
	rt.mu.Lock()
	rt.initialized = true
	for _, c := range rt.containers {
		if !c.init && c.status.State.Waiting != nil && c.status.State.Waiting.Reason == "PodInitializing" {
			c.status.State.Waiting.Reason = "ContainerCreating"
		}
	}
	rt.mu.Unlock()
	rt.markDirty()

	var wg sync.WaitGroup
	for _, c := range rt.containers {
		if c.init {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt.supervise(rt.ctx, c, func(code int) bool {
				return policy == corev1.RestartPolicyAlways || policy == "" || (policy == corev1.RestartPolicyOnFailure && code != 0)
			})
		}()
	}
	wg.Wait()
	sideCancel()
	sideWG.Wait()
	if rt.ctx.Err() == nil {
		rt.mu.Lock()
		rt.finalPhase = rt.phaseLocked()
		phase := rt.finalPhase
		rt.mu.Unlock()
		rt.log.Info("pod finished", "phase", phase)
		rt.markDirty()
	}
}

func (rt *podRuntime) waitStarted(c *container) bool {
	for {
		rt.mu.Lock()
		ok := c.status.Started != nil && *c.status.Started
		rt.mu.Unlock()
		if ok {
			return true
		}
		if !rt.sleep(rt.ctx, 50*time.Millisecond) {
			return false
		}
	}
}

// supervise runs a container until restart() says no (or ctx ends). It returns the last exit code.
func (rt *podRuntime) supervise(ctx context.Context, c *container, restart func(int) bool) (int, bool) {
	cfg := rt.p.cfg
	backoff := cfg.RestartBase
	for {
		if ctx.Err() != nil {
			return -1, false
		}
		began := time.Now()
		code, err := rt.runOnce(ctx, c)
		var pe *pullError
		if errors.As(err, &pe) {
			// Like a kubelet: ErrImagePull, then ImagePullBackOff while waiting to try again.
			rt.setWaiting(c, "ErrImagePull", pe.Error())
			rt.event(c, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %s", c.spec.Image, pe.Error()))
			rt.log.Warn("image pull failed", "container", c.spec.Name, "image", c.spec.Image, "err", pe.msg)
			if !rt.sleep(ctx, min(backoff, 2*time.Second)) {
				return -1, false
			}
			rt.setWaiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: %s", c.spec.Image, pe.Error()))
			rt.event(c, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", c.spec.Image))
			if !rt.sleep(ctx, backoff) {
				return -1, false
			}
			backoff = min(backoff*2, cfg.RestartMax)
			continue
		}
		if err != nil {
			// Configuration problem (missing Secret key, ...): stay Waiting and retry, like kubelet.
			rt.mu.Lock()
			c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}}
			rt.mu.Unlock()
			rt.markDirty()
			rt.log.Warn("container config error", "container", c.spec.Name, "err", err)
			if !rt.sleep(ctx, backoff) {
				return -1, false
			}
			backoff = min(backoff*2, cfg.RestartMax)
			continue
		}
		if ctx.Err() != nil || !restart(code) {
			return code, true
		}
		if time.Since(began) > 10*time.Second {
			backoff = cfg.RestartBase
		}
		rt.mu.Lock()
		c.status.LastTerminationState = c.status.State
		c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason:  "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.spec.Name, rt.pod.Name),
		}}
		rt.mu.Unlock()
		rt.markDirty()
		if !rt.sleep(ctx, backoff) {
			return code, true
		}
		backoff = min(backoff*2, cfg.RestartMax)
		rt.mu.Lock()
		c.status.RestartCount++
		rt.mu.Unlock()
	}
}

// event records a pod Event about a container as a kubelet does (kubectl describe lists them).
// Best effort: an Event that cannot be written is only logged.
func (rt *podRuntime) event(c *container, typ, reason, msg string) {
	pod := rt.snapshot()
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Name, now.UnixNano()), Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			FieldPath: fmt.Sprintf("spec.containers{%s}", c.spec.Name),
		},
		Reason: reason, Message: msg, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source:              corev1.EventSource{Component: "kubelet", Host: rt.p.cfg.NodeName},
		ReportingController: "periscope-node", ReportingInstance: rt.p.cfg.NodeName,
	}
	ctx, cancel := context.WithTimeout(rt.ctx, 5*time.Second)
	defer cancel()
	if _, err := rt.p.client.CoreV1().Events(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		rt.log.Debug("event not recorded", "reason", reason, "err", err)
	}
}

func (rt *podRuntime) setWaiting(c *container, reason, msg string) {
	rt.mu.Lock()
	c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	rt.mu.Unlock()
	rt.markDirty()
}

// applyImageUser sets runAsUser/runAsGroup from the image's User when neither the container nor
// the pod sets them (the container spec is this attempt's copy).
func applyImageUser(pod *corev1.Pod, c *corev1.Container, img *ociImage) error {
	uid, gid, ok, err := imageUser(img.Root, img.User)
	if err != nil || !ok {
		return err
	}
	psc := pod.Spec.SecurityContext
	csc := c.SecurityContext
	hasUID := (csc != nil && csc.RunAsUser != nil) || (psc != nil && psc.RunAsUser != nil)
	hasGID := (csc != nil && csc.RunAsGroup != nil) || (psc != nil && psc.RunAsGroup != nil)
	if hasUID && hasGID {
		return nil
	}
	sc := &corev1.SecurityContext{}
	if csc != nil {
		sc = csc.DeepCopy()
	}
	if !hasUID {
		sc.RunAsUser = &uid
	}
	if !hasGID && !hasUID {
		sc.RunAsGroup = &gid
	}
	c.SecurityContext = sc
	return nil
}

func containerArgv(c *corev1.Container, lookup func(string) (string, bool)) []string {
	var argv []string
	for _, a := range c.Command {
		argv = append(argv, expandVars(a, lookup))
	}
	for _, a := range c.Args {
		argv = append(argv, expandVars(a, lookup))
	}
	return argv
}

func (rt *podRuntime) setTerminated(c *container, code int, reason, msg string, started time.Time) {
	now := metav1.Now()
	rt.mu.Lock()
	f := false
	c.proc = nil
	c.status.Ready = false
	c.status.Started = &f
	c.status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode:    int32(code),
		Reason:      reason,
		Message:     msg,
		StartedAt:   metav1.NewTime(started),
		FinishedAt:  now,
		ContainerID: c.status.ContainerID,
	}}
	rt.mu.Unlock()
	rt.markDirty()
}

// runOnce starts one attempt of a container and waits for it. A non-nil error means the
// container could not be configured (it never ran); the exit code is 128 for start errors.
func (rt *podRuntime) runOnce(ctx context.Context, c *container) (int, error) {
	cfg := rt.p.cfg
	rt.mu.Lock()
	pod := rt.pod.DeepCopy()
	restarts := c.status.RestartCount
	volumes := rt.volumes
	rt.mu.Unlock()

	// An image from an OCI archive (or, with --strict-images, one that is not there) is pulled
	// first; the image's user applies when the pod sets none.
	var oci *ociImage
	cspec := c.spec
	if cfg.imageDir(c.spec.Image) == "" && (cfg.StrictImages || rt.p.images.archiveFor(c.spec.Image) != "") {
		var err error
		if oci, err = rt.p.images.pull(c.spec.Image); err != nil {
			return 0, err
		}
		if err := applyImageUser(pod, &cspec, oci); err != nil {
			return 0, err
		}
	}
	ident, err := effectiveIdentity(pod, &cspec)
	if err != nil {
		return 0, err
	}
	img, hasImg := cfg.imageConfigFor(c.spec.Image)
	if oci != nil {
		img, hasImg = oci.Config, true
	}
	env, err := resolveEnvOver(ctx, rt.p.client, pod, &c.spec, cfg.APIHost, cfg.APIPort, ident.home(), img.Env)
	if err != nil {
		return 0, err
	}
	argv := containerArgv(&c.spec, env.get)
	if hasImg {
		argv = imageArgv(&c.spec, img, env.get)
	}
	now := time.Now()
	if len(argv) == 0 {
		msg := "container has neither command nor args; periscope-node cannot run an image entrypoint"
		if hasImg {
			msg = "container has neither command nor args, and its --image-config has no Entrypoint or Cmd"
		}
		rt.setTerminated(c, 128, "StartError", msg, now)
		rt.log.Warn("container cannot start", "container", c.spec.Name, "reason", msg)
		return 128, nil
	}

	var mounts []mountSpec
	for _, m := range c.spec.VolumeMounts {
		src, ok := volumes[m.Name]
		if !ok {
			return 0, fmt.Errorf("volumeMount %q: no such volume", m.Name)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expandVars(m.SubPathExpr, env.get)
		}
		if sub != "" {
			clean := path.Clean(sub)
			if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return 0, fmt.Errorf("volumeMount %q: invalid subPath %q", m.Name, sub)
			}
			src = filepath.Join(src, filepath.FromSlash(clean))
			if _, err := os.Lstat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o777); err != nil {
					return 0, err
				}
			}
		}
		mounts = append(mounts, mountSpec{Target: m.MountPath, Source: src, ReadOnly: m.ReadOnly || readOnlyVolume(pod, m.Name)})
	}

	workDir := c.spec.WorkingDir
	if workDir == "" {
		workDir = img.WorkingDir
	}
	if workDir == "" {
		workDir = "/"
	}
	wrap := ident.setprivArgs(cfg.Setpriv)
	envList := env.list()
	shim := ""
	if ip := pod.Status.PodIP; cfg.PodIPShim != "" && ip != "" && ip != hostAddr {
		// Wildcard binds land on the pod's own address (podaddr.go, shim/pod-ip.c).
		envList, shim = withPodAddrEnv(envList, ip), cfg.PodIPShim
	}
	var ptmx, tty *os.File
	console := ""
	if c.spec.TTY {
		// The terminal is a host pty, bound at /dev/console inside (as runc does); the command
		// becomes a session leader there and takes it as controlling terminal.
		var n int
		if ptmx, tty, n, err = openPty("/dev/ptmx"); err != nil {
			return 0, err
		}
		console = fmt.Sprintf("/dev/pts/%d", n)
		wrap = append([]string{setsidPath, "--ctty", "--wait"}, wrap...)
		if !hasEnv(envList, "TERM") {
			envList = append(envList, "TERM=xterm")
		}
	}
	hostRoot, hostDirs := cfg.HostRoot, cfg.HostDirs
	if oci != nil {
		// The image is the root file system; /etc/hosts and /etc/resolv.conf are the node's, as a
		// kubelet mounts them.
		hostRoot = oci.Root
		if hostDirs, err = imageRootDirs(oci.Root); err != nil {
			closeAll(ptmx, tty)
			return 0, err
		}
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if _, err := os.Stat(f); err == nil {
				mounts = append(mounts, mountSpec{Target: f, Source: f, ReadOnly: true})
			}
		}
	}
	spec := sandboxSpec{
		HostRoot: hostRoot,
		HostDirs: hostDirs,
		Overlay:  cfg.imageDir(c.spec.Image),
		Mounts:   mounts,
		WorkDir:  workDir,
		Hostname: pod.Name,
		Env:      envList,
		Console:  console,
		RootHome: true,
		NewSess:  !c.spec.TTY,
		InfoFD:   3,
		Preload:  shim,
		Argv:     append(wrap, argv...),
	}
	if pathEnv, _ := env.get("PATH"); !findExecutable(spec, argv[0], pathEnv) {
		// A runtime fails the start itself in this case; the container never runs.
		closeAll(ptmx, tty)
		msg := fmt.Sprintf("exec: %q: executable file not found in $PATH", argv[0])
		if strings.Contains(argv[0], "/") {
			msg = fmt.Sprintf("exec: %q: no such file or directory", argv[0])
		}
		rt.setTerminated(c, 128, "StartError", msg, now)
		rt.log.Warn("container cannot start", "container", c.spec.Name, "reason", msg)
		return 128, nil
	}
	args, err := buildBwrapArgs(spec)
	if err != nil {
		closeAll(ptmx, tty)
		return 0, err
	}

	logDir := filepath.Join(rt.dir, "logs", c.spec.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		closeAll(ptmx, tty)
		return 0, err
	}
	lf, err := createLogFile(filepath.Join(logDir, strconv.Itoa(int(restarts))+".log"))
	if err != nil {
		closeAll(ptmx, tty)
		return 0, err
	}
	defer lf.Close()

	pr, err := startSandbox(cfg.Bwrap, args, &c.spec, lf, ptmx, tty)
	if err != nil {
		rt.setTerminated(c, 128, "StartError", err.Error(), now)
		return 128, nil
	}
	if pr.initPid == 0 {
		// bwrap failed before starting the command (its message is in the log).
		<-pr.done
		msg := lastLine(lf)
		rt.setTerminated(c, 128, "StartError", "sandbox setup failed: "+msg, now)
		rt.log.Warn("sandbox setup failed", "container", c.spec.Name, "err", msg)
		return 128, nil
	}

	rt.mu.Lock()
	tr := true
	c.proc = pr
	c.env = envList
	c.ident = ident
	c.workDir = workDir
	c.status.ContainerID = fmt.Sprintf("periscope://%s-%s-%d", shortUID(rt.uid), c.spec.Name, restarts)
	c.status.ImageID = "periscope-node://" + c.spec.Image
	if oci != nil {
		c.status.ImageID = stripTagDigest(c.spec.Image) + "@" + oci.Digest
	}
	c.status.Started = &tr
	c.status.Ready = true
	probed := cfg.Probes && !c.init && (c.spec.StartupProbe != nil || c.spec.ReadinessProbe != nil)
	if probed {
		// Not ready (and, with a startup probe, not started) until the probes pass.
		fl := false
		c.status.Ready = false
		if c.spec.StartupProbe != nil {
			c.status.Started = &fl
		}
	}
	c.status.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(pr.started)}}
	rt.mu.Unlock()
	rt.markDirty()
	rt.log.Info("container started", "container", c.spec.Name, "restart", restarts, "pid", pr.initPid)
	if probed {
		go rt.runProbes(ctx, c, pr)
	}

	select {
	case <-pr.done:
	case <-ctx.Done():
		rt.stopProc(pr)
		<-pr.done
	}
	code := pr.exitCode
	reason, msg := "Completed", ""
	if code != 0 {
		reason = "Error"
		if c.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			b, _, _ := lf.snapshot()
			b = tailLines(b, 80)
			if len(b) > 4096 {
				b = b[len(b)-4096:]
			}
			msg = string(b)
		}
	}
	rt.setTerminated(c, code, reason, msg, pr.started)
	if code != 0 && ctx.Err() == nil {
		rt.log.Info("container exited", "container", c.spec.Name, "code", code, "last", lastLine(lf))
	} else {
		rt.log.Info("container exited", "container", c.spec.Name, "code", code)
	}
	return code, nil
}

func shortUID(u types.UID) string {
	s := string(u)
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func lastLine(lf *logFile) string {
	b, _, _ := lf.snapshot()
	s := strings.TrimSpace(string(tailLines(b, 1)))
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

func readOnlyVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v.Secret != nil || v.ConfigMap != nil || v.Projected != nil || v.DownwardAPI != nil
		}
	}
	return false
}

// startSandbox launches bwrap and waits until it reports the sandbox's init pid.
func closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// startSandbox launches bwrap and waits until it reports the sandbox's init pid. For tty
// containers ptmx/tty are the terminal (taken over by the proc).
func startSandbox(bwrap string, args []string, spec *corev1.Container, lf *logFile, ptmx, tty *os.File) (*proc, error) {
	cmd := exec.Command(bwrap, args...)
	cmd.Env = []string{"PATH=" + defaultPath}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		closeAll(ptmx, tty)
		return nil, err
	}
	defer infoR.Close()
	cmd.ExtraFiles = []*os.File{infoW}
	pr := &proc{cmd: cmd, done: make(chan struct{}), out: newBroadcaster(), log: lf}
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if ptmx != nil {
		pr.ptmx = ptmx
		// No controlling terminal here: "setsid --ctty" inside the sandbox takes it (see runOnce).
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		if spec.Stdin {
			pr.stdin = ptmx
		}
	} else {
		// One pipe for stdout and stderr (os/exec shares it when both are the same writer):
		// the log keeps the process's exact output order. Attach sees both on stdout.
		w := &streamWriter{lf: lf, out: pr.out}
		cmd.Stdout, cmd.Stderr = w, w
		if spec.Stdin {
			w, err := cmd.StdinPipe()
			if err != nil {
				infoW.Close()
				closeAll(ptmx, tty)
				return nil, err
			}
			pr.stdin = w
		}
	}
	cmd.SysProcAttr = attr
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Start()
	infoW.Close()
	if tty != nil {
		tty.Close()
	}
	if err != nil {
		if pr.ptmx != nil {
			pr.ptmx.Close()
		}
		return nil, err
	}
	pr.started = time.Now()

	var outDone chan struct{}
	if pr.ptmx != nil {
		outDone = make(chan struct{})
		go func() {
			defer close(outDone)
			_, _ = io.Copy(&streamWriter{lf: lf, out: pr.out}, pr.ptmx)
		}()
	}
	go func() {
		err := cmd.Wait()
		if outDone != nil {
			select {
			case <-outDone:
			case <-time.After(2 * time.Second):
			}
			pr.ptmx.Close()
		}
		pr.exitCode = exitCodeOf(err)
		close(pr.done)
	}()

	_ = infoR.SetReadDeadline(time.Now().Add(30 * time.Second))
	var info struct {
		ChildPid int `json:"child-pid"`
	}
	if err := json.NewDecoder(infoR).Decode(&info); err == nil && info.ChildPid > 0 {
		pr.initPid = info.ChildPid
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", info.ChildPid)); err == nil {
			pr.pidNS = l
		}
		waitSandboxRoot(pr, 10*time.Second)
	}
	return pr, nil
}

// waitSandboxRoot returns once the sandbox's root is complete (its marker is visible through
// /proc/<pid>/root), the sandbox ended, or the limit passed. bwrap reports the child pid before
// it has built the root (it switches roots twice on the way); an exec that joined the mount
// namespace in between would find neither the command nor /usr.
func waitSandboxRoot(pr *proc, limit time.Duration) {
	marker := fmt.Sprintf("/proc/%d/root%s", pr.initPid, sandboxMarker)
	deadline := time.Now().Add(limit)
	for delay := 200 * time.Microsecond; time.Now().Before(deadline); delay = min(delay*2, 10*time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			return
		}
		select {
		case <-pr.done:
			return
		case <-time.After(delay):
		}
	}
}

func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
		return ee.ExitCode()
	}
	return 128
}

// signalSandbox sends sig to every process of the sandbox's pid namespace.
func signalSandbox(pr *proc, sig syscall.Signal) {
	if pr.pidNS == "" {
		_ = pr.cmd.Process.Signal(sig)
		return
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == pr.pidNS {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// killSandbox SIGKILLs the sandbox's pid-1, which makes the kernel kill every process in it.
func killSandbox(pr *proc) {
	select {
	case <-pr.done:
		return
	default:
	}
	if pr.initPid > 0 {
		_ = syscall.Kill(pr.initPid, syscall.SIGKILL)
	}
	_ = pr.cmd.Process.Kill()
}

func (rt *podRuntime) currentGrace() time.Duration {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.mode == termNone {
		return gracePeriod(rt.pod) // e.g. sidecars stopped after the main containers ended
	}
	return rt.grace
}

// stopProc: SIGTERM to the whole sandbox, then SIGKILL after the grace period.
func (rt *podRuntime) stopProc(pr *proc) {
	grace := rt.currentGrace()
	if grace > 0 {
		signalSandbox(pr, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-pr.done:
			return
		case <-t.C:
		case <-rt.killNow:
		}
	}
	killSandbox(pr)
}

// terminate stops the pod (asynchronously). The first call decides what happens afterwards.
func (rt *podRuntime) terminate(grace time.Duration, mode termMode) {
	rt.mu.Lock()
	if rt.mode != termNone {
		rt.mu.Unlock()
		return
	}
	rt.mode, rt.grace = mode, grace
	rt.mu.Unlock()
	if grace <= 0 {
		rt.killOnce.Do(func() { close(rt.killNow) })
	}
	rt.cancel()
	go rt.reap()
}

func (rt *podRuntime) shortenGrace(grace time.Duration) {
	rt.mu.Lock()
	shorter := grace < rt.grace
	if shorter {
		rt.grace = grace
	}
	rt.mu.Unlock()
	if shorter && grace <= 0 {
		rt.killOnce.Do(func() { close(rt.killNow) })
	}
}

func (rt *podRuntime) killAllNow() {
	rt.killOnce.Do(func() { close(rt.killNow) })
	rt.mu.Lock()
	var prs []*proc
	for _, c := range rt.containers {
		if c.proc != nil {
			prs = append(prs, c.proc)
		}
	}
	rt.mu.Unlock()
	for _, pr := range prs {
		killSandbox(pr)
	}
}

// reap runs once all processes are gone: final status, state cleanup, API object removal.
func (rt *podRuntime) reap() {
	<-rt.runDone
	rt.mu.Lock()
	mode := rt.mode
	allOK := true
	for _, c := range rt.containers {
		if c.init {
			continue
		}
		st := &c.status
		if st.State.Terminated == nil {
			if st.LastTerminationState.Terminated != nil {
				st.State = st.LastTerminationState
			} else {
				st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "The container could not be located when the pod was terminated",
				}}
			}
		}
		st.Ready = false
		if st.State.Terminated.ExitCode != 0 {
			allOK = false
		}
	}
	if rt.finalPhase == "" {
		rt.finalPhase = corev1.PodFailed
		if allOK {
			rt.finalPhase = corev1.PodSucceeded
		}
	}
	pod := rt.pod
	rt.mu.Unlock()

	switch mode {
	case termDelete:
		rt.notifyNow()
		close(rt.stopNotify)
		if err := os.RemoveAll(rt.dir); err != nil {
			rt.log.Warn("removing pod state", "err", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		zero := int64(0)
		err := rt.p.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &rt.uid},
		})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			rt.log.Warn("removing pod object", "err", err)
		}
		rt.log.Info("pod deleted")
	case termReplace:
		close(rt.stopNotify)
		_ = os.RemoveAll(rt.dir)
	default:
		close(rt.stopNotify)
	}
	if rt.p.cfg.PodAddrs != nil {
		// Every process is gone: nothing listens on the address any more.
		rt.p.cfg.PodAddrs.release(string(rt.uid))
	}
	rt.p.forget(rt)
	rt.p.wg.Done()
}

// refreshTokens re-mints projected service-account tokens at 80% of their lifetime.
func (rt *podRuntime) refreshTokens(tokens []tokenFile) {
	for {
		next := tokens[0].refresh
		for _, t := range tokens[1:] {
			if t.refresh.Before(next) {
				next = t.refresh
			}
		}
		if !rt.sleep(rt.ctx, time.Until(next)) {
			return
		}
		rt.mu.Lock()
		pod := rt.pod.DeepCopy()
		rt.mu.Unlock()
		owner := podFileOwner(pod)
		for i := range tokens {
			t := &tokens[i]
			if time.Now().Before(t.refresh) {
				continue
			}
			tok, err := requestToken(rt.ctx, rt.p.client, pod, *t)
			if err != nil {
				rt.log.Warn("token refresh failed", "err", err)
				t.refresh = time.Now().Add(10 * time.Second)
				continue
			}
			if err := writeVolumeFile(filepath.Dir(t.path), filepath.Base(t.path), []byte(tok), t.mode, owner); err != nil {
				rt.log.Warn("token write failed", "err", err)
			}
			t.refresh = time.Now().Add(time.Duration(float64(t.expSec)*0.8) * time.Second)
		}
	}
}

// retryCreating runs try until it succeeds, with a backoff of 1 s doubling to 10 s; meanwhile
// every container waits in ContainerCreating with the error as its message. False: the pod is
// going away (its context ended).
func (rt *podRuntime) retryCreating(what string, try func() error) bool {
	backoff := time.Second
	for {
		err := try()
		if err == nil {
			return true
		}
		if rt.ctx.Err() != nil {
			return false
		}
		rt.log.Warn(what+", retrying", "err", err)
		rt.mu.Lock()
		for _, c := range rt.containers {
			c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: err.Error()}}
		}
		rt.mu.Unlock()
		rt.markDirty()
		if !rt.sleep(rt.ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
