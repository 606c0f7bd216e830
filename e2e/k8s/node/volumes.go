package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// fileOwner is who owns materialised volume files (kubelet's fsGroup / runAsUser handling).
type fileOwner struct {
	uid, gid int
	fsGroup  bool // gid came from fsGroup: add group read permission
}

// tokenFile is a projected service-account token that must be refreshed before it expires.
type tokenFile struct {
	path     string
	mode     os.FileMode
	sa       string
	audience string
	expSec   int64
	refresh  time.Time
}

type volumeBuilder struct {
	ctx    context.Context
	client kubernetes.Interface
	pod    *corev1.Pod
	owner  fileOwner
	tokens []tokenFile
}

// materialiseVolumes writes every pod volume below volRoot and returns name -> host path.
func materialiseVolumes(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, volRoot string, owner fileOwner) (map[string]string, []tokenFile, error) {
	b := &volumeBuilder{ctx: ctx, client: client, pod: pod, owner: owner}
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(volRoot, v.Name)
		switch {
		case v.HostPath != nil:
			p, err := prepareHostPath(v.HostPath)
			if err != nil {
				return nil, nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
			out[v.Name] = p
			continue
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, nil, err
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				return nil, nil, err
			}
		case v.Secret != nil, v.ConfigMap != nil, v.DownwardAPI != nil, v.Projected != nil:
			// Rewritten from scratch on every attempt so a retry never mixes old and new content.
			if err := os.RemoveAll(dir); err != nil {
				return nil, nil, err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			if err := b.fill(v, dir); err != nil {
				return nil, nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		default:
			return nil, nil, fmt.Errorf("volume %q: unsupported volume type (periscope-node supports secret, configMap, emptyDir, projected, downwardAPI, hostPath)", v.Name)
		}
		out[v.Name] = dir
	}
	return out, b.tokens, nil
}

func prepareHostPath(hp *corev1.HostPathVolumeSource) (string, error) {
	p := hp.Path
	t := corev1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	switch t {
	case corev1.HostPathDirectoryOrCreate:
		return p, os.MkdirAll(p, 0o755)
	case corev1.HostPathFileOrCreate:
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return "", err
		}
		return p, f.Close()
	case corev1.HostPathUnset:
		return p, nil
	default:
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
}

func modeOr(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & 0o777
}

func (b *volumeBuilder) fill(v corev1.Volume, dir string) error {
	switch {
	case v.Secret != nil:
		s := v.Secret
		return b.secret(dir, s.SecretName, s.Items, modeOr(s.DefaultMode, 0o644), s.Optional != nil && *s.Optional)
	case v.ConfigMap != nil:
		c := v.ConfigMap
		return b.configMap(dir, c.Name, c.Items, modeOr(c.DefaultMode, 0o644), c.Optional != nil && *c.Optional)
	case v.DownwardAPI != nil:
		return b.downward(dir, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode, 0o644))
	case v.Projected != nil:
		def := modeOr(v.Projected.DefaultMode, 0o644)
		for _, src := range v.Projected.Sources {
			var err error
			switch {
			case src.Secret != nil:
				err = b.secret(dir, src.Secret.Name, src.Secret.Items, def, src.Secret.Optional != nil && *src.Secret.Optional)
			case src.ConfigMap != nil:
				err = b.configMap(dir, src.ConfigMap.Name, src.ConfigMap.Items, def, src.ConfigMap.Optional != nil && *src.ConfigMap.Optional)
			case src.DownwardAPI != nil:
				err = b.downward(dir, src.DownwardAPI.Items, def)
			case src.ServiceAccountToken != nil:
				err = b.token(dir, src.ServiceAccountToken, def)
			default:
				err = fmt.Errorf("unsupported projected source (clusterTrustBundle/podCertificate are not implemented)")
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

func (b *volumeBuilder) secret(dir, name string, items []corev1.KeyToPath, def os.FileMode, optional bool) error {
	s, err := b.client.CoreV1().Secrets(b.pod.Namespace).Get(b.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %q: %w", name, err)
	}
	return b.keyed(dir, "secret", name, s.Data, items, def, optional)
}

func (b *volumeBuilder) configMap(dir, name string, items []corev1.KeyToPath, def os.FileMode, optional bool) error {
	c, err := b.client.CoreV1().ConfigMaps(b.pod.Namespace).Get(b.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range c.Data {
		data[k] = []byte(v)
	}
	for k, v := range c.BinaryData {
		data[k] = v
	}
	return b.keyed(dir, "configmap", name, data, items, def, optional)
}

func (b *volumeBuilder) keyed(dir, kind, name string, data map[string][]byte, items []corev1.KeyToPath, def os.FileMode, optional bool) error {
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := b.write(dir, k, data[k], def); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		val, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s %q has no key %q", kind, name, it.Key)
		}
		if err := b.write(dir, it.Path, val, modeOr(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (b *volumeBuilder) downward(dir string, items []corev1.DownwardAPIVolumeFile, def os.FileMode) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = podFieldValue(b.pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = containerResourceValue(b.pod, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("downwardAPI item %q has no source", it.Path)
		}
		if err != nil {
			return err
		}
		if err := b.write(dir, it.Path, []byte(val), modeOr(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (b *volumeBuilder) token(dir string, src *corev1.ServiceAccountTokenProjection, def os.FileMode) error {
	sa := b.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	mode := def
	// kubelet: a token readable only by its owner is owned by the pod's runAsUser.
	tf := tokenFile{path: src.Path, mode: mode, sa: sa, audience: src.Audience, expSec: exp}
	tok, err := requestToken(b.ctx, b.client, b.pod, tf)
	if err != nil {
		return err
	}
	if err := b.write(dir, src.Path, []byte(tok), mode); err != nil {
		return err
	}
	tf.path = filepath.Join(dir, filepath.FromSlash(src.Path))
	tf.refresh = time.Now().Add(time.Duration(float64(exp)*0.8) * time.Second)
	b.tokens = append(b.tokens, tf)
	return nil
}

// requestToken mints a service-account token bound to the pod (TokenRequest API).
func requestToken(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, tf tokenFile) (string, error) {
	exp := tf.expSec
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef: &authv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		},
	}}
	if tf.audience != "" {
		req.Spec.Audiences = []string{tf.audience}
	}
	res, err := client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, tf.sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for serviceaccount %q: %w", tf.sa, err)
	}
	return res.Status.Token, nil
}

// write stores one volume file atomically (temp file + rename), with mode and owner.
func (b *volumeBuilder) write(dir, rel string, data []byte, mode os.FileMode) error {
	return writeVolumeFile(dir, rel, data, mode, b.owner)
}

func writeVolumeFile(dir, rel string, data []byte, mode os.FileMode, owner fileOwner) error {
	clean := path.Clean(rel)
	if rel == "" || path.IsAbs(rel) || clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("invalid file path %q", rel)
	}
	full := filepath.Join(dir, filepath.FromSlash(clean))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	if owner.fsGroup {
		mode |= 0o040
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if owner.uid != 0 || owner.gid != 0 {
		if err := os.Chown(tmp.Name(), owner.uid, owner.gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), full)
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte('\n')
		}
		fmt.Fprintf(&sb, "%s=%q", k, m[k])
	}
	return sb.String()
}

// podFieldValue implements the downward API's fieldRef paths.
func podFieldValue(pod *corev1.Pod, fp string) (string, error) {
	subscript := func(prefix string) (string, bool) {
		if strings.HasPrefix(fp, prefix+"['") && strings.HasSuffix(fp, "']") {
			return fp[len(prefix)+2 : len(fp)-2], true
		}
		return "", false
	}
	if k, ok := subscript("metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript("metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch fp {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		// The pod's own address (podaddr.go), assigned before volumes and env are made.
		if pod.Status.PodIP != "" {
			return pod.Status.PodIP, nil
		}
		return hostAddr, nil
	case "status.hostIP", "status.hostIPs":
		return hostAddr, nil
	}
	return "", fmt.Errorf("unsupported downward API fieldPath %q", fp)
}

func containerResourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ref.ContainerName || (ref.ContainerName == "" && len(pod.Spec.Containers) == 1) {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: container %q not found", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		// kubelet falls back to node allocatable for unset limits (and unset requests are 0).
		if kind == "requests" {
			q = resource.MustParse("0")
		} else if name == "cpu" {
			q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
		} else {
			q = *resource.NewQuantity(memTotal(), resource.BinarySI)
		}
	}
	div := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		div = ref.Divisor
	}
	if name == "cpu" {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(div.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(div.Value())))), nil
}
