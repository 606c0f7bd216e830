package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Startup and readiness probes (enabled with --probes). Probes go to the pod's address (its own
// loopback address, podaddr.go; or the probe's host) on the container's port. httpGet and tcpSocket are run;
// exec and grpc probes are not implemented and count as passing (the old "running ⇒ ready").
// Liveness probes are not run.

var errProbeUnsupported = errors.New("probe type not implemented by periscope-node (treated as passing)")

func probePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("probe port %q is not a named port of container %q", port.StrVal, c.Name)
}

// runProbe runs one probe attempt against the pod's address podIP ("" = the node's): nil means
// success.
func runProbe(ctx context.Context, p *corev1.Probe, c *corev1.Container, podIP string) error {
	if podIP == "" {
		podIP = hostAddr
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := probePort(g.Port, c)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = podIP
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
		if i := strings.Index(g.Path, "?"); i >= 0 {
			u.Path, u.RawQuery = g.Path[:i], g.Path[i+1:]
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.36")
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe targets either
			DisableKeepAlives: true,
			Proxy:             nil,
		}}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with status %d", res.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := probePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return errProbeUnsupported
}

// probeLoop runs a probe every period and reports each transition of its result, kubelet-style:
// successThreshold successes in a row make it pass, failureThreshold failures make it fail. It
// returns when ctx ends or report returns false.
func probeLoop(ctx context.Context, p *corev1.Probe, c *corev1.Container, podIP string, report func(ok bool, err error) bool) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	succNeed, failNeed := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	if p.FailureThreshold == 0 {
		failNeed = 3
	}
	wait := time.Duration(p.InitialDelaySeconds) * time.Second
	var succ, fail int32
	state := 0 // 0 unknown, 1 passing, -1 failing
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = period
		err := runProbe(ctx, p, c, podIP)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errProbeUnsupported) {
			report(true, err)
			return
		}
		if err == nil {
			succ, fail = succ+1, 0
			if succ >= succNeed && state != 1 {
				state = 1
				if !report(true, nil) {
					return
				}
			}
		} else {
			succ, fail = 0, fail+1
			if fail >= failNeed && state != -1 {
				state = -1
				if !report(false, err) {
					return
				}
			}
		}
	}
}

// runProbes drives a running container's Started and Ready flags from its startup and readiness
// probes until the attempt ends. A startup probe that fails failureThreshold times kills the
// attempt (the restart policy applies), as kubelet does.
func (rt *podRuntime) runProbes(ctx context.Context, c *container, pr *proc) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-pr.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	set := func(started, ready *bool) {
		rt.mu.Lock()
		if c.proc != pr {
			rt.mu.Unlock()
			return
		}
		changed := false
		if started != nil && (c.status.Started == nil || *c.status.Started != *started) {
			v := *started
			c.status.Started, changed = &v, true
		}
		if ready != nil && c.status.Ready != *ready {
			c.status.Ready, changed = *ready, true
		}
		rt.mu.Unlock()
		if changed {
			rt.markDirty()
		}
	}
	yes, no := true, false
	if sp := c.spec.StartupProbe; sp != nil {
		passed := false
		probeLoop(ctx, sp, &c.spec, rt.address(), func(ok bool, err error) bool {
			if ok {
				passed = true
				return false
			}
			rt.log.Info("startup probe failed; killing the container", "container", c.spec.Name, "err", err)
			killSandbox(pr)
			return false
		})
		if !passed || ctx.Err() != nil {
			return
		}
		set(&yes, nil)
	}
	rp := c.spec.ReadinessProbe
	if rp == nil {
		set(nil, &yes)
		return
	}
	// After a startup probe, readiness is probed at once (kubelet's readiness worker has been
	// running meanwhile); the initial delay counts from the container start.
	if c.spec.StartupProbe != nil {
		rp = rp.DeepCopy()
		rp.InitialDelaySeconds = 0
	}
	probeLoop(ctx, rp, &c.spec, rt.address(), func(ok bool, err error) bool {
		if !ok {
			rt.log.Info("readiness probe failed", "container", c.spec.Name, "err", err)
		}
		if ok {
			set(nil, &yes)
		} else {
			set(nil, &no)
		}
		return true
	})
}
