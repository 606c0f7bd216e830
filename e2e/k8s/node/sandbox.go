package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// defaultHostDirs are the top-level host directories bound read-only into every sandbox.
// Everything else (/root, /home, /work, /mnt, ...) is absent; /tmp, /run and /dev are private.
var defaultHostDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "srv"}

// sandboxMarker is an empty directory at the root of every sandbox (as /.dockerenv is in Docker
// containers); its presence under /proc/<pid>/root tells that the sandbox's root is complete.
const sandboxMarker = "/.periscope-node"

// Directories that the sandbox always gets privately (never from the host).
var privateRoots = map[string]bool{"/dev": true, "/proc": true, "/sys": true, "/tmp": true, "/run": true}

// mountSpec is one bind mount into the sandbox.
type mountSpec struct {
	Target   string // absolute path inside the sandbox, as written in the pod spec
	Source   string // host path
	ReadOnly bool
}

// sandboxSpec describes one container's filesystem view and process.
type sandboxSpec struct {
	HostRoot string   // "/" in production; a fake tree in unit tests (bind sources are prefixed with it)
	HostDirs []string // top-level directory names bound read-only from the host
	Overlay  string   // image-map directory overlaid file by file, or ""
	Mounts   []mountSpec
	WorkDir  string // "" means "/"
	Hostname string
	Env      []string // KEY=VALUE
	Console  string   // host terminal bound at /dev/console (tty containers), or ""
	RootHome bool     // give the process a private writable /root (tmpfs)
	NewSess  bool     // --new-session (when stdio is not a terminal)
	InfoFD   int      // fd number for bwrap --info-fd, 0 = none
	Preload  string   // host path of the pod-ip shim, bound read-only at podIPShimTarget, or ""
	Argv     []string // command run inside the sandbox (already wrapped with setpriv if needed)
}

type leafKind int

const (
	leafBind leafKind = iota
	leafSymlink
	leafDir
)

type leaf struct {
	target string
	source string
	link   string
	kind   leafKind
	ro     bool
}

type planner struct {
	root     string
	hostDirs map[string]bool
	volumes  []string // resolved volume targets (plus the working dir)
}

func (pl *planner) host(p string) string { return filepath.Join(pl.root, p) }

// inHost reports whether p lies inside one of the top-level host dirs that are bound.
func (pl *planner) inHost(p string) bool {
	top := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
	return top != "" && pl.hostDirs[top] && !privateRoots["/"+top]
}

// resolve follows symlinks of the host tree (only inside bound host dirs) so that a mount target
// such as /var/run/secrets/x lands at /run/secrets/x, and /bin/tool at /usr/bin/tool.
func (pl *planner) resolve(p string) string {
	p = path.Clean("/" + p)
	for hops := 0; hops < 40; hops++ {
		comps := strings.Split(strings.TrimPrefix(p, "/"), "/")
		cur := "/"
		restart := false
		for i, c := range comps {
			if c == "" {
				continue
			}
			next := path.Join(cur, c)
			rest := path.Join(comps[i+1:]...)
			if !pl.inHost(next) {
				return path.Join(next, rest)
			}
			fi, err := os.Lstat(pl.host(next))
			if err != nil {
				return path.Join(next, rest)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				l, err := os.Readlink(pl.host(next))
				if err != nil {
					return path.Join(next, rest)
				}
				if !path.IsAbs(l) {
					l = path.Join(cur, l)
				}
				p = path.Join(l, rest)
				restart = true
				break
			}
			cur = next
		}
		if !restart {
			return p
		}
	}
	return p
}

func isUnder(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

func strictlyUnder(p, dir string) bool {
	return p != dir && isUnder(p, dir)
}

// sandboxHasDir reports whether the sandbox will have a directory at p before overlays/volumes.
func (pl *planner) sandboxHasDir(p string) bool {
	if privateRoots[p] {
		return true
	}
	if !pl.inHost(p) {
		return false
	}
	fi, err := os.Lstat(pl.host(p))
	return err == nil && fi.IsDir()
}

func (pl *planner) volumeBelow(p string) bool {
	for _, v := range pl.volumes {
		if strictlyUnder(v, p) {
			return true
		}
	}
	return false
}

// overlay walks an image-map directory. Directories that also exist in the sandbox (or that
// contain a volume mount point) are descended into; everything else becomes one mount.
func (pl *planner) overlay(srcDir, tgtDir string, out map[string]leaf) error {
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := filepath.Join(srcDir, e.Name())
		tgt := pl.resolve(path.Join(tgtDir, e.Name()))
		if isUnder(tgt, "/proc") || isUnder(tgt, "/sys") || tgt == "/dev" {
			continue
		}
		fi, err := os.Lstat(src)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if _, dup := out[tgt]; !dup {
				out[tgt] = leaf{target: tgt, link: l, kind: leafSymlink}
			}
		case fi.IsDir() && (pl.sandboxHasDir(tgt) || pl.volumeBelow(tgt)):
			if err := pl.overlay(src, tgt, out); err != nil {
				return err
			}
		default:
			if _, dup := out[tgt]; !dup {
				out[tgt] = leaf{target: tgt, source: src, kind: leafBind, ro: true}
			}
		}
	}
	return nil
}

// walk emits read-only binds for the host tree, rebuilding (with --dir) every directory that is
// an ancestor of a mount target so that the target's mount point can be created.
func (pl *planner) walk(dir string, ancestors, targets map[string]bool, args *[]string) {
	var names []string
	if dir == "/" {
		seen := map[string]bool{}
		for d := range pl.hostDirs {
			if !seen[d] && !privateRoots["/"+d] {
				seen[d] = true
				names = append(names, d)
			}
		}
	} else {
		entries, err := os.ReadDir(pl.host(dir))
		if err != nil {
			return
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		p := path.Join(dir, name)
		if targets[p] {
			continue
		}
		fi, err := os.Lstat(pl.host(p))
		if err != nil {
			continue
		}
		switch {
		case ancestors[p] && (fi.IsDir() || fi.Mode()&os.ModeSymlink != 0):
			*args = append(*args, "--perms", fmt.Sprintf("%04o", fi.Mode().Perm()|sticky(fi.Mode())), "--dir", p)
			if fi.IsDir() {
				pl.walk(p, ancestors, targets, args)
			}
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(pl.host(p))
			if err == nil {
				*args = append(*args, "--symlink", l, p)
			}
		default:
			*args = append(*args, "--ro-bind-try", pl.host(p), p)
		}
	}
}

func sticky(m os.FileMode) os.FileMode {
	if m&os.ModeSticky != 0 {
		return 0o1000
	}
	return 0
}

// buildBwrapArgs turns a sandboxSpec into bwrap's argument list (without the bwrap binary).
func buildBwrapArgs(s sandboxSpec) ([]string, error) {
	root := s.HostRoot
	if root == "" {
		root = "/"
	}
	pl := &planner{root: root, hostDirs: map[string]bool{}}
	for _, d := range s.HostDirs {
		pl.hostDirs[strings.Trim(d, "/")] = true
	}
	if s.RootHome {
		delete(pl.hostDirs, "root")
	}

	type vol struct {
		target, source string
		ro             bool
	}
	var vols []vol
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount path %q is not absolute", m.Target)
		}
		t := pl.resolve(m.Target)
		if t == "/" || isUnder(t, "/proc") || isUnder(t, "/sys") {
			return nil, fmt.Errorf("cannot mount a volume at %q", m.Target)
		}
		vols = append(vols, vol{target: t, source: m.Source, ro: m.ReadOnly})
		pl.volumes = append(pl.volumes, t)
	}
	workDir := "/"
	if s.WorkDir != "" {
		if !path.IsAbs(s.WorkDir) {
			return nil, fmt.Errorf("workingDir %q is not absolute", s.WorkDir)
		}
		workDir = path.Clean(s.WorkDir)
	}
	resolvedWD := pl.resolve(workDir)

	leaves := map[string]leaf{}
	if s.Overlay != "" {
		if err := pl.overlay(s.Overlay, "/", leaves); err != nil {
			return nil, fmt.Errorf("image overlay %s: %w", s.Overlay, err)
		}
	}

	// The working directory is created when nothing provides it.
	mkWD := false
	if resolvedWD != "/" && !pl.sandboxHasDir(resolvedWD) {
		provided := false
		for _, v := range vols {
			if isUnder(resolvedWD, v.target) {
				provided = true
			}
		}
		for t := range leaves {
			if isUnder(resolvedWD, t) {
				provided = true
			}
		}
		mkWD = !provided
	}

	targets := map[string]bool{}
	for _, v := range vols {
		targets[v.target] = true
	}
	for t := range leaves {
		targets[t] = true
	}
	if mkWD {
		targets[resolvedWD] = true
	}
	ancestors := map[string]bool{}
	for t := range targets {
		if !pl.inHost(t) {
			continue
		}
		for a := path.Dir(t); a != "/"; a = path.Dir(a) {
			ancestors[a] = true
		}
	}

	var args []string
	pl.walk("/", ancestors, targets, &args)
	args = append(args, "--dev", "/dev", "--proc", "/proc",
		"--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/run")
	if s.Console != "" {
		args = append(args, "--dev-bind", s.Console, "/dev/console")
	}
	if s.RootHome {
		args = append(args, "--perms", "0700", "--tmpfs", "/root")
	}

	leafTargets := make([]string, 0, len(leaves))
	for t := range leaves {
		leafTargets = append(leafTargets, t)
	}
	sort.Strings(leafTargets)

	// Parents of mount points that the host tree does not have (/etc/app for a volume at
	// /etc/app/config, /app for an image file at /app/lib): bwrap would make them itself,
	// owner-only, and a non-root container could not reach below them. Make them first, with the
	// image's mode when the image has the directory, else 0755, as container runtimes do.
	providedBy := func(p string) bool {
		for t := range targets {
			if isUnder(p, t) {
				return true
			}
		}
		return pl.sandboxHasDir(p)
	}
	var parents []string
	madeParent := map[string]bool{}
	for t := range targets {
		for a := path.Dir(t); a != "/"; a = path.Dir(a) {
			if !madeParent[a] && !providedBy(a) {
				madeParent[a] = true
				parents = append(parents, a)
			}
		}
	}
	sort.Strings(parents) // a parent sorts before its children
	for _, a := range parents {
		mode := os.FileMode(0o755)
		if s.Overlay != "" {
			if fi, err := os.Stat(filepath.Join(s.Overlay, a)); err == nil && fi.IsDir() {
				mode = fi.Mode().Perm() | sticky(fi.Mode())
			}
		}
		args = append(args, "--perms", fmt.Sprintf("%04o", mode), "--dir", a)
	}
	for _, t := range leafTargets {
		l := leaves[t]
		switch l.kind {
		case leafSymlink:
			args = append(args, "--symlink", l.link, t)
		default:
			args = append(args, "--ro-bind", l.source, t)
		}
	}

	sort.SliceStable(vols, func(i, j int) bool { return vols[i].target < vols[j].target })
	for _, v := range vols {
		op := "--bind"
		if v.ro {
			op = "--ro-bind"
		}
		args = append(args, op, v.source, v.target)
	}
	if mkWD {
		args = append(args, "--dir", resolvedWD)
	}

	if s.Preload != "" {
		// A file at the root: no volume can hide it (a mount at / is refused above).
		args = append(args, "--ro-bind", s.Preload, podIPShimTarget)
	}
	// Created last in the new root: seen through /proc/<pid>/root only once bwrap has switched
	// into the finished root (see waitSandboxRoot).
	args = append(args, "--dir", sandboxMarker)
	args = append(args, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent")
	if s.Hostname != "" {
		args = append(args, "--hostname", s.Hostname)
	}
	if s.NewSess {
		args = append(args, "--new-session")
	}
	if s.InfoFD > 0 {
		args = append(args, "--info-fd", strconv.Itoa(s.InfoFD))
	}
	args = append(args, "--chdir", workDir, "--clearenv")
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		args = append(args, "--setenv", k, v)
	}
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("no command")
	}
	args = append(args, "--")
	args = append(args, s.Argv...)
	return args, nil
}

// findExecutable reports whether the sandbox described by s would find an executable for argv0,
// the way a container runtime checks before it reports the container running: a bare name is
// searched in the container's PATH, a path is checked as is. It looks where the sandbox's files
// come from: the image overlay, the bound host directories and the volume mounts (/tmp, /run and
// /dev start empty). A relative path with a slash is resolved against the working directory.
func findExecutable(s sandboxSpec, argv0, pathEnv string) bool {
	var candidates []string
	switch {
	case strings.Contains(argv0, "/"):
		p := argv0
		if !path.IsAbs(p) {
			wd := s.WorkDir
			if wd == "" {
				wd = "/"
			}
			p = path.Join(wd, p)
		}
		candidates = []string{path.Clean(p)}
	default:
		for _, dir := range strings.Split(pathEnv, ":") {
			if dir == "" {
				dir = "."
			}
			if !path.IsAbs(dir) {
				dir = path.Join(orRoot(s.WorkDir), dir)
			}
			candidates = append(candidates, path.Join(dir, argv0))
		}
	}
	pl := &planner{root: s.HostRoot, hostDirs: map[string]bool{}}
	for _, d := range s.HostDirs {
		pl.hostDirs[d] = true
	}
	executable := func(hostPath string) bool {
		fi, err := os.Lstat(hostPath)
		if err != nil {
			return false
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			// Its target may only exist inside the sandbox (an overlay linking into itself): the
			// process's own exec will tell.
			return true
		}
		return !fi.IsDir() && fi.Mode()&0o111 != 0
	}
	for _, c := range candidates {
		// A volume mount hides whatever lies under its target.
		mounted := false
		for _, m := range s.Mounts {
			t := path.Clean(m.Target)
			if c == t || strings.HasPrefix(c, t+"/") {
				mounted = true
				if executable(filepath.Join(m.Source, filepath.FromSlash(strings.TrimPrefix(c, t)))) {
					return true
				}
			}
		}
		if mounted {
			continue
		}
		if s.Overlay != "" && executable(filepath.Join(s.Overlay, filepath.FromSlash(c))) {
			return true
		}
		if pl.inHost(c) && executable(pl.host(c)) {
			return true
		}
	}
	return false
}

func orRoot(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}
