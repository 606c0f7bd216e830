package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func serverPort(t *testing.T, srv *httptest.Server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestRunProbeHTTPAndTCP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || r.URL.RawQuery != "full=1" || r.Header.Get("X-Probe") != "yes" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	port := serverPort(t, srv)
	c := &corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	httpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/readyz?full=1", Port: intstr.FromString("http"),
		HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}},
	}}}
	ctx := context.Background()
	if err := runProbe(ctx, httpProbe, c, ""); err != nil {
		t.Fatalf("200 by named port: %v", err)
	}
	status.Store(503)
	if err := runProbe(ctx, httpProbe, c, ""); err == nil {
		t.Fatal("503 passed")
	}
	tcp := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}}
	if err := runProbe(ctx, tcp, c, ""); err != nil {
		t.Fatalf("tcp: %v", err)
	}
	srv.Close()
	if err := runProbe(ctx, tcp, c, ""); err == nil {
		t.Fatal("tcp to a closed port passed")
	}
	bad := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("nope")}}}
	if err := runProbe(ctx, bad, c, ""); err == nil {
		t.Fatal("unknown named port passed")
	}
	exec := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	if err := runProbe(ctx, exec, c, ""); !errors.Is(err, errProbeUnsupported) {
		t.Fatalf("exec: %v", err)
	}
}

func TestProbeLoopThresholds(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	c := &corev1.Container{}
	p := &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(int32(serverPort(t, srv)))}},
		PeriodSeconds:    1,
		FailureThreshold: 1,
		SuccessThreshold: 1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []bool
	probeLoop(ctx, p, c, "", func(ok bool, _ error) bool {
		got = append(got, ok)
		if !ok {
			status.Store(200) // the next attempt passes
		}
		return len(got) < 2
	})
	if len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("transitions %v, want [false true]", got)
	}
}

// Probes dial the pod's own address, not the node's.
func TestProbeDialsThePodAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.1.252.9:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	c := &corev1.Container{Name: "app"}
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(int32(serverPort(t, srv)))}}}
	if err := runProbe(context.Background(), p, c, "127.1.252.9"); err != nil {
		t.Fatalf("probe at the pod address: %v", err)
	}
	if err := runProbe(context.Background(), p, c, hostAddr); err == nil {
		t.Fatal("probe at 127.0.0.1 reached a server that listens on the pod address only")
	}
}
