package main

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

const maxPods = 110

func pcNodeLabels(name string) map[string]string {
	return map[string]string{
		"type":                    "virtual-kubelet",
		"kubernetes.io/role":      "agent",
		"kubernetes.io/hostname":  name,
		"kubernetes.io/os":        "linux",
		"kubernetes.io/arch":      runtime.GOARCH,
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": runtime.GOARCH,
	}
}

// fillNodeSpec completes the Node that virtual-kubelet registers. It deliberately declares no
// status.declaredFeatures: without ExtendWebSocketsToKubelet the apiserver talks SPDY to us,
// which virtual-kubelet's streaming server fully supports (its WebSocket server lacks v5).
func fillNodeSpec(n *corev1.Node, name, hostnameAddr string, port int, kubeletVersion, stateDir string) {
	n.Labels = pcNodeLabels(name)
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	n.Status.Conditions = []corev1.NodeCondition{
		cond(corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady", "periscope-node is starting"),
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "no memory pressure"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "no PID pressure"),
	}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: hostnameAddr},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(maxPods, resource.DecimalSI),
	}
	var st syscall.Statfs_t
	if syscall.Statfs(stateDir, &st) == nil {
		res[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(st.Blocks)*st.Bsize, resource.BinarySI)
	}
	n.Status.Capacity = res
	n.Status.Allocatable = res.DeepCopy()
	var uts syscall.Utsname
	kernel := ""
	if syscall.Uname(&uts) == nil {
		kernel = utsString(uts.Release[:])
	}
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
		KubeletVersion:          kubeletVersion,
		KernelVersion:           kernel,
		OSImage:                 "periscope-node (bubblewrap sandboxes)",
		ContainerRuntimeVersion: "periscope-node://0.1.0",
		MachineID:               readTrim("/etc/machine-id"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
	}
}

func utsString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 8 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb * 1024
			}
		}
	}
	return 8 << 30
}

// removeNotReadyTaint drops the node.kubernetes.io/not-ready taint that the TaintNodesByCondition
// admission plugin puts on every new Node; normally kube-controller-manager removes it once the
// node is Ready. Our binder ignores taints, but a real kube-scheduler (if a harness adds one)
// would not.
func removeNotReadyTaint(ctx context.Context, client kubernetes.Interface, name string, logger *slog.Logger) {
	for attempt := 0; attempt < 20; attempt++ {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var keep []corev1.Taint
			for _, t := range n.Spec.Taints {
				if t.Key != "node.kubernetes.io/not-ready" && t.Key != "node.kubernetes.io/unreachable" {
					keep = append(keep, t)
				}
			}
			if len(keep) == len(n.Spec.Taints) {
				return nil
			}
			n.Spec.Taints = keep
			_, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err == nil {
			return
		}
		logger.Debug("removing not-ready taint", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
