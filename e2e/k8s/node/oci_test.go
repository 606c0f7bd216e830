package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
}

func tarBytes(t *testing.T, entries []tarEntry, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = tar.NewWriter(zw)
	} else {
		w = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.uid, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := w.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// writeArchive makes an oci-archive with the given gzip layers and config.
func writeArchive(t *testing.T, dir string, layers [][]byte, cfg map[string]any) string {
	t.Helper()
	cfgBytes, _ := json.Marshal(map[string]any{"config": cfg, "rootfs": map[string]any{"type": "layers"}})
	var layerDescs []map[string]any
	blobs := []tarEntry{}
	for _, l := range layers {
		layerDescs = append(layerDescs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digestOf(l), "size": len(l)})
		blobs = append(blobs, tarEntry{name: "blobs/sha256/" + strings.TrimPrefix(digestOf(l), "sha256:"), body: string(l), typ: tar.TypeReg, mode: 0o644})
	}
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "config": map[string]any{"digest": digestOf(cfgBytes), "size": len(cfgBytes)}, "layers": layerDescs})
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{"digest": digestOf(man), "size": len(man)}}})
	blobs = append(blobs,
		tarEntry{name: "blobs/sha256/" + strings.TrimPrefix(digestOf(cfgBytes), "sha256:"), body: string(cfgBytes), typ: tar.TypeReg, mode: 0o644},
		tarEntry{name: "blobs/sha256/" + strings.TrimPrefix(digestOf(man), "sha256:"), body: string(man), typ: tar.TypeReg, mode: 0o644},
		tarEntry{name: "index.json", body: string(idx), typ: tar.TypeReg, mode: 0o644},
		tarEntry{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`, typ: tar.TypeReg, mode: 0o644},
	)
	file := filepath.Join(dir, "image.oci.tar")
	if err := os.WriteFile(file, tarBytes(t, blobs, false), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestImageArchiveUnpacksLayersWithWhiteouts(t *testing.T) {
	dir := t.TempDir()
	l1 := tarBytes(t, []tarEntry{
		{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/passwd", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:0::/root:/bin/sh\nperiscope:x:1000:1000::/home/periscope:/bin/bash\n"},
		{name: "./etc/group", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:\nperiscope:x:1000:\n"},
		{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/bin/tool", typ: tar.TypeReg, mode: 0o755, body: "v1"},
		{name: "./bin", typ: tar.TypeSymlink, link: "usr/bin"},
		{name: "./old/", typ: tar.TypeDir, mode: 0o755},
		{name: "./old/a", typ: tar.TypeReg, mode: 0o644, body: "a"},
		{name: "./opaque/", typ: tar.TypeDir, mode: 0o755},
		{name: "./opaque/gone", typ: tar.TypeReg, mode: 0o644, body: "x"},
	}, true)
	l2 := tarBytes(t, []tarEntry{
		{name: "./usr/bin/tool", typ: tar.TypeReg, mode: 0o755, body: "v2"},
		{name: "./usr/bin/.wh.missing", typ: tar.TypeReg, mode: 0o644},
		{name: "./.wh.old", typ: tar.TypeReg, mode: 0o644},
		{name: "./opaque/.wh..wh..opq", typ: tar.TypeReg, mode: 0o644},
		{name: "./opaque/kept", typ: tar.TypeReg, mode: 0o600, body: "k", uid: 1000},
		{name: "./usr/bin/tool2", typ: tar.TypeLink, link: "./usr/bin/tool"},
		{name: "./home/periscope/", typ: tar.TypeDir, mode: 0o700, uid: 1000},
	}, true)
	archive := writeArchive(t, dir, [][]byte{l1, l2}, map[string]any{
		"User": "periscope", "Entrypoint": []string{"/usr/bin/tool"}, "Cmd": []string{"hold"},
		"Env": []string{"PATH=/usr/bin", "KUBE_EDITOR=nano"}, "WorkingDir": "/home/periscope",
	})
	store := newImageStore(filepath.Join(dir, "state"), map[string]string{"example.test/periscope-shell": archive})
	img, err := store.pull("example.test/periscope-shell:0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(img.Root, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := read("usr/bin/tool"); got != "v2" {
		t.Errorf("upper layer's file: got %q", got)
	}
	if got := read("bin/tool"); got != "v2" {
		t.Errorf("through the /bin symlink: got %q", got)
	}
	if got := read("usr/bin/tool2"); got != "v2" {
		t.Errorf("hard link: got %q", got)
	}
	if _, err := os.Lstat(filepath.Join(img.Root, "old")); !os.IsNotExist(err) {
		t.Errorf("whiteout .wh.old: /old still there (%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(img.Root, "opaque/gone")); !os.IsNotExist(err) {
		t.Errorf("opaque whiteout: /opaque/gone still there (%v)", err)
	}
	if got := read("opaque/kept"); got != "k" {
		t.Errorf("file after opaque whiteout: got %q", got)
	}
	if fi, err := os.Stat(filepath.Join(img.Root, "home/periscope")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("home mode: %v %v", fi, err)
	}
	if img.Config.WorkingDir != "/home/periscope" || strings.Join(img.Config.Entrypoint, " ") != "/usr/bin/tool" || strings.Join(img.Config.Cmd, " ") != "hold" {
		t.Errorf("config: %+v", img.Config)
	}
	uid, gid, ok, err := imageUser(img.Root, img.User)
	if err != nil || !ok || uid != 1000 || gid != 1000 {
		t.Errorf("image user %q: %d:%d %v %v", img.User, uid, gid, ok, err)
	}
	if _, _, _, err := imageUser(img.Root, "nobody-here"); err == nil {
		t.Error("unknown user name: no error")
	}
	dirs, err := imageRootDirs(img.Root)
	if err != nil || strings.Join(dirs, ",") != "bin,etc,home,opaque,usr" {
		t.Errorf("root dirs: %v %v", dirs, err)
	}
	again, err := store.pull("example.test/periscope-shell@sha256:" + strings.Repeat("0", 64))
	if err != nil || again != img {
		t.Errorf("second pull (by digest) is not the cached image: %v", err)
	}
}

func TestImageArchiveRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	layer := tarBytes(t, []tarEntry{
		{name: "./link", typ: tar.TypeSymlink, link: "/"},
		{name: "./link/escaped", typ: tar.TypeReg, mode: 0o644, body: "x"},
	}, true)
	archive := writeArchive(t, dir, [][]byte{layer}, map[string]any{})
	_, err := newImageStore(filepath.Join(dir, "state"), map[string]string{"bad": archive}).pull("bad")
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("want a refusal to write through a symlink, got %v", err)
	}
}

func TestUnknownImageIsAPullError(t *testing.T) {
	store := newImageStore(t.TempDir(), map[string]string{})
	_, err := store.pull("registry.example/never-built:1")
	var pe *pullError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), `failed to pull and unpack image "registry.example/never-built:1"`) ||
		!strings.Contains(err.Error(), "npm run images") {
		t.Fatalf("got %v", err)
	}
}
