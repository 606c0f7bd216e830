package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"A": "1", "NAME": "pod"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cases := map[string]string{
		"plain":           "plain",
		"$(A)":            "1",
		"x-$(NAME)-$(A)":  "x-pod-1",
		"$$(A)":           "$(A)",
		"$(MISSING)":      "$(MISSING)",
		"$(unterminated":  "$(unterminated",
		"cost $5":         "cost $5",
		"trailing $":      "trailing $",
		"$(A)$(A)$$$(A)":  "11$1",
		"$(NAME):$(NAME)": "pod:pod",
	}
	for in, want := range cases {
		if got := expandVars(in, lookup); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailLines(t *testing.T) {
	b := []byte("a\nb\nc\n")
	for n, want := range map[int]string{-1: "a\nb\nc\n", 1: "c\n", 2: "b\nc\n", 5: "a\nb\nc\n"} {
		if got := string(tailLines(b, n)); got != want {
			t.Errorf("tail %d = %q, want %q", n, got, want)
		}
	}
	if got := string(tailLines([]byte("a\nb"), 1)); got != "b" {
		t.Errorf("partial last line: %q", got)
	}
}

func TestLogFileRotationAndFollow(t *testing.T) {
	old := logSegmentMax
	logSegmentMax = 10
	defer func() { logSegmentMax = old }()

	p := filepath.Join(t.TempDir(), "0.log")
	lf, err := createLogFile(p)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	content, gen, off := lf.snapshot()
	if len(content) != 0 {
		t.Fatalf("new log not empty: %q", content)
	}
	fr := &followReader{ctx: context.Background(), lf: lf, done: done, buf: bytes.NewReader(nil), gen: gen, off: off}

	var got []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, _ = io.ReadAll(fr)
	}()
	for _, l := range []string{"12345\n", "67890\n", "abcde\n", "fghij\n"} {
		if _, err := lf.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	if string(got) != "12345\n67890\nabcde\nfghij\n" {
		t.Errorf("follow got %q", got)
	}
	all, _, _ := lf.snapshot()
	if string(all) != "abcde\nfghij\n" {
		t.Errorf("retained %q (want the last two segments)", all)
	}
	lf.Close()
	if b, _ := readLogPath(p); string(b) != "abcde\nfghij\n" {
		t.Errorf("readLogPath %q", b)
	}
}

func TestBroadcasterDropsSlowSubscriber(t *testing.T) {
	b := newBroadcaster()
	var out, errOut bytes.Buffer
	s := b.subscribe(&out, &errOut)
	b.publish([]byte("o"), false)
	b.publish([]byte("e"), true)
	b.unsubscribe(s)
	if out.String() != "o" || errOut.String() != "e" {
		t.Errorf("out=%q err=%q", out.String(), errOut.String())
	}
	blocked := make(chan struct{})
	s2 := b.subscribe(writerFunc(func(p []byte) (int, error) { <-blocked; return len(p), nil }), nil)
	for i := 0; i < 3000; i++ {
		b.publish([]byte("x"), false) // must never block
	}
	close(blocked)
	b.unsubscribe(s2)
}

func TestWriteVolumeFileModes(t *testing.T) {
	dir := t.TempDir()
	if err := writeVolumeFile(dir, "sub/key", []byte("v"), 0o400, fileOwner{fsGroup: true}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "sub/key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o440 {
		t.Errorf("mode %o, want 440 (fsGroup adds group read)", st.Mode().Perm())
	}
	for _, bad := range []string{"../x", "/abs", "a/../../x", ""} {
		if err := writeVolumeFile(dir, bad, nil, 0o644, fileOwner{}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func TestPodFieldAndResourceValues(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"b": "2", "a": "x\"y"}},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceCPU: resource.MustParse("1500m")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}}}},
	}
	for fp, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "metadata.uid": "u1", "spec.nodeName": "n",
		"status.podIP": "127.0.0.1", "metadata.labels['b']": "2", "metadata.labels": "a=\"x\\\"y\"\nb=\"2\"",
	} {
		if got, err := podFieldValue(pod, fp); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", fp, got, err, want)
		}
	}
	if _, err := podFieldValue(pod, "spec.bogus"); err == nil {
		t.Error("bogus fieldPath accepted")
	}
	for res, want := range map[string]string{"limits.memory": "256", "limits.cpu": "2", "requests.cpu": "1"} {
		div := resource.MustParse("1Mi")
		if !strings.HasPrefix(res, "limits.memory") {
			div = resource.MustParse("1")
		}
		got, err := containerResourceValue(pod, &corev1.ResourceFieldSelector{ContainerName: "c", Resource: res, Divisor: div})
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", res, got, err, want)
		}
	}
}

func TestEffectiveIdentity(t *testing.T) {
	u1000, u0, g3000 := int64(1000), int64(0), int64(3000)
	tr := true
	pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: &u1000, RunAsGroup: &g3000}}}
	c := corev1.Container{}
	id, err := effectiveIdentity(pod, &c)
	if err != nil || id.uid != 1000 || id.gid != 3000 || !id.user {
		t.Fatalf("pod level: %+v %v", id, err)
	}
	want := []string{"/usr/bin/setpriv", "--reuid=1000", "--regid=3000", "--clear-groups",
		"--bounding-set=-all,+" + strings.Join(defaultCaps, ",+"), "--"}
	if got := id.setprivArgs("/usr/bin/setpriv"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("setpriv args %v", got)
	}
	c.SecurityContext = &corev1.SecurityContext{RunAsUser: &u0}
	if id, _ := effectiveIdentity(pod, &c); id.uid != 0 || id.home() != "/root" {
		t.Errorf("container override: %+v", id)
	}
	c.SecurityContext.RunAsNonRoot = &tr
	if _, err := effectiveIdentity(pod, &c); err == nil {
		t.Error("runAsNonRoot with uid 0 accepted")
	}
	if id, _ := effectiveIdentity(&corev1.Pod{}, &corev1.Container{}); id.user || len(id.setprivArgs("s")) != 3 {
		t.Errorf("no securityContext: only the default bounding set: %+v %v", id, id.setprivArgs("s"))
	}
	priv := true
	c = corev1.Container{SecurityContext: &corev1.SecurityContext{Privileged: &priv}}
	if id, _ := effectiveIdentity(&corev1.Pod{}, &c); id.setprivArgs("s") != nil {
		t.Errorf("privileged root needs no wrapper: %v", id.setprivArgs("s"))
	}
	c = corev1.Container{SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
		Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN", "CAP_BOGUS"}}}}
	if id, _ := effectiveIdentity(&corev1.Pod{}, &c); strings.Join(id.setprivArgs("s"), " ") != "s --bounding-set=-all,+net_admin --" {
		t.Errorf("drop ALL add NET_ADMIN: %v", id.setprivArgs("s"))
	}
}

func TestConciseHandler(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(&conciseHandler{base: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	l.With("error", errors.New("boom\nstack line 1\nstack line 2")).Error("failed")
	l.Error("x", "error", errors.New("Operation cannot be fulfilled: the object has been modified"))
	l.Warn("skipping sync of pod \"a/b\" in \"Succeeded\" phase")
	out := buf.String()
	if !strings.Contains(out, "error=boom") || strings.Contains(out, "stack line") {
		t.Errorf("multi-line error not cut: %q", out)
	}
	if strings.Contains(out, "object has been modified") || strings.Contains(out, "skipping sync") {
		t.Errorf("noise not demoted: %q", out)
	}
}
