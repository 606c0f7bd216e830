package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// newFakeClient is a fake clientset that fills metadata.name from generateName and gives every
// created object a UID, as the apiserver does.
func newFakeClient(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject()
		m, err := metaAccessor(obj)
		if err != nil {
			return false, nil, nil
		}
		if m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(m.GetGenerateName() + rand.String(5))
		}
		if m.GetUID() == "" {
			m.SetUID(types.UID(rand.String(12)))
		}
		return false, nil, nil
	})
	return c
}

func metaAccessor(obj runtime.Object) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, io.EOF
}

func testDeployment(strategy appsv1.DeploymentStrategyType, image string) *appsv1.Deployment {
	two := int32(2)
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "dep-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: strategy},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"a": "b"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

func markPodsReady(t *testing.T, c *fake.Clientset) {
	t.Helper()
	ctx := context.Background()
	pods, _ := c.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := c.CoreV1().Pods("ns").UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func syncAll(t *testing.T, w *workloads) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := w.syncDeployment(ctx, "ns", "web"); err != nil {
			t.Fatal(err)
		}
		rss, _ := w.client.AppsV1().ReplicaSets("ns").List(ctx, metav1.ListOptions{})
		for _, rs := range rss.Items {
			if err := w.syncReplicaSet(ctx, "ns", rs.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestDeploymentCreatesReplicaSetPodsAndStatus(t *testing.T) {
	ctx := context.Background()
	c := newFakeClient(testDeployment(appsv1.RecreateDeploymentStrategyType, "img:1"))
	w := &workloads{client: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	syncAll(t, w)

	rss, _ := c.AppsV1().ReplicaSets("ns").List(ctx, metav1.ListOptions{})
	if len(rss.Items) != 1 {
		t.Fatalf("want 1 replicaset, got %d", len(rss.Items))
	}
	rs := rss.Items[0]
	hash := rs.Labels[podTemplateHashLabel]
	if hash == "" || rs.Name != "web-"+hash || rs.Spec.Selector.MatchLabels[podTemplateHashLabel] != hash ||
		rs.Spec.Template.Labels[podTemplateHashLabel] != hash || rs.Annotations[revisionAnnotation] != "1" {
		t.Fatalf("replicaset metadata: %+v %+v", rs.ObjectMeta, rs.Spec.Selector)
	}
	if o := controllerOf(&rs, "Deployment"); o == nil || o.UID != "dep-uid" {
		t.Fatalf("replicaset owner: %+v", rs.OwnerReferences)
	}
	pods, _ := c.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 2 {
		t.Fatalf("want 2 pods, got %d", len(pods.Items))
	}
	for _, p := range pods.Items {
		if o := controllerOf(&p, "ReplicaSet"); o == nil || o.UID != rs.UID || p.Labels["app"] != "web" || p.Annotations["a"] != "b" {
			t.Fatalf("pod: %+v", p.ObjectMeta)
		}
	}
	d, _ := c.AppsV1().Deployments("ns").Get(ctx, "web", metav1.GetOptions{})
	if d.Status.Replicas != 2 || d.Status.UpdatedReplicas != 2 || d.Status.AvailableReplicas != 0 || d.Status.ObservedGeneration != 1 {
		t.Fatalf("status before ready: %+v", d.Status)
	}

	markPodsReady(t, c)
	syncAll(t, w)
	d, _ = c.AppsV1().Deployments("ns").Get(ctx, "web", metav1.GetOptions{})
	if d.Status.ReadyReplicas != 2 || d.Status.AvailableReplicas != 2 || d.Status.UnavailableReplicas != 0 {
		t.Fatalf("status after ready: %+v", d.Status)
	}
	for _, cond := range d.Status.Conditions {
		if cond.Status != corev1.ConditionTrue {
			t.Fatalf("condition %s is %s", cond.Type, cond.Status)
		}
		if cond.Type == appsv1.DeploymentProgressing && cond.Reason != "NewReplicaSetAvailable" {
			t.Fatalf("progressing reason %s", cond.Reason)
		}
	}
}

func TestRecreateScalesOldDownBeforeNew(t *testing.T) {
	ctx := context.Background()
	c := newFakeClient(testDeployment(appsv1.RecreateDeploymentStrategyType, "img:1"))
	w := &workloads{client: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	syncAll(t, w)
	d, _ := c.AppsV1().Deployments("ns").Get(ctx, "web", metav1.GetOptions{})
	d.Spec.Template.Spec.Containers[0].Image = "img:2"
	d.Generation = 2
	if _, err := c.AppsV1().Deployments("ns").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait, err := w.syncDeployment(ctx, "ns", "web")
	if err != nil || wait == 0 {
		t.Fatalf("want a wait for old pods, got %v %v", wait, err)
	}
	rss, _ := c.AppsV1().ReplicaSets("ns").List(ctx, metav1.ListOptions{})
	if len(rss.Items) != 1 || *rss.Items[0].Spec.Replicas != 0 {
		t.Fatalf("old replicaset not scaled to 0 alone: %+v", rss.Items)
	}
	// The replicaset controller removes the old pods (the fake deletes at once).
	syncAll(t, w)
	rss, _ = c.AppsV1().ReplicaSets("ns").List(ctx, metav1.ListOptions{})
	if len(rss.Items) != 2 {
		t.Fatalf("want old + new replicaset, got %d", len(rss.Items))
	}
	pods, _ := c.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 2 {
		t.Fatalf("want 2 pods, got %d", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.Containers[0].Image != "img:2" {
			t.Fatalf("old pod left: %s", p.Name)
		}
	}
	for _, rs := range rss.Items {
		if rs.Spec.Template.Spec.Containers[0].Image == "img:2" && rs.Annotations[revisionAnnotation] != "2" {
			t.Fatalf("new revision: %v", rs.Annotations)
		}
	}
}

func TestGarbageCollectionFollowsOwners(t *testing.T) {
	ctx := context.Background()
	c := newFakeClient(testDeployment(appsv1.RollingUpdateDeploymentStrategyType, "img:1"))
	w := &workloads{client: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	syncAll(t, w)
	// An unrelated pod and a pod of another owner stay.
	if _, err := c.CoreV1().Pods("ns").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "loose", Namespace: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.AppsV1().Deployments("ns").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := w.collectGarbage(ctx, "ns"); err != nil {
			t.Fatal(err)
		}
	}
	rss, _ := c.AppsV1().ReplicaSets("ns").List(ctx, metav1.ListOptions{})
	pods, _ := c.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if len(rss.Items) != 0 || len(pods.Items) != 1 || pods.Items[0].Name != "loose" {
		t.Fatalf("left: %d replicasets, pods %+v", len(rss.Items), pods.Items)
	}
}

func TestTemplateHashIgnoresItsOwnLabel(t *testing.T) {
	d := testDeployment(appsv1.RecreateDeploymentStrategyType, "img:1")
	h := templateHash(&d.Spec.Template)
	withLabel := d.Spec.Template.DeepCopy()
	withLabel.Labels[podTemplateHashLabel] = h
	if templateHash(withLabel) != h {
		t.Fatal("hash changes with the pod-template-hash label")
	}
	d.Spec.Template.Spec.Containers[0].Image = "img:2"
	if templateHash(&d.Spec.Template) == h {
		t.Fatal("hash ignores the template")
	}
}
