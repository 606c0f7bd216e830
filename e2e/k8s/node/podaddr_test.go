package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

type fakeClaim struct {
	taken  map[netip.Addr]bool // held by "other processes"
	closed []netip.Addr
}

type fakeCloser struct {
	f *fakeClaim
	a netip.Addr
}

func (c fakeCloser) Close() error { c.f.closed = append(c.f.closed, c.a); return nil }

func (f *fakeClaim) claim(a netip.Addr) (io.Closer, error) {
	if f.taken[a] {
		return nil, errors.New("address in use")
	}
	return fakeCloser{f, a}, nil
}

func TestAddrPoolRejectsBadRanges(t *testing.T) {
	f := &fakeClaim{}
	for cidr, want := range map[string]string{
		"10.0.0.0/24":  "inside 127.0.0.0/8",
		"127.0.0.0/24": "must not contain 127.0.0.1",
		"127.0.0.0/8":  "must not contain 127.0.0.1",
		"127.2.0.0/15": "at most a /16",
		"127.1.0.0/31": "at least a /30",
		"::1/128":      "inside 127.0.0.0/8",
		"nonsense":     "--pod-cidr",
	} {
		if _, err := newAddrPool(cidr, f.claim); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", cidr, err, want)
		}
	}
	p, err := newAddrPool(defaultPodCIDR, f.claim)
	if err != nil {
		t.Fatal(err)
	}
	if p.size != 65534 {
		t.Fatalf("size %d", p.size)
	}
}

func TestAddrPoolAllocatesReleasesAndIsBounded(t *testing.T) {
	f := &fakeClaim{taken: map[netip.Addr]bool{netip.MustParseAddr("127.1.0.2"): true}}
	// /29: 127.1.0.0 (network) and .7 (broadcast) are never handed out: 6 addresses.
	p, err := newAddrPool("127.1.0.0/29", f.claim)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range 5 {
		a, err := p.allocate(fmt.Sprintf("pod-%d", i))
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		got = append(got, a.String())
	}
	// .2 is claimed by another node: skipped.
	if want := []string{"127.1.0.1", "127.1.0.3", "127.1.0.4", "127.1.0.5", "127.1.0.6"}; !slices.Equal(got, want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	// The same pod asking again keeps its address.
	if a, _ := p.allocate("pod-3"); a.String() != "127.1.0.5" {
		t.Fatalf("pod-3 again: %s", a)
	}
	// Full: the error says how many are held here and elsewhere.
	if _, err := p.allocate("pod-x"); err == nil || !strings.Contains(err.Error(), "5 held by this node's pods, 1 claimed by other processes") {
		t.Fatalf("full pool: %v", err)
	}
	if p.inUse() != 5 {
		t.Fatalf("in use %d", p.inUse())
	}
	p.release("pod-1")
	p.release("pod-1") // twice: no-op
	p.release("never")
	if !slices.Equal(f.closed, []netip.Addr{netip.MustParseAddr("127.1.0.3")}) {
		t.Fatalf("closed claims %v", f.closed)
	}
	// Round robin: the next allocation continues after the last one and wraps to the freed one.
	if a, err := p.allocate("pod-y"); err != nil || a.String() != "127.1.0.3" {
		t.Fatalf("after release: %s %v", a, err)
	}
	p.release("pod-4")
	p.release("pod-0")
	if a, _ := p.allocate("pod-z"); a.String() != "127.1.0.6" {
		t.Fatalf("round robin: %s, want 127.1.0.6 (after .3, the first free)", a)
	}
	p.releaseAll()
	if p.inUse() != 0 || len(f.closed) != 1+2+4 {
		t.Fatalf("releaseAll: in use %d, closed %v", p.inUse(), f.closed)
	}
}

// Two pools (two nodes) over the same range never hand out the same address: the claim
// sockets are real binds on the loopback aliases.
func TestAddrPoolClaimsAreMachineWide(t *testing.T) {
	port := freeTCPPort(t)
	a, err := newAddrPool("127.1.254.0/29", claimLoopback(port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newAddrPool("127.1.254.0/29", claimLoopback(port))
	defer a.releaseAll()
	defer b.releaseAll()
	seen := map[netip.Addr]string{}
	for i := range 3 {
		for name, p := range map[string]*addrPool{"a": a, "b": b} {
			addr, err := p.allocate(fmt.Sprint(i))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if other, dup := seen[addr]; dup {
				t.Fatalf("%s got %s, already %s's", name, addr, other)
			}
			seen[addr] = name
		}
	}
	if _, err := a.allocate("more"); err == nil || !strings.Contains(err.Error(), "3 held by this node's pods, 3 claimed by other processes") {
		t.Fatalf("shared range full: %v", err)
	}
	// Released by b: a may take it now.
	b.release("0")
	if _, err := a.allocate("more"); err != nil {
		t.Fatalf("after b released one: %v", err)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestWithPodAddrEnv(t *testing.T) {
	got := withPodAddrEnv([]string{"A=1", "LD_PRELOAD=/x.so", podIPShimEnv + "=1.2.3.4", "B=2"}, "127.1.0.9")
	want := []string{"A=1", "B=2", podIPShimEnv + "=127.1.0.9", "LD_PRELOAD=" + podIPShimTarget + ":/x.so"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := withPodAddrEnv(nil, "127.1.0.9"); got[1] != "LD_PRELOAD="+podIPShimTarget {
		t.Fatalf("no LD_PRELOAD before: %v", got)
	}
}

func TestPodAddrFor(t *testing.T) {
	f := &fakeClaim{}
	p, _ := newAddrPool("127.1.0.0/30", f.claim)
	if a, _ := podAddrFor(p, "u1", true); a != hostAddr {
		t.Fatalf("hostNetwork: %s", a)
	}
	if a, _ := podAddrFor(nil, "u1", false); a != hostAddr {
		t.Fatalf("no pool: %s", a)
	}
	if a, _ := podAddrFor(p, "u1", false); a != "127.1.0.1" {
		t.Fatalf("pool: %s", a)
	}
	// The downward API shows it.
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: "127.1.0.1"}}
	if v, _ := podFieldValue(pod, "status.podIP"); v != "127.1.0.1" {
		t.Fatalf("status.podIP %q", v)
	}
	if v, _ := podFieldValue(pod, "status.hostIP"); v != hostAddr {
		t.Fatalf("status.hostIP %q", v)
	}
}

func TestSandboxBindsTheShim(t *testing.T) {
	args, err := buildBwrapArgs(sandboxSpec{HostRoot: t.TempDir(), Preload: "/cache/periscope-pod-ip.so", Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "--ro-bind /cache/periscope-pod-ip.so "+podIPShimTarget+" --dir "+sandboxMarker) {
		t.Fatalf("shim bind missing or after the marker: %s", joined)
	}
}

// The shim itself (built with gcc as build.sh does): a dynamically linked program's wildcard
// binds land on the pod's address, explicit ones do not move, and a static Go program (which
// makes the system call itself) is not affected.
func TestPodIPShim(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed (scripts/setup.sh installs it)")
	}
	so := filepath.Join(t.TempDir(), podIPShimFile)
	if out, err := exec.Command(gcc, "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-o", so, "shim/pod-ip.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	env := append(os.Environ(), podIPShimEnv+"=127.1.253.7", "LD_PRELOAD="+so)

	if py, err := exec.LookPath("python3"); err == nil {
		script := `
import socket
def bound(family, addr, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((addr, 0))
    return s.getsockname()[0]
print(bound(socket.AF_INET, "0.0.0.0"), bound(socket.AF_INET, "127.0.0.1"), bound(socket.AF_INET6, "::", 0), bound(socket.AF_INET6, "::", 1))
`
		cmd := exec.Command(py, "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python3: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "127.1.253.7 127.0.0.1 ::ffff:127.1.253.7 ::"; got != want {
			t.Fatalf("python3 binds: %q, want %q", got, want)
		}
	}
	if node, err := exec.LookPath("node"); err == nil {
		// Node's listen() without a host binds a dual-stack :: socket.
		cmd := exec.Command(node, "-e", `const s=require('net').createServer().listen(0,()=>{console.log(s.address().address);s.close()})`)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "::ffff:127.1.253.7" {
			t.Fatalf("node listen(0): %q", got)
		}
	}
	// This test binary as a Go program: its bind is a raw system call.
	cmd := exec.Command(os.Args[0], "-test.run=^TestShimHelperGoBind$")
	cmd.Env = append(env, "PERISCOPE_SHIM_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Go helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "bound 0.0.0.0:") {
		t.Fatalf("Go program's wildcard bind moved: %s", out)
	}
}

func TestShimHelperGoBind(t *testing.T) {
	if os.Getenv("PERISCOPE_SHIM_HELPER") != "1" {
		t.Skip("helper of TestPodIPShim")
	}
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Printf("bound %s\n", l.Addr())
}
