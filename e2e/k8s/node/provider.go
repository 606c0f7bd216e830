package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

type providerConfig struct {
	NodeName string
	StateDir string
	ImageMap map[string]string
	// ImageConfigs: image reference → its Entrypoint/Cmd/Env/WorkingDir (--image-config).
	ImageConfigs map[string]imageConfig
	// ImageArchives: image reference → OCI archive (--image-archive); pods of these images run
	// from the unpacked image. StrictImages: an image that is neither mapped nor archived fails
	// to pull (ErrImagePull) instead of running on the host's directories.
	ImageArchives map[string]string
	StrictImages  bool
	// Probes: run startup and readiness probes (httpGet, tcpSocket) instead of "running ⇒ ready".
	Probes      bool
	APIHost     string
	APIPort     int
	Bwrap       string
	Nsenter     string
	Setpriv     string
	HostDirs    []string
	HostRoot    string
	RestartBase time.Duration // first crash-loop back-off
	RestartMax  time.Duration // back-off cap
	// PodAddrs: each pod's own loopback address (podaddr.go); nil: every pod on 127.0.0.1.
	// PodIPShim: host path of the shim that makes wildcard binds land on that address.
	PodAddrs  *addrPool
	PodIPShim string
}

// imageDir returns the image-map directory for an image reference: exact match first, then the
// reference without tag/digest (docker.io/library/ prefixes ignored).
func (c providerConfig) imageDir(image string) string {
	if d, ok := c.ImageMap[image]; ok {
		return d
	}
	want := normalizeImageName(stripTagDigest(image))
	keys := make([]string, 0, len(c.ImageMap))
	for k := range c.ImageMap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if normalizeImageName(k) == want {
			return c.ImageMap[k]
		}
	}
	return ""
}

func stripTagDigest(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		ref = ref[:i]
	}
	return ref
}

func normalizeImageName(n string) string {
	n = strings.TrimPrefix(n, "docker.io/")
	n = strings.TrimPrefix(n, "index.docker.io/")
	return strings.TrimPrefix(n, "library/")
}

// provider implements virtual-kubelet's nodeutil.Provider and node.PodNotifier.
type provider struct {
	cfg    providerConfig
	client kubernetes.Interface
	log    *slog.Logger
	images *imageStore // OCI archives, unpacked on first use

	mu       sync.Mutex
	pods     map[string]*podRuntime    // namespace/name -> current incarnation
	dying    map[types.UID]*podRuntime // being torn down after deletion
	notifyCb func(*corev1.Pod)
	stopping bool
	wg       sync.WaitGroup // one per pod runtime until its teardown finished
}

func newProvider(cfg providerConfig, client kubernetes.Interface, logger *slog.Logger) *provider {
	return &provider{
		cfg:    cfg,
		client: client,
		log:    logger,
		images: newImageStore(filepath.Join(cfg.StateDir, "images"), cfg.ImageArchives),
		pods:   map[string]*podRuntime{},
		dying:  map[types.UID]*podRuntime{},
	}
}

func podKey(ns, name string) string { return ns + "/" + name }

func (p *provider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notifyCb = cb
	p.mu.Unlock()
}

func (p *provider) callback() func(*corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil
	}
	return p.notifyCb
}

// mayNotify: a runtime only reports while no newer incarnation of the same pod name exists.
func (p *provider) mayNotify(rt *podRuntime) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.pods[rt.key]
	return cur == rt || cur == nil
}

func (p *provider) CreatePod(_ context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return fmt.Errorf("node is shutting down")
	}
	old := p.pods[key]
	if old != nil && old.uid == pod.UID {
		p.mu.Unlock()
		old.updateMeta(pod)
		return nil
	}
	if old != nil {
		delete(p.pods, key)
		p.dying[old.uid] = old
	}
	rt := newPodRuntime(p, pod)
	p.pods[key] = rt
	p.wg.Add(1)
	p.mu.Unlock()

	if old != nil {
		old.terminate(0, termReplace)
	}
	p.log.Info("starting pod", "pod", key, "uid", pod.UID)
	go rt.run()
	return nil
}

func (p *provider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	rt := p.pods[podKey(pod.Namespace, pod.Name)]
	p.mu.Unlock()
	if rt != nil && rt.uid == pod.UID {
		rt.updateMeta(pod)
	}
	return nil
}

func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

func (p *provider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	p.mu.Lock()
	rt := p.pods[key]
	if rt == nil || (pod.UID != "" && rt.uid != pod.UID) {
		d := p.dying[pod.UID]
		p.mu.Unlock()
		if d != nil {
			d.shortenGrace(gracePeriod(pod))
			return nil
		}
		return errdefs.NotFoundf("pod %s (uid %s) not found", key, pod.UID)
	}
	delete(p.pods, key)
	p.dying[rt.uid] = rt
	p.mu.Unlock()
	p.log.Info("deleting pod", "pod", key, "grace", gracePeriod(pod))
	rt.terminate(gracePeriod(pod), termDelete)
	return nil
}

func (p *provider) forget(rt *podRuntime) {
	p.mu.Lock()
	delete(p.dying, rt.uid)
	if p.pods[rt.key] == rt {
		delete(p.pods, rt.key)
	}
	p.mu.Unlock()
}

func (p *provider) lookup(ns, name string) *podRuntime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[podKey(ns, name)]
}

func (p *provider) GetPod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	rt := p.lookup(ns, name)
	if rt == nil {
		return nil, errdefs.NotFoundf("pod %s/%s not found", ns, name)
	}
	return rt.snapshot(), nil
}

func (p *provider) GetPodStatus(ctx context.Context, ns, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	rts := make([]*podRuntime, 0, len(p.pods))
	for _, rt := range p.pods {
		rts = append(rts, rt)
	}
	p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(rts))
	for _, rt := range rts {
		out = append(out, rt.snapshot())
	}
	return out, nil
}

func (p *provider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	s := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.cfg.NodeName, StartTime: metav1.Now()}}
	pods, _ := p.GetPods(context.Background())
	for _, pod := range pods {
		s.Pods = append(s.Pods, statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
			StartTime: metav1.Now(),
		})
	}
	return s, nil
}

func (p *provider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return []*dto.MetricFamily{}, nil
}

// PortForward: a plain loopback dial to the pod's address (its own, or 127.0.0.1 for
// hostNetwork pods and when pods share the node's address).
func (p *provider) PortForward(ctx context.Context, ns, name string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	rt := p.lookup(ns, name)
	if rt == nil {
		return errdefs.NotFoundf("pod %s/%s not found", ns, name)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", dialAddr(rt.address(), int(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		errc <- err
	}()
	select {
	case <-ctx.Done():
	case <-errc:
	}
	return nil
}

// shutdown stops every pod process: SIGTERM, up to grace, then SIGKILL. It waits for them.
func (p *provider) shutdown(grace time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopping = true
	var all []*podRuntime
	for _, rt := range p.pods {
		all = append(all, rt)
	}
	for _, rt := range p.dying {
		all = append(all, rt)
	}
	p.mu.Unlock()
	if len(all) > 0 {
		p.log.Info("stopping all pods", "count", len(all))
	}
	for _, rt := range all {
		rt.terminate(grace, termShutdown)
		rt.shortenGrace(grace)
	}
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace + 5*time.Second):
		p.log.Warn("pods did not stop in time; killing sandboxes")
		for _, rt := range all {
			rt.killAllNow()
		}
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	}
	if p.cfg.PodAddrs != nil {
		p.cfg.PodAddrs.releaseAll()
	}
}
