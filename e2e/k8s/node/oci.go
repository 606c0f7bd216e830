package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// OCI image archives (--image-archive image=file.tar): an `oci-archive` (a tar of an OCI image
// layout, as `npm run images` and `skopeo copy … oci-archive:` write it). The first container
// that uses the image "pulls" it: the layers are applied in order (whiteouts honoured) into
// <state-dir>/images/<manifest digest>/rootfs, which then is the container's root file system
// (read-only, like readOnlyRootFilesystem: true; /tmp and /run are private tmpfs, volumes are
// mounted as usual). The image config gives Entrypoint, Cmd, Env, WorkingDir and User.

// ociImage is an unpacked image.
type ociImage struct {
	Ref    string
	Digest string // manifest digest
	Root   string // unpacked root file system
	Config imageConfig
	User   string
}

// pullError is an image that cannot be had; the container waits in ErrImagePull/ImagePullBackOff.
type pullError struct {
	image string
	msg   string
}

func (e *pullError) Error() string {
	return fmt.Sprintf("failed to pull and unpack image %q: %s", e.image, e.msg)
}

type imageStore struct {
	dir      string
	archives map[string]string
	mu       sync.Mutex
	images   map[string]*ociImage // by archive path
}

func newImageStore(dir string, archives map[string]string) *imageStore {
	return &imageStore{dir: dir, archives: archives, images: map[string]*ociImage{}}
}

// archiveFor matches an image reference like the image map: exact, then without tag/digest.
func (s *imageStore) archiveFor(image string) string {
	if s == nil {
		return ""
	}
	if a, ok := s.archives[image]; ok {
		return a
	}
	want := normalizeImageName(stripTagDigest(image))
	keys := make([]string, 0, len(s.archives))
	for k := range s.archives {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if normalizeImageName(stripTagDigest(k)) == want {
			return s.archives[k]
		}
	}
	return ""
}

// pull unpacks the archive of image once (concurrent callers wait for the first).
func (s *imageStore) pull(image string) (*ociImage, error) {
	archive := s.archiveFor(image)
	if archive == "" {
		return nil, &pullError{image: image, msg: "not found: no OCI archive for this image was given to periscope-node (--image-archive); build it with `npm run images` or use an image name the test cluster maps"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if img, ok := s.images[archive]; ok {
		return img, nil
	}
	img, err := unpackArchive(archive, s.dir)
	if err != nil {
		return nil, &pullError{image: image, msg: err.Error()}
	}
	img.Ref = image
	s.images[archive] = img
	return img, nil
}

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type ociIndex struct {
	Manifests []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	Config ociDescriptor   `json:"config"`
	Layers []ociDescriptor `json:"layers"`
}

type ociConfigFile struct {
	Config struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
}

// unpackArchive extracts the OCI layout from archive, then applies its layers into a root.
func unpackArchive(archive, stateDir string) (*ociImage, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	layout, err := os.MkdirTemp(stateDir, "layout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(layout)
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		name := path.Clean("/" + h.Name)
		if h.Typeflag != tar.TypeReg || !(name == "/index.json" || strings.HasPrefix(name, "/blobs/sha256/")) {
			continue
		}
		dst := filepath.Join(layout, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		out, err := os.Create(dst)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	blob := func(d string) string {
		return filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	var idx ociIndex
	if err := readJSON(filepath.Join(layout, "index.json"), &idx); err != nil {
		return nil, fmt.Errorf("%s is not an OCI archive: %w", archive, err)
	}
	if len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("%s: index.json has %d manifests, want 1", archive, len(idx.Manifests))
	}
	digest := idx.Manifests[0].Digest
	var man ociManifest
	if err := readJSON(blob(digest), &man); err != nil {
		return nil, err
	}
	var cfg ociConfigFile
	if err := readJSON(blob(man.Config.Digest), &cfg); err != nil {
		return nil, err
	}
	img := &ociImage{
		Digest: digest,
		Root:   filepath.Join(stateDir, strings.ReplaceAll(digest, ":", "-"), "rootfs"),
		User:   cfg.Config.User,
		Config: imageConfig{Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd, Env: cfg.Config.Env, WorkingDir: cfg.Config.WorkingDir},
	}
	if _, err := os.Stat(img.Root); err == nil {
		return img, nil
	}
	tmp := img.Root + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, l := range man.Layers {
		if err := applyLayer(blob(l.Digest), l.MediaType, tmp); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	if err := os.Rename(tmp, img.Root); err != nil {
		return nil, err
	}
	return img, nil
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// safeJoin joins a layer path under root and refuses paths that leave it or pass through a
// symlink inside it (a layer must not write outside the image).
func safeJoin(root, name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return root, nil
	}
	cur := root
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		if fi, err := os.Lstat(cur); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("%s: parent %s is a symlink", name, cur)
		}
	}
	return filepath.Join(root, filepath.FromSlash(clean)), nil
}

// applyLayer applies one (gzip) tar layer: OCI whiteouts (.wh.<name>, .wh..wh..opq) remove
// what lower layers made; files keep mode and numeric owner.
func applyLayer(file, mediaType, root string) error {
	f, err := os.Open(filepath.Clean(file))
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	if strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".gzip") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		base := path.Base(path.Clean("/" + h.Name))
		dir := path.Dir(path.Clean("/" + h.Name))
		if base == ".wh..wh..opq" {
			d, err := safeJoin(root, dir)
			if err != nil {
				return err
			}
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(d, e.Name()))
			}
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			p, err := safeJoin(root, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
			if err != nil {
				return err
			}
			_ = os.RemoveAll(p)
			continue
		}
		dst, err := safeJoin(root, h.Name)
		if err != nil {
			return err
		}
		if dst == root {
			continue
		}
		mode := os.FileMode(h.Mode).Perm() | tarSpecialBits(h.Mode)
		if fi, err := os.Lstat(dst); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(dst); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{dst, mode})
		case tar.TypeReg:
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeLink:
			src, err := safeJoin(root, h.Linkname)
			if err != nil {
				return err
			}
			if err := os.Link(src, dst); err != nil {
				return err
			}
		default:
			continue // device nodes, fifos: a sandbox gets its own /dev
		}
		if h.Typeflag != tar.TypeLink {
			if err := os.Lchown(dst, h.Uid, h.Gid); err != nil && !os.IsPermission(err) {
				return err
			}
			if h.Typeflag == tar.TypeReg {
				// chown clears setuid/setgid bits: set the mode again.
				_ = os.Chmod(dst, mode)
			}
		}
	}
	// Directory modes last, so that read-only directories could be filled first.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chmod(dirs[i].path, dirs[i].mode)
	}
	return nil
}

func tarSpecialBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// imageUser turns an image config's User ("uid", "uid:gid", "name", "name:group") into numbers,
// looking names up in the image's own /etc/passwd and /etc/group.
func imageUser(root, user string) (uid, gid int64, ok bool, err error) {
	if user == "" {
		return 0, 0, false, nil
	}
	u, g, hasG := strings.Cut(user, ":")
	uid, err = lookupID(filepath.Join(root, "etc/passwd"), u, 2)
	if err != nil {
		return 0, 0, false, err
	}
	if hasG {
		gid, err = lookupID(filepath.Join(root, "etc/group"), g, 2)
		if err != nil {
			return 0, 0, false, err
		}
	} else {
		// the user's primary group from the image's passwd (field 4), else the uid
		gid = uid
		if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Split(line, ":")
				if len(f) > 3 && f[2] == strconv.FormatInt(uid, 10) {
					if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
						gid = n
					}
					break
				}
			}
		}
	}
	return uid, gid, true, nil
}

func lookupID(file, nameOrID string, field int) (int64, error) {
	if n, err := strconv.ParseInt(nameOrID, 10, 64); err == nil {
		return n, nil
	}
	b, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return 0, fmt.Errorf("image user %q: %w", nameOrID, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > field && f[0] == nameOrID {
			return strconv.ParseInt(f[field], 10, 64)
		}
	}
	return 0, fmt.Errorf("image user %q: not in the image's %s", nameOrID, filepath.Base(file))
}

// imageRootDirs lists the top-level entries of an unpacked root to bind (everything except the
// directories a sandbox always makes privately).
func imageRootDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if privateRoots["/"+e.Name()] || e.Name() == "root" {
			continue
		}
		dirs = append(dirs, e.Name())
	}
	return dirs, nil
}
