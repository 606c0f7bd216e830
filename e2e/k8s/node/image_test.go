package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestImageArgvFollowsKubernetesRules(t *testing.T) {
	img := imageConfig{Entrypoint: []string{"node", "main.js"}, Cmd: []string{"--serve"}}
	vars := map[string]string{"PORT": "9000"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cases := []struct {
		cmd, args, want []string
	}{
		{nil, nil, []string{"node", "main.js", "--serve"}},
		{nil, []string{"--port=$(PORT)"}, []string{"node", "main.js", "--port=9000"}},
		{[]string{"sh", "-c"}, []string{"echo $(PORT)"}, []string{"sh", "-c", "echo 9000"}},
		{[]string{"true"}, nil, []string{"true"}},
	}
	for _, c := range cases {
		got := imageArgv(&corev1.Container{Command: c.cmd, Args: c.args}, img, lookup)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("command %v args %v: got %v, want %v", c.cmd, c.args, got, c.want)
		}
	}
	if got := imageArgv(&corev1.Container{}, imageConfig{}, lookup); len(got) != 0 {
		t.Errorf("empty image config: %v", got)
	}
}

func TestImageConfigFileAndMatching(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"Entrypoint":["node"],"Cmd":["a.js"],"Env":["NODE_ENV=production","EMPTY="],"WorkingDir":"/app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m := imageConfigFlag{}
	if err := m.Set("ghcr.io/x/server:0.1.0=" + good); err != nil {
		t.Fatal(err)
	}
	cfg := providerConfig{ImageConfigs: m}
	for _, ref := range []string{"ghcr.io/x/server:0.1.0", "ghcr.io/x/server:9.9", "ghcr.io/x/server@sha256:abc"} {
		got, ok := cfg.imageConfigFor(ref)
		if !ok || got.WorkingDir != "/app" || !reflect.DeepEqual(got.Env, []string{"NODE_ENV=production", "EMPTY="}) {
			t.Errorf("%s: %+v %v", ref, got, ok)
		}
	}
	if _, ok := cfg.imageConfigFor("ghcr.io/x/agent:0.1.0"); ok {
		t.Error("another image matched")
	}
	for name, body := range map[string]string{
		"unknown.json":  `{"Entrypoint":["x"],"User":"1000"}`,
		"relative.json": `{"WorkingDir":"app"}`,
		"env.json":      `{"Env":["NOVALUE"]}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := (imageConfigFlag{}).Set("img=" + p); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if err := (imageConfigFlag{}).Set("no-file"); err == nil || !strings.Contains(err.Error(), "image=file.json") {
		t.Errorf("bad flag: %v", err)
	}
}

func TestImageEnvIsOverriddenByContainerEnv(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "p", "ns"
	c := &corev1.Container{Env: []corev1.EnvVar{{Name: "B", Value: "container"}}}
	env, err := resolveEnvOver(t.Context(), nil, pod, c, "127.0.0.1", 6443, "/", []string{"A=image", "B=image", "PATH=/app/bin"})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"A": "image", "B": "container", "PATH": "/app/bin", "HOME": "/", "KUBERNETES_SERVICE_PORT": "6443"} {
		if got, _ := env.get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
