// Command periscope-node is a process-backed Kubernetes node for end-to-end tests.
//
// It registers a Node through the virtual-kubelet library, binds unscheduled pods to itself
// (there is no scheduler in the test control plane) and runs every container as a local process
// inside a bubblewrap sandbox. See README.md for the flags, the design and the limits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	vkslog "github.com/virtual-kubelet/virtual-kubelet/log/slog"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// imageMapFlag collects repeatable --image-map image=dir values.
type imageMapFlag map[string]string

func (m imageMapFlag) String() string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (m imageMapFlag) Set(v string) error {
	img, dir, ok := strings.Cut(v, "=")
	if !ok || img == "" || dir == "" {
		return fmt.Errorf("want image=dir, got %q", v)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", abs)
	}
	m[img] = abs
	return nil
}

// imageArchiveFlag collects repeatable --image-archive image=file.tar values.
type imageArchiveFlag map[string]string

func (m imageArchiveFlag) String() string { return imageMapFlag(m).String() }

func (m imageArchiveFlag) Set(v string) error {
	img, file, ok := strings.Cut(v, "=")
	if !ok || img == "" || file == "" {
		return fmt.Errorf("want image=file.tar, got %q", v)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("%w (build the image archives with `npm run images`)", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", abs)
	}
	m[img] = abs
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "periscope-node: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	imageMap := imageMapFlag{}
	imageConfigs := imageConfigFlag{}
	imageArchives := imageArchiveFlag{}
	var (
		kubeconfig     = flag.String("kubeconfig", "", "kubeconfig of an admin identity (system:masters client cert) (required)")
		nodeName       = flag.String("node-name", "periscope-node", "name of the Node object")
		listen         = flag.String("listen", "127.0.0.1:10250", "host:port of the kubelet API (TLS)")
		tlsCert        = flag.String("tls-cert", "", "kubelet serving certificate (PEM) (required)")
		tlsKey         = flag.String("tls-key", "", "kubelet serving key (PEM) (required)")
		stateDir       = flag.String("state-dir", "", "per-run directory for pod volumes and logs (required)")
		apiHost        = flag.String("apiserver-host", "", "value of KUBERNETES_SERVICE_HOST inside containers (required)")
		apiPort        = flag.Int("apiserver-port", 0, "value of KUBERNETES_SERVICE_PORT inside containers (required)")
		bwrapPath      = flag.String("bwrap", "bwrap", "path of the bubblewrap binary")
		hostDirs       = flag.String("host-dirs", strings.Join(defaultHostDirs, ","), "top-level host directories bound read-only into every sandbox")
		hostnameAddr   = flag.String("node-hostname", "localhost", "value of the Node's Hostname address (must resolve to the listen address if the apiserver prefers Hostname)")
		kubeletVersion = flag.String("kubelet-version", "v1.36.3", "status.nodeInfo.kubeletVersion to report")
		verbose        = flag.Bool("v", false, "verbose logging (also virtual-kubelet's info/debug messages)")
		probes         = flag.Bool("probes", false, "run startup and readiness probes (httpGet, tcpSocket): a container is Ready when they pass, not as soon as it runs")
		strictImages   = flag.Bool("strict-images", false, "an image that is neither --image-map'ped nor --image-archive'd fails like an unknown image on a real node (ErrImagePull) instead of running host programs")
		workloads      = flag.Bool("workload-controllers", false, "run Deployments: create their ReplicaSets and Pods, report their status, delete them with their owner")
		podCIDR        = flag.String("pod-cidr", defaultPodCIDR, "loopback prefix (inside 127.0.0.0/8, /16 to /30) whose addresses are the pods' own IPs, one per pod; empty: every pod uses 127.0.0.1")
		podIPShim      = flag.String("pod-ip-shim", "", "the LD_PRELOAD shim that makes pods' wildcard binds land on their address (default: "+podIPShimFile+" next to this binary)")
	)
	flag.Var(imageMap, "image-map", "image=dir: overlay every file under dir into containers of that image (repeatable)")
	flag.Var(imageArchives, "image-archive", "image=file.tar: run containers of that image from this OCI image archive (oci-archive, as `npm run images` writes it) (repeatable)")
	flag.Var(imageConfigs, "image-config", "image=file.json: the image's Entrypoint, Cmd, Env and WorkingDir (OCI config keys) for containers of that image (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	level := slog.LevelInfo
	vkLevel := slog.LevelWarn
	if *verbose {
		level, vkLevel = slog.LevelDebug, slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	log.L = vkslog.FromSlog(slog.New(&conciseHandler{base: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: vkLevel})}).With("src", "vk"))
	if !*verbose {
		// client-go's klog: errors only, to keep stderr concise.
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("v", "0")
		_ = fs.Set("stderrthreshold", "ERROR")
	}

	var missing []string
	for name, v := range map[string]string{"kubeconfig": *kubeconfig, "tls-cert": *tlsCert, "tls-key": *tlsKey,
		"state-dir": *stateDir, "apiserver-host": *apiHost} {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if *apiPort <= 0 {
		missing = append(missing, "--apiserver-port")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required flags: %s", strings.Join(missing, " "))
	}
	_, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	listenPort, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--listen port: %w", err)
	}

	bwrap, err := exec.LookPath(*bwrapPath)
	if err != nil {
		return fmt.Errorf("bwrap: %w (install Debian package bubblewrap)", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux): %w", err)
	}
	// setpriv runs inside the sandbox, whose /usr is the host's.
	const setpriv = "/usr/bin/setpriv"
	if _, err := os.Stat(setpriv); err != nil {
		return fmt.Errorf("setpriv (util-linux): %w", err)
	}
	// Sandboxes need namespaces: fail now rather than on the first pod.
	if out, err := exec.Command(bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--proc", "/proc", "--dev", "/dev", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("bwrap self-test failed: %v: %s", err, strings.TrimSpace(string(out)))
	}

	var pool *addrPool
	shim := ""
	if *podCIDR != "" {
		if pool, err = newAddrPool(*podCIDR, claimLoopback(podAddrClaimPort)); err != nil {
			return err
		}
		shim = *podIPShim
		if shim == "" {
			shim = defaultShimPath()
		}
		if err := checkShim(shim); err != nil {
			return err
		}
	}

	absState, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(absState, "pods"), 0o755); err != nil {
		return err
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restCfg.QPS, restCfg.Burst = 100, 200
	restCfg.UserAgent = "periscope-node"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}

	var dirs []string
	for _, d := range strings.Split(*hostDirs, ",") {
		if d = strings.Trim(strings.TrimSpace(d), "/"); d != "" {
			dirs = append(dirs, d)
		}
	}

	cfg := providerConfig{
		NodeName:      *nodeName,
		StateDir:      absState,
		ImageMap:      imageMap,
		ImageConfigs:  imageConfigs,
		ImageArchives: imageArchives,
		StrictImages:  *strictImages,
		Probes:        *probes,
		APIHost:       *apiHost,
		APIPort:       *apiPort,
		Bwrap:         bwrap,
		Nsenter:       nsenter,
		Setpriv:       setpriv,
		HostDirs:      dirs,
		HostRoot:      "/",
		RestartBase:   time.Second,
		RestartMax:    20 * time.Second,
		PodAddrs:      pool,
		PodIPShim:     shim,
	}

	// nodeutil.NewNode builds a default client from $KUBECONFIG before our WithClient option
	// replaces it; point it at the same file so it does not warn about in-cluster config.
	_ = os.Setenv("KUBECONFIG", *kubeconfig)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	nodeCtx, cancelNode := context.WithCancel(ctx)
	defer cancelNode()

	var prov *provider
	mux := http.NewServeMux()
	n, err := nodeutil.NewNode(*nodeName,
		func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
			fillNodeSpec(pc.Node, *nodeName, *hostnameAddr, listenPort, *kubeletVersion, absState)
			prov = newProvider(cfg, client, logger)
			return prov, nil, nil
		},
		nodeutil.WithClient(client),
		func(c *nodeutil.NodeConfig) error {
			c.HTTPListenAddr = *listen
			c.Handler = nodeutil.WithAuth(nodeutil.NoAuth(), mux)
			c.NumWorkers = 4
			// Env (valueFrom, envFrom, $(VAR)) is resolved by us at container start: VK's resolver
			// rejects status.podIP/hostIP and drops resourceFieldRef.
			c.SkipDownwardAPIResolution = true
			c.StreamIdleTimeout = 4 * time.Hour
			c.StreamCreationTimeout = 30 * time.Second
			return nil
		},
		nodeutil.WithTLSConfig(nodeutil.WithKeyPairFromPath(*tlsCert, *tlsKey)),
		nodeutil.AttachProviderRoutes(mux),
	)
	if err != nil {
		return err
	}

	// Pod processes must never outlive the node, whatever makes it return.
	defer prov.shutdown(2 * time.Second)

	nodeErr := make(chan error, 1)
	go func() { nodeErr <- n.Run(nodeCtx) }()

	logger.Info("starting", "node", *nodeName, "listen", *listen, "stateDir", absState, "images", imageMap.String(), "podCIDR", *podCIDR)
	if err := n.WaitReady(ctx, 2*time.Minute); err != nil {
		cancelNode()
		select {
		case e := <-nodeErr:
			if e != nil {
				return fmt.Errorf("node: %w", e)
			}
		case <-time.After(5 * time.Second):
		}
		return fmt.Errorf("node not ready: %w", err)
	}
	logger.Info("node ready", "node", *nodeName)
	go removeNotReadyTaint(nodeCtx, client, *nodeName, logger)
	go runBinder(nodeCtx, client, *nodeName, pcNodeLabels(*nodeName), logger)
	caPEM := restCfg.CAData
	if len(caPEM) == 0 && restCfg.CAFile != "" {
		if caPEM, err = os.ReadFile(restCfg.CAFile); err != nil {
			return fmt.Errorf("cluster CA for kube-root-ca.crt: %w", err)
		}
	}
	go runNamespaceInitializer(nodeCtx, client, caPEM, logger)
	go runClusterRoleAggregator(nodeCtx, client, logger)
	if *workloads {
		go runWorkloadControllers(nodeCtx, client, logger)
	}

	select {
	case <-ctx.Done():
		logger.Info("signal received, stopping")
		cancelNode()
		select {
		case <-nodeErr:
		case <-time.After(5 * time.Second):
		}
		return nil
	case err := <-nodeErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("node stopped: %w", err)
		}
		return nil
	}
}
