package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot builds a small host tree:
//
//	/usr/bin/sh  /usr/local/bin/tool  /bin -> usr/bin  /etc/passwd  /var/run -> /run  /home/x
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/local/bin", "usr/lib", "etc/ssl", "var/lib", "home/x"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"usr/bin/sh", "usr/local/bin/tool", "etc/passwd"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	return root
}

// ops splits bwrap args into "op a b" strings for the mount section (before --unshare-pid).
func ops(args []string) []string {
	arity := map[string]int{"--ro-bind-try": 2, "--ro-bind": 2, "--bind": 2, "--dev-bind": 2, "--symlink": 2,
		"--dir": 1, "--perms": 1, "--dev": 1, "--proc": 1, "--tmpfs": 1}
	var out []string
	for i := 0; i < len(args); {
		n, ok := arity[args[i]]
		if !ok {
			break
		}
		out = append(out, strings.Join(args[i:i+1+n], " "))
		i += 1 + n
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestBuildBwrapArgsVolumesAndAncestors(t *testing.T) {
	root := fakeRoot(t)
	args, err := buildBwrapArgs(sandboxSpec{
		HostRoot: root,
		HostDirs: []string{"usr", "bin", "etc", "var"},
		Mounts: []mountSpec{
			{Target: "/etc/mysecret", Source: "/state/vol/sec", ReadOnly: true},
			{Target: "/var/run/secrets/kubernetes.io/serviceaccount", Source: "/state/vol/sa", ReadOnly: true},
			{Target: "/data", Source: "/state/vol/empty"},
		},
		WorkDir:  "/usr/src/app",
		Hostname: "p1",
		Env:      []string{"A=1", "B=x=y"},
		InfoFD:   3,
		Argv:     []string{"sleep", "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := ops(args)
	want := []string{
		"--symlink usr/bin /bin",
		"--perms 0755 --dir /etc", // rebuilt: ancestor of /etc/mysecret
		"--ro-bind-try " + filepath.Join(root, "etc/passwd") + " /etc/passwd",
		"--ro-bind-try " + filepath.Join(root, "etc/ssl") + " /etc/ssl",
		"--ro-bind-try " + filepath.Join(root, "var") + " /var", // /var/run resolved to /run: no rebuild
		"--perms 0755 --dir /usr",                               // ancestor of the (missing) working dir, created below
		"--ro-bind-try " + filepath.Join(root, "usr/bin") + " /usr/bin",
		"--ro-bind /state/vol/sec /etc/mysecret",
		"--ro-bind /state/vol/sa /run/secrets/kubernetes.io/serviceaccount",
		"--bind /state/vol/empty /data",
		"--dir /usr/src/app",
		"--dev /dev", "--proc /proc", "--tmpfs /tmp", "--tmpfs /run",
	}
	// --perms/--dir pairs are split by ops(); rejoin them for comparison.
	joined := []string{}
	for i := 0; i < len(o); i++ {
		if strings.HasPrefix(o[i], "--perms") && i+1 < len(o) {
			if strings.HasPrefix(o[i+1], "--dir") {
				joined = append(joined, o[i]+" "+o[i+1])
				i++
				continue
			}
			i++ // --perms before --tmpfs
			joined = append(joined, o[i])
			continue
		}
		joined = append(joined, o[i])
	}
	for _, w := range want {
		if !has(joined, w) {
			t.Errorf("missing %q in\n%s", w, strings.Join(joined, "\n"))
		}
	}
	for _, bad := range []string{"/home", "/etc/mysecret " + filepath.Join(root, "etc")} {
		for _, j := range joined {
			if strings.HasSuffix(j, " "+bad) {
				t.Errorf("unexpected %q", j)
			}
		}
	}
	tail := strings.Join(args, " ")
	for _, w := range []string{"--unshare-pid", "--hostname p1", "--info-fd 3", "--chdir /usr/src/app", "--clearenv",
		"--setenv A 1", "--setenv B x=y", "-- sleep 1"} {
		if !strings.Contains(tail, w) {
			t.Errorf("missing %q in %s", w, tail)
		}
	}
}

func TestBuildBwrapArgsOverlay(t *testing.T) {
	root := fakeRoot(t)
	img := t.TempDir()
	for _, d := range []string{"usr/local/bin", "app/lib", "bin"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"usr/local/bin/periscope-shell", "app/lib/x.js", "bin/extra"} {
		if err := os.WriteFile(filepath.Join(img, f), []byte("y"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("periscope-shell", filepath.Join(img, "usr/local/bin/ps-link")); err != nil {
		t.Fatal(err)
	}
	args, err := buildBwrapArgs(sandboxSpec{
		HostRoot: root,
		HostDirs: []string{"usr", "bin", "etc"},
		Overlay:  img,
		Mounts:   []mountSpec{{Target: "/app/config", Source: "/state/cfg", ReadOnly: true}},
		Argv:     []string{"true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(args, " ")
	for _, w := range []string{
		// /bin is a host symlink to usr/bin, so /usr/bin is rebuilt for the overlay's bin/extra.
		"--dir /usr --perms 0755 --dir /usr/bin --ro-bind-try " + filepath.Join(root, "usr/bin/sh") + " /usr/bin/sh",
		"--dir /usr/local --perms 0755 --dir /usr/local/bin --ro-bind-try " + filepath.Join(root, "usr/local/bin/tool") + " /usr/local/bin/tool",
		"--ro-bind " + filepath.Join(img, "usr/local/bin/periscope-shell") + " /usr/local/bin/periscope-shell",
		"--symlink periscope-shell /usr/local/bin/ps-link",
		// /app does not exist on the host, but a volume lives below it: descend, bind /app/lib whole.
		"--ro-bind " + filepath.Join(img, "app/lib") + " /app/lib",
		"--ro-bind /state/cfg /app/config",
		// /bin is a host symlink to usr/bin: the overlay file lands in /usr/bin.
		"--ro-bind " + filepath.Join(img, "bin/extra") + " /usr/bin/extra",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("missing %q in\n%s", w, s)
		}
	}
	if strings.Contains(s, " "+filepath.Join(img, "app")+" /app ") {
		t.Errorf("/app should not be bound whole: %s", s)
	}
	// /app exists on neither side: it is made (with the image's mode) before anything below it.
	mk := strings.Index(s, "--perms 0755 --dir /app ")
	if mk < 0 || mk > strings.Index(s, " /app/lib") || mk > strings.Index(s, " /app/config") {
		t.Errorf("/app is not made before its children: %s", s)
	}
}

func TestBuildBwrapArgsMakesMissingParentsReachable(t *testing.T) {
	root := fakeRoot(t)
	args, err := buildBwrapArgs(sandboxSpec{
		HostRoot: root,
		HostDirs: []string{"usr", "bin", "etc"},
		Mounts: []mountSpec{
			{Target: "/etc/periscope/clusters", Source: "/state/clusters", ReadOnly: true},
			{Target: "/etc/periscope/auth", Source: "/state/auth", ReadOnly: true},
			{Target: "/var/lib/app/data", Source: "/state/data"},
			{Target: "/tmp/a/b", Source: "/state/tmp"},
		},
		Argv: []string{"true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(args, " ")
	for _, w := range []string{"/etc/periscope", "/var", "/var/lib", "/var/lib/app", "/tmp/a"} {
		mk := strings.Index(s, "--perms 0755 --dir "+w+" ")
		if mk < 0 {
			t.Errorf("%s is not made 0755: %s", w, s)
			continue
		}
		if strings.Count(s, "--dir "+w+" ") != 1 {
			t.Errorf("%s is made twice: %s", w, s)
		}
		if w == "/tmp/a" && mk < strings.Index(s, "--tmpfs /tmp") {
			t.Errorf("/tmp/a is made before the private /tmp: %s", s)
		}
	}
	if strings.Index(s, "--dir /etc/periscope ") > strings.Index(s, " /etc/periscope/auth") {
		t.Errorf("parent made after the bind: %s", s)
	}
	// The host's /etc is rebuilt once (by the host walk); mount points themselves are not made.
	if strings.Count(s, "--dir /etc ") != 1 || strings.Contains(s, "--dir /etc/periscope/auth") {
		t.Errorf("unexpected directories: %s", s)
	}
}

func TestBuildBwrapArgsRejects(t *testing.T) {
	root := fakeRoot(t)
	for _, m := range []string{"/", "/proc/x", "relative"} {
		if _, err := buildBwrapArgs(sandboxSpec{HostRoot: root, HostDirs: []string{"usr"}, Mounts: []mountSpec{{Target: m, Source: "/s"}}, Argv: []string{"x"}}); err == nil {
			t.Errorf("mount at %q accepted", m)
		}
	}
	if _, err := buildBwrapArgs(sandboxSpec{HostRoot: root}); err == nil {
		t.Error("empty argv accepted")
	}
}

func TestImageDir(t *testing.T) {
	c := providerConfig{ImageMap: map[string]string{
		"periscope/agent":    "/img/agent",
		"busybox:1.36":       "/img/bb136",
		"ghcr.io/x/tool:dev": "/img/tool",
	}}
	cases := map[string]string{
		"periscope/agent":                   "/img/agent",
		"periscope/agent:dev":               "/img/agent",
		"periscope/agent@sha256:abc":        "/img/agent",
		"docker.io/periscope/agent:1":       "/img/agent",
		"busybox:1.36":                      "/img/bb136",
		"busybox":                           "",
		"busybox:latest":                    "",
		"ghcr.io/x/tool:dev":                "/img/tool",
		"ghcr.io/x/tool:other":              "",
		"localhost:5000/periscope/agent:v1": "",
	}
	for img, want := range cases {
		if got := c.imageDir(img); got != want {
			t.Errorf("imageDir(%q) = %q, want %q", img, got, want)
		}
	}
}

func TestFindExecutable(t *testing.T) {
	root := fakeRoot(t)
	overlay := t.TempDir()
	if err := os.MkdirAll(filepath.Join(overlay, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "usr/local/bin/periscope-shell"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "run.sh"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := sandboxSpec{HostRoot: root, HostDirs: []string{"usr", "bin", "etc"}}
	const path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	cases := []struct {
		name  string
		spec  sandboxSpec
		argv0 string
		want  bool
	}{
		{"host binary on PATH", base, "sh", true},
		{"host binary through the /bin symlink", base, "/bin/sh", true},
		{"missing everywhere", base, "periscope-shell", false},
		{"only in the image overlay", sandboxSpec{HostRoot: root, HostDirs: base.HostDirs, Overlay: overlay}, "periscope-shell", true},
		{"not executable", base, "notexec", false},
		{"a directory", base, "/usr/bin", false},
		{"outside the bound host dirs", base, "/home/x", false},
		{"in a volume", sandboxSpec{HostRoot: root, HostDirs: base.HostDirs, Mounts: []mountSpec{{Target: "/scripts", Source: vol}}}, "/scripts/run.sh", true},
		{"relative to the working dir", sandboxSpec{HostRoot: root, HostDirs: base.HostDirs, WorkDir: "/scripts", Mounts: []mountSpec{{Target: "/scripts", Source: vol}}}, "./run.sh", true},
		{"a volume hides the host below it", sandboxSpec{HostRoot: root, HostDirs: base.HostDirs, Mounts: []mountSpec{{Target: "/usr/bin", Source: vol}}}, "/usr/bin/sh", false},
	}
	for _, c := range cases {
		if got := findExecutable(c.spec, c.argv0, path); got != c.want {
			t.Errorf("%s: findExecutable(%q) = %v, want %v", c.name, c.argv0, got, c.want)
		}
	}
}
