package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// imageConfig is the part of an OCI image configuration ("config" object of
// application/vnd.oci.image.config.v1+json, as `docker inspect` shows it) that periscope-node
// applies to a container of a mapped image: the entrypoint and default arguments, the image's
// environment and its working directory. It is read from the file given with --image-config.
type imageConfig struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"` // KEY=VALUE
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

// imageConfigFlag collects repeatable --image-config image=file.json values.
type imageConfigFlag map[string]imageConfig

func (m imageConfigFlag) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (m imageConfigFlag) Set(v string) error {
	img, file, ok := strings.Cut(v, "=")
	if !ok || img == "" || file == "" {
		return fmt.Errorf("want image=file.json, got %q", v)
	}
	cfg, err := readImageConfig(file)
	if err != nil {
		return err
	}
	m[img] = cfg
	return nil
}

func readImageConfig(file string) (imageConfig, error) {
	var cfg imageConfig
	b, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return cfg, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", file, err)
	}
	if cfg.WorkingDir != "" && !path.IsAbs(cfg.WorkingDir) {
		return cfg, fmt.Errorf("%s: WorkingDir %q is not absolute", file, cfg.WorkingDir)
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || !validEnvName(k) {
			return cfg, fmt.Errorf("%s: Env entry %q is not KEY=VALUE", file, kv)
		}
	}
	return cfg, nil
}

// imageConfigFor returns the configuration of an image reference, matched like the image map
// (exact reference first, then the name without tag/digest).
func (c providerConfig) imageConfigFor(image string) (imageConfig, bool) {
	if cfg, ok := c.ImageConfigs[image]; ok {
		return cfg, true
	}
	want := normalizeImageName(stripTagDigest(image))
	keys := make([]string, 0, len(c.ImageConfigs))
	for k := range c.ImageConfigs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if normalizeImageName(stripTagDigest(k)) == want {
			return c.ImageConfigs[k], true
		}
	}
	return imageConfig{}, false
}

// imageArgv applies Kubernetes' rules for command/args over the image's Entrypoint/Cmd:
// command set → command + args (the image's Cmd is ignored); only args → Entrypoint + args;
// neither → Entrypoint + Cmd. $(VAR) references in command and args are expanded.
func imageArgv(c *corev1.Container, img imageConfig, lookup func(string) (string, bool)) []string {
	if len(c.Command) > 0 {
		return containerArgv(c, lookup)
	}
	argv := append([]string(nil), img.Entrypoint...)
	if len(c.Args) > 0 {
		for _, a := range c.Args {
			argv = append(argv, expandVars(a, lookup))
		}
		return argv
	}
	return append(argv, img.Cmd...)
}
