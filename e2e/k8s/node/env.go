package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// expandVars implements Kubernetes' $(VAR) expansion: defined references are replaced, "$$" is
// an escaped "$", and undefined references are left as written.
func expandVars(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// envList keeps variables in definition order (later definitions override earlier ones).
type envList struct {
	order []string
	vals  map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.order = append(e.order, k)
	}
	e.vals[k] = v
}

func (e *envList) get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

func validEnvName(k string) bool {
	if k == "" || strings.ContainsAny(k, "=\x00") {
		return false
	}
	return true
}

// resolveEnv builds a container's environment like kubelet: envFrom, then env (with valueFrom
// and $(VAR) expansion), then the apiserver address overrides, PATH, HOSTNAME and HOME.
// Service-link variables of other Services are not generated (their ClusterIPs are unroutable).
func resolveEnv(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, apiHost string, apiPort int, home string) (*envList, error) {
	return resolveEnvOver(ctx, client, pod, c, apiHost, apiPort, home, nil)
}

// resolveEnvOver is resolveEnv on top of an image's environment (KEY=VALUE entries), which the
// container's own variables override, as a container runtime merges them.
func resolveEnvOver(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, apiHost string, apiPort int, home string, imageEnv []string) (*envList, error) {
	env := &envList{}
	for _, kv := range imageEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && validEnvName(k) {
			env.set(k, v)
		}
	}
	ns := pod.Namespace
	for _, ef := range c.EnvFrom {
		var data map[string]string
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %q: %w", ef.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case ef.SecretRef != nil:
			s, err := client.CoreV1().Secrets(ns).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %q: %w", ef.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if name := ef.Prefix + k; validEnvName(name) {
				env.set(name, data[k])
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env.set(e.Name, expandVars(e.Value, env.get))
			continue
		}
		v, ok, err := envValueFrom(ctx, client, pod, c, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %q: %w", e.Name, err)
		}
		if ok {
			env.set(e.Name, v)
		}
	}

	host, port := apiHost, strconv.Itoa(apiPort)
	addr := "tcp://" + net.JoinHostPort(host, port)
	for _, k := range env.order {
		if strings.HasPrefix(k, "KUBERNETES_PORT_") {
			switch {
			case strings.HasSuffix(k, "_ADDR"):
				env.set(k, host)
			case strings.HasSuffix(k, "_PORT"):
				env.set(k, port)
			case strings.HasSuffix(k, "_PROTO"):
			default:
				env.set(k, addr)
			}
		}
	}
	env.set("KUBERNETES_SERVICE_HOST", host)
	env.set("KUBERNETES_SERVICE_PORT", port)
	env.set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	env.set("KUBERNETES_PORT", addr)
	env.set("KUBERNETES_PORT_443_TCP", addr)
	env.set("KUBERNETES_PORT_443_TCP_PROTO", "tcp")
	env.set("KUBERNETES_PORT_443_TCP_PORT", port)
	env.set("KUBERNETES_PORT_443_TCP_ADDR", host)
	if _, ok := env.get("PATH"); !ok {
		env.set("PATH", defaultPath)
	}
	if _, ok := env.get("HOSTNAME"); !ok {
		env.set("HOSTNAME", pod.Name)
	}
	if _, ok := env.get("HOME"); !ok {
		env.set("HOME", home)
	}
	return env, nil
}

func envValueFrom(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, vf *corev1.EnvVarSource) (string, bool, error) {
	ns := pod.Namespace
	switch {
	case vf.FieldRef != nil:
		v, err := podFieldValue(pod, vf.FieldRef.FieldPath)
		return v, err == nil, err
	case vf.ResourceFieldRef != nil:
		ref := vf.ResourceFieldRef.DeepCopy()
		if ref.ContainerName == "" {
			ref.ContainerName = c.Name
		}
		v, err := containerResourceValue(pod, ref)
		return v, err == nil, err
	case vf.ConfigMapKeyRef != nil:
		r := vf.ConfigMapKeyRef
		optional := r.Optional != nil && *r.Optional
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional {
				return "", false, nil
			}
			return "", false, fmt.Errorf("configmap %q: %w", r.Name, err)
		}
		if v, ok := cm.Data[r.Key]; ok {
			return v, true, nil
		}
		if v, ok := cm.BinaryData[r.Key]; ok {
			return string(v), true, nil
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("configmap %q has no key %q", r.Name, r.Key)
	case vf.SecretKeyRef != nil:
		r := vf.SecretKeyRef
		optional := r.Optional != nil && *r.Optional
		s, err := client.CoreV1().Secrets(ns).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %q: %w", r.Name, err)
		}
		if v, ok := s.Data[r.Key]; ok {
			return string(v), true, nil
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("secret %q has no key %q", r.Name, r.Key)
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

// identity is the uid/gid and capabilities a container runs with (securityContext, container
// level over pod level).
type identity struct {
	uid, gid   int
	groups     []int64
	user       bool     // switch uid/gid/groups with setpriv
	privileged bool     // keep every capability
	caps       []string // capability bounding set (setpriv names) when not privileged
}

// defaultCaps is the container runtimes' (containerd, Docker) default capability set.
var defaultCaps = []string{"chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
	"setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write"}

var knownCaps = map[string]bool{}

func init() {
	for _, c := range strings.Fields("chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap " +
		"linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio " +
		"sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time sys_tty_config mknod " +
		"lease audit_write audit_control setfcap mac_override mac_admin syslog wake_alarm block_suspend audit_read " +
		"perfmon bpf checkpoint_restore") {
		knownCaps[c] = true
	}
}

func capName(c corev1.Capability) string {
	return strings.TrimPrefix(strings.ToLower(string(c)), "cap_")
}

func effectiveIdentity(pod *corev1.Pod, c *corev1.Container) (identity, error) {
	var uid, gid *int64
	var nonRoot *bool
	var groups []int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
		groups = append(groups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			groups = append(groups, *psc.FSGroup)
		}
	}
	id := identity{}
	caps := append([]string(nil), defaultCaps...)
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			gid = csc.RunAsGroup
		}
		if csc.RunAsNonRoot != nil {
			nonRoot = csc.RunAsNonRoot
		}
		id.privileged = csc.Privileged != nil && *csc.Privileged
		if cp := csc.Capabilities; cp != nil {
			for _, a := range cp.Add {
				if capName(a) == "all" {
					id.privileged = true
				}
			}
			for _, d := range cp.Drop {
				if capName(d) == "all" {
					caps = nil
				}
			}
			var kept []string
			for _, k := range caps {
				drop := false
				for _, d := range cp.Drop {
					drop = drop || capName(d) == k
				}
				if !drop {
					kept = append(kept, k)
				}
			}
			caps = kept
			for _, a := range cp.Add {
				if n := capName(a); knownCaps[n] {
					caps = append(caps, n)
				}
			}
		}
	}
	id.caps = caps
	if nonRoot != nil && *nonRoot && (uid == nil || *uid == 0) {
		return identity{}, fmt.Errorf("container has runAsNonRoot and would run as root (periscope-node has no image user: set runAsUser)")
	}
	id.groups = groups
	if uid == nil && gid == nil && len(groups) == 0 {
		return id, nil
	}
	id.user = true
	if uid != nil {
		id.uid = int(*uid)
	}
	switch {
	case gid != nil:
		id.gid = int(*gid)
	default:
		if _, g, ok := passwdEntry(id.uid); ok {
			id.gid = g
		}
	}
	return id, nil
}

// setprivArgs returns the argv prefix that applies the identity inside the sandbox (the
// sandbox itself runs as host root with every capability).
func (id identity) setprivArgs(setpriv string) []string {
	if !id.user && id.privileged {
		return nil
	}
	args := []string{setpriv}
	if id.user {
		args = append(args, "--reuid="+strconv.Itoa(id.uid), "--regid="+strconv.Itoa(id.gid))
		if len(id.groups) > 0 {
			gs := make([]string, len(id.groups))
			for i, g := range id.groups {
				gs[i] = strconv.FormatInt(g, 10)
			}
			args = append(args, "--groups="+strings.Join(gs, ","))
		} else {
			args = append(args, "--clear-groups")
		}
	}
	if !id.privileged {
		set := "-all"
		for _, c := range id.caps {
			set += ",+" + c
		}
		args = append(args, "--bounding-set="+set)
	}
	return append(args, "--")
}

// home is the HOME of the identity: /root for root (a private writable tmpfs), "/" otherwise
// (there is no image /etc/passwd, and host home directories are not in the sandbox).
func (id identity) home() string {
	if id.uid == 0 {
		return "/root"
	}
	return "/"
}

// passwdEntry looks a uid up in the host's /etc/passwd (which the sandbox shares).
func passwdEntry(uid int) (home string, gid int, ok bool) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "", 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.Itoa(uid)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) >= 6 && parts[2] == want {
			g, _ := strconv.Atoi(parts[3])
			return parts[5], g, true
		}
	}
	return "", 0, false
}

// podFileOwner decides who owns materialised volume files: the runAsUser shared by all
// containers (so strict modes such as 0400 stay readable), group fsGroup when set.
func podFileOwner(pod *corev1.Pod) fileOwner {
	var o fileOwner
	uids := map[int]bool{}
	gids := map[int]bool{}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		id, err := effectiveIdentity(pod, &all[i])
		if err != nil {
			continue
		}
		uids[id.uid] = true
		gids[id.gid] = true
	}
	if len(uids) == 1 {
		for u := range uids {
			o.uid = u
		}
	}
	if psc := pod.Spec.SecurityContext; psc != nil && psc.FSGroup != nil {
		o.gid, o.fsGroup = int(*psc.FSGroup), true
	} else if len(gids) == 1 {
		for g := range gids {
			o.gid = g
		}
	}
	return o
}
