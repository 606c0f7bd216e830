package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Pod addresses. There is no network namespace per pod (no veth, no CNI: loopback is the only
// network the tests may use), but every pod still gets an address of its own: one of the
// loopback aliases 127.x.y.z, which Linux routes to lo without any configuration. It is the
// pod's status.podIP/podIPs, its downward-API status.podIP, where probes and port-forward dial,
// and where its processes listen: the pod-ip shim (shim/pod-ip.c, LD_PRELOAD'ed by the node)
// turns a bind() to the wildcard address (0.0.0.0, or :: on a dual-stack socket) into a bind to
// the pod's address, so two pods may both listen on 0.0.0.0:8080. 127.0.0.1 stays the node's
// (its InternalIP, status.hostIP, the apiserver): a pod reaches the host's services there, and
// hostNetwork pods keep it as their pod IP.
//
// Several nodes (test clusters of parallel specs, other processes) share the host's loopback,
// so an address is claimed machine-wide while a pod holds it: the node keeps a TCP socket bound
// (not listening, no SO_REUSEADDR) to <address>:claimPort, which no other node can bind, and
// closes it when the pod is gone (or the node dies). A pod cannot listen on that port itself.

// defaultPodCIDR: 127.1.0.0/16 stays clear of 127.0.0.1 (the host) and of 127.0.1.1 (Debian's
// /etc/hosts entry for the host name).
const defaultPodCIDR = "127.1.0.0/16"

// podAddrClaimPort is the port of the claim sockets (tcpmux, unused by any pod here).
const podAddrClaimPort = 1

// hostAddr is the node's own address (InternalIP, hostIP, hostNetwork pods' podIP).
const hostAddr = "127.0.0.1"

// addrPool hands out the addresses of a loopback prefix, one per pod, round robin (a released
// address is reused last, as real IPAMs prefer), never the prefix's first and last address.
// Bounded: at most size addresses are ever held.
type addrPool struct {
	prefix netip.Prefix
	first  uint32 // first usable address
	size   uint32 // usable addresses
	claim  func(netip.Addr) (io.Closer, error)

	mu    sync.Mutex
	next  uint32                // offset tried first by the next allocation
	held  map[uint32]io.Closer  // offset → claim
	owner map[uint32]string     // offset → pod (for messages)
	byPod map[string]netip.Addr // pod → address (an allocation is idempotent per pod)
}

// newAddrPool checks that cidr is an IPv4 loopback prefix that leaves 127.0.0.1 alone and holds
// at least one usable address, and at most 65536 (a /16).
func newAddrPool(cidr string, claim func(netip.Addr) (io.Closer, error)) (*addrPool, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("--pod-cidr %q: %w", cidr, err)
	}
	pfx = pfx.Masked()
	loop := netip.MustParsePrefix("127.0.0.0/8")
	if !pfx.Addr().Is4() || !loop.Contains(pfx.Addr()) || pfx.Bits() < 8 {
		return nil, fmt.Errorf("--pod-cidr %s: must be an IPv4 prefix inside 127.0.0.0/8 (pods get loopback aliases; no other network is used)", pfx)
	}
	if pfx.Contains(netip.MustParseAddr(hostAddr)) {
		return nil, fmt.Errorf("--pod-cidr %s: must not contain %s, the node's own address (try %s)", pfx, hostAddr, defaultPodCIDR)
	}
	if pfx.Bits() < 16 {
		return nil, fmt.Errorf("--pod-cidr %s: at most a /16 (65534 pod addresses)", pfx)
	}
	if pfx.Bits() > 30 {
		return nil, fmt.Errorf("--pod-cidr %s: at least a /30 (two pod addresses)", pfx)
	}
	base := binary.BigEndian.Uint32(pfx.Addr().AsSlice())
	total := uint32(1) << (32 - pfx.Bits())
	return &addrPool{
		prefix: pfx, first: base + 1, size: total - 2, claim: claim,
		held: map[uint32]io.Closer{}, owner: map[uint32]string{}, byPod: map[string]netip.Addr{},
	}, nil
}

func (p *addrPool) addr(off uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], p.first+off)
	return netip.AddrFrom4(b)
}

// allocate gives pod an address of its own (the same one again while it holds it).
func (p *addrPool) allocate(pod string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byPod[pod]; ok {
		return a, nil
	}
	taken := 0
	for i := uint32(0); i < p.size; i++ {
		off := (p.next + i) % p.size
		if _, busy := p.held[off]; busy {
			continue
		}
		a := p.addr(off)
		c, err := p.claim(a)
		if err != nil {
			// Held by another node (or something else bound <address>:claimPort).
			taken++
			continue
		}
		p.held[off], p.owner[off], p.byPod[pod] = c, pod, a
		p.next = (off + 1) % p.size
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no free pod address in %s: %d held by this node's pods, %d claimed by other processes (stop other local clusters, or give this node a larger --pod-cidr)", p.prefix, len(p.held), taken)
}

// release gives pod's address back (no-op when it holds none).
func (p *addrPool) release(pod string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.byPod[pod]
	if !ok {
		return
	}
	off := binary.BigEndian.Uint32(a.AsSlice()) - p.first
	if c := p.held[off]; c != nil {
		_ = c.Close()
	}
	delete(p.held, off)
	delete(p.owner, off)
	delete(p.byPod, pod)
}

// inUse is the number of addresses this node's pods hold.
func (p *addrPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

// releaseAll closes every claim (node shutdown).
func (p *addrPool) releaseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for off, c := range p.held {
		_ = c.Close()
		delete(p.held, off)
		delete(p.owner, off)
	}
	clear(p.byPod)
}

type fdCloser int

func (f fdCloser) Close() error { return syscall.Close(int(f)) }

// claimLoopback binds a TCP socket to addr:port without SO_REUSEADDR: while it is open, no other
// socket on this machine can bind that address and port, so no other node hands addr out.
func claimLoopback(port int) func(netip.Addr) (io.Closer, error) {
	return func(addr netip.Addr) (io.Closer, error) {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: addr.As4()}); err != nil {
			_ = syscall.Close(fd)
			return nil, fmt.Errorf("claim %s:%d: %w", addr, port, err)
		}
		return fdCloser(fd), nil
	}
}

// ---- the shim -----------------------------------------------------------------------------

// Where the shim appears inside every sandbox (read-only bind of the host file), and the
// variable that tells it the pod's address.
const (
	podIPShimTarget = "/.periscope-node-pod-ip.so"
	podIPShimEnv    = "PERISCOPE_NODE_POD_IP"
	podIPShimFile   = "periscope-pod-ip.so" // next to the periscope-node binary (e2e/k8s/build.sh)
)

// defaultShimPath is the shim next to the running binary.
func defaultShimPath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Join(filepath.Dir(exe), podIPShimFile)
}

// checkShim fails early when the shim cannot be used (a node built without it).
func checkShim(path string) error {
	if path == "" {
		return errors.New("--pod-ip-shim: no path (and the running binary's directory is unknown)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--pod-ip-shim: %w (e2e/k8s/build.sh builds it next to periscope-node with gcc; run it again, or pass --pod-cidr= to run every pod on 127.0.0.1)", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("--pod-ip-shim %s: not a regular file", path)
	}
	return nil
}

// withPodAddrEnv adds what the shim needs to a container's environment: the pod's address and
// LD_PRELOAD (before any LD_PRELOAD the container sets itself).
func withPodAddrEnv(env []string, podIP string) []string {
	out := make([]string, 0, len(env)+2)
	preload := podIPShimTarget
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case podIPShimEnv:
			continue
		case "LD_PRELOAD":
			if v = strings.TrimSpace(v); v != "" {
				preload += ":" + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, podIPShimEnv+"="+podIP, "LD_PRELOAD="+preload)
}

// podAddrFor is the address a pod gets: the node's for hostNetwork pods or when pods do not get
// their own (pool nil), else one from the pool.
func podAddrFor(pool *addrPool, key string, hostNetwork bool) (string, error) {
	if pool == nil || hostNetwork {
		return hostAddr, nil
	}
	a, err := pool.allocate(key)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// dialAddr joins a pod IP and a port for a dial.
func dialAddr(podIP string, port int) string {
	if podIP == "" {
		podIP = hostAddr
	}
	return net.JoinHostPort(podIP, fmt.Sprint(port))
}
