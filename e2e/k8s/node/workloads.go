package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// The workload controllers stand in for three kube-controller-manager controllers, for
// Deployments only (enabled with --workload-controllers):
//
//   - deployment: one ReplicaSet per pod template, named <deployment>-<hash> and labelled
//     pod-template-hash=<hash>; old ReplicaSets are scaled to 0 (Recreate: the new one is created
//     only once their pods are gone; RollingUpdate: at once, without surge limits); status
//     (observedGeneration, replicas, updated/ready/available/unavailableReplicas, the Available and
//     Progressing conditions), so `kubectl rollout status` and `helm install --wait` work;
//   - replicaset: creates and deletes Pods to match spec.replicas; status from the Pods' Ready
//     condition (minReadySeconds is ignored);
//   - garbage collection, background propagation only: a ReplicaSet whose controlling Deployment
//     is gone (by UID) is deleted, and so is a Pod whose controlling ReplicaSet is gone.
//
// Reconciles read live objects from the apiserver (not informer caches), so a Pod created a
// moment ago is always counted and no "expectations" bookkeeping is needed at this scale.

const (
	podTemplateHashLabel = "pod-template-hash"
	revisionAnnotation   = "deployment.kubernetes.io/revision"
)

type workloadKey struct {
	kind      string // "deployment", "replicaset" or "gc"
	namespace string
	name      string
}

func controllerOf(meta metav1.Object, kind string) *metav1.OwnerReference {
	for _, o := range meta.GetOwnerReferences() {
		if o.Controller != nil && *o.Controller && o.Kind == kind && strings.HasPrefix(o.APIVersion, "apps/") {
			return &o
		}
	}
	return nil
}

func runWorkloadControllers(ctx context.Context, client kubernetes.Interface, logger *slog.Logger) {
	factory := informers.NewSharedInformerFactory(client, 30*time.Second)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[workloadKey](100*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[workloadKey]{Name: "workloads"})
	defer queue.ShutDown()

	metaOf := func(obj any) metav1.Object {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil
		}
		return m
	}
	onDeployment := func(deleted bool) func(any) {
		return func(obj any) {
			if m := metaOf(obj); m != nil {
				queue.Add(workloadKey{"deployment", m.GetNamespace(), m.GetName()})
				if deleted {
					queue.Add(workloadKey{"gc", m.GetNamespace(), ""})
				}
			}
		}
	}
	onReplicaSet := func(deleted bool) func(any) {
		return func(obj any) {
			m := metaOf(obj)
			if m == nil {
				return
			}
			queue.Add(workloadKey{"replicaset", m.GetNamespace(), m.GetName()})
			if o := controllerOf(m, "Deployment"); o != nil {
				queue.Add(workloadKey{"deployment", m.GetNamespace(), o.Name})
			}
			if deleted {
				queue.Add(workloadKey{"gc", m.GetNamespace(), ""})
			}
		}
	}
	onPod := func(obj any) {
		if m := metaOf(obj); m != nil {
			if o := controllerOf(m, "ReplicaSet"); o != nil {
				queue.Add(workloadKey{"replicaset", m.GetNamespace(), o.Name})
			}
		}
	}
	_, _ = factory.Apps().V1().Deployments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onDeployment(false),
		UpdateFunc: func(_, obj any) { onDeployment(false)(obj) },
		DeleteFunc: onDeployment(true),
	})
	_, _ = factory.Apps().V1().ReplicaSets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onReplicaSet(false),
		UpdateFunc: func(_, obj any) { onReplicaSet(false)(obj) },
		DeleteFunc: onReplicaSet(true),
	})
	_, _ = factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
		DeleteFunc: onPod,
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	w := &workloads{client: client, log: logger}
	for {
		key, shutdown := queue.Get()
		if shutdown {
			return
		}
		requeue, err := w.sync(ctx, key)
		switch {
		case err != nil && ctx.Err() == nil:
			if !apierrors.IsConflict(err) {
				logger.Warn("workload sync failed, retrying", "kind", key.kind, "namespace", key.namespace, "name", key.name, "err", err)
			}
			queue.AddRateLimited(key)
		case requeue > 0:
			queue.Forget(key)
			queue.AddAfter(key, requeue)
		default:
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

type workloads struct {
	client kubernetes.Interface
	log    *slog.Logger
}

// sync reconciles one key; a positive duration asks to look again later (waiting for pods to go).
func (w *workloads) sync(ctx context.Context, key workloadKey) (time.Duration, error) {
	switch key.kind {
	case "deployment":
		return w.syncDeployment(ctx, key.namespace, key.name)
	case "replicaset":
		return 0, w.syncReplicaSet(ctx, key.namespace, key.name)
	case "gc":
		return 0, w.collectGarbage(ctx, key.namespace)
	}
	return 0, nil
}

// templateHash is a stable short hash of a pod template (without its pod-template-hash label).
func templateHash(t *corev1.PodTemplateSpec) string {
	c := t.DeepCopy()
	delete(c.Labels, podTemplateHashLabel)
	b, _ := json.Marshal(c)
	h := fnv.New32a()
	_, _ = h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (w *workloads) ownedReplicaSets(ctx context.Context, d *appsv1.Deployment) ([]appsv1.ReplicaSet, error) {
	list, err := w.client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if o := controllerOf(&rs, "Deployment"); o != nil && o.UID == d.UID {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (w *workloads) ownedPods(ctx context.Context, rs *appsv1.ReplicaSet) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := w.client.CoreV1().Pods(rs.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if o := controllerOf(&p, "ReplicaSet"); o != nil && o.UID == rs.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

func (w *workloads) syncDeployment(ctx context.Context, ns, name string) (time.Duration, error) {
	d, err := w.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil || d.DeletionTimestamp != nil {
		return 0, err
	}
	owned, err := w.ownedReplicaSets(ctx, d)
	if err != nil {
		return 0, err
	}
	hash := templateHash(&d.Spec.Template)
	var current *appsv1.ReplicaSet
	var old []appsv1.ReplicaSet
	maxRevision := 0
	for i := range owned {
		rs := owned[i]
		var rev int
		_, _ = fmt.Sscan(rs.Annotations[revisionAnnotation], &rev)
		maxRevision = max(maxRevision, rev)
		if rs.Labels[podTemplateHashLabel] == hash && current == nil {
			current = &owned[i]
		} else {
			old = append(old, rs)
		}
	}
	desired := replicasOf(d.Spec.Replicas)

	// Old ReplicaSets go to zero.
	oldPods := int32(0)
	for i := range old {
		rs := &old[i]
		if replicasOf(rs.Spec.Replicas) != 0 {
			zero := int32(0)
			rs.Spec.Replicas = &zero
			if _, err := w.client.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
				return 0, err
			}
			w.log.Info("scaled down old replicaset", "namespace", ns, "replicaset", rs.Name)
		}
		pods, err := w.ownedPods(ctx, rs)
		if err != nil {
			return 0, err
		}
		oldPods += int32(len(pods))
	}
	recreateWaiting := d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType && oldPods > 0

	switch {
	case current == nil && !recreateWaiting:
		tmpl := d.Spec.Template.DeepCopy()
		if tmpl.Labels == nil {
			tmpl.Labels = map[string]string{}
		}
		tmpl.Labels[podTemplateHashLabel] = hash
		sel := d.Spec.Selector.DeepCopy()
		if sel == nil {
			sel = &metav1.LabelSelector{}
		}
		if sel.MatchLabels == nil {
			sel.MatchLabels = map[string]string{}
		}
		sel.MatchLabels[podTemplateHashLabel] = hash
		yes := true
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name:        d.Name + "-" + hash,
				Namespace:   ns,
				Labels:      tmpl.Labels,
				Annotations: map[string]string{revisionAnnotation: fmt.Sprint(maxRevision + 1)},
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
					Controller: &yes, BlockOwnerDeletion: &yes,
				}},
			},
			Spec: appsv1.ReplicaSetSpec{
				Replicas:        &desired,
				MinReadySeconds: d.Spec.MinReadySeconds,
				Selector:        sel,
				Template:        *tmpl,
			},
		}
		created, err := w.client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			return 0, err
		}
		w.log.Info("created replicaset", "namespace", ns, "replicaset", created.Name)
		current = created
	case current != nil && replicasOf(current.Spec.Replicas) != desired && !recreateWaiting:
		current.Spec.Replicas = &desired
		updated, err := w.client.AppsV1().ReplicaSets(ns).Update(ctx, current, metav1.UpdateOptions{})
		if err != nil {
			return 0, err
		}
		current = updated
	}

	// Status, summed over every owned ReplicaSet (as reported by the replicaset controller).
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, CollisionCount: d.Status.CollisionCount}
	all := append([]appsv1.ReplicaSet(nil), old...)
	if current != nil {
		all = append(all, *current)
		st.UpdatedReplicas = current.Status.Replicas
	}
	for _, rs := range all {
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
	}
	st.UnavailableReplicas = max(0, desired-st.AvailableReplicas)
	now := metav1.Now()
	cond := func(t appsv1.DeploymentConditionType, ok bool, reason, msg string) appsv1.DeploymentCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		c := appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
		for _, prev := range d.Status.Conditions {
			if prev.Type == t && prev.Status == s {
				c.LastTransitionTime = prev.LastTransitionTime
				if prev.Reason == reason && prev.Message == msg {
					c.LastUpdateTime = prev.LastUpdateTime
				}
			}
		}
		return c
	}
	available := st.AvailableReplicas >= desired
	availReason := "MinimumReplicasAvailable"
	if !available {
		availReason = "MinimumReplicasUnavailable"
	}
	rsName := ""
	if current != nil {
		rsName = current.Name
	}
	complete := current != nil && st.UpdatedReplicas == desired && st.Replicas == desired && st.AvailableReplicas == desired
	progReason, progMsg := "ReplicaSetUpdated", fmt.Sprintf("ReplicaSet %q is progressing.", rsName)
	if complete {
		progReason, progMsg = "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName)
	}
	st.Conditions = []appsv1.DeploymentCondition{
		cond(appsv1.DeploymentAvailable, available, availReason, "Deployment has minimum availability."),
		cond(appsv1.DeploymentProgressing, true, progReason, progMsg),
	}
	if !deploymentStatusEqual(d.Status, st) {
		d.Status = st
		if _, err := w.client.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if recreateWaiting {
		return 500 * time.Millisecond, nil
	}
	return 0, nil
}

func deploymentStatusEqual(a, b appsv1.DeploymentStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Replicas != b.Replicas || a.UpdatedReplicas != b.UpdatedReplicas ||
		a.ReadyReplicas != b.ReadyReplicas || a.AvailableReplicas != b.AvailableReplicas ||
		a.UnavailableReplicas != b.UnavailableReplicas || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}

func (w *workloads) syncReplicaSet(ctx context.Context, ns, name string) error {
	rs, err := w.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || rs.DeletionTimestamp != nil {
		return err
	}
	pods, err := w.ownedPods(ctx, rs)
	if err != nil {
		return err
	}
	var active []corev1.Pod
	for _, p := range pods {
		if podActive(&p) {
			active = append(active, p)
		}
	}
	want := int(replicasOf(rs.Spec.Replicas))
	for len(active) < want {
		yes := true
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: rs.Name + "-",
				Namespace:    ns,
				Labels:       rs.Spec.Template.Labels,
				Annotations:  rs.Spec.Template.Annotations,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
					Controller: &yes, BlockOwnerDeletion: &yes,
				}},
			},
			Spec: rs.Spec.Template.Spec,
		}
		created, err := w.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		w.log.Info("created pod", "namespace", ns, "replicaset", rs.Name, "pod", created.Name)
		active = append(active, *created)
	}
	if len(active) > want {
		// Not-ready pods go first, then the newest.
		sort.SliceStable(active, func(i, j int) bool {
			ri, rj := podReady(&active[i]), podReady(&active[j])
			if ri != rj {
				return !ri
			}
			return active[j].CreationTimestamp.Before(&active[i].CreationTimestamp)
		})
		for _, p := range active[:len(active)-want] {
			if err := w.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			w.log.Info("deleted pod", "namespace", ns, "replicaset", rs.Name, "pod", p.Name)
		}
		active = active[len(active)-want:]
	}
	st := appsv1.ReplicaSetStatus{ObservedGeneration: rs.Generation}
	for _, p := range active {
		st.Replicas++
		st.FullyLabeledReplicas++
		if podReady(&p) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
	}
	if st.ObservedGeneration != rs.Status.ObservedGeneration || st.Replicas != rs.Status.Replicas ||
		st.ReadyReplicas != rs.Status.ReadyReplicas || st.AvailableReplicas != rs.Status.AvailableReplicas ||
		st.FullyLabeledReplicas != rs.Status.FullyLabeledReplicas {
		rs.Status = st
		if _, err := w.client.AppsV1().ReplicaSets(ns).UpdateStatus(ctx, rs, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// collectGarbage deletes ReplicaSets whose controlling Deployment is gone and Pods whose
// controlling ReplicaSet is gone (the garbage collector's background propagation).
func (w *workloads) collectGarbage(ctx context.Context, ns string) error {
	exists := func(kind, name string, uid string) (bool, error) {
		var err error
		var got metav1.Object
		switch kind {
		case "Deployment":
			got, err = w.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		case "ReplicaSet":
			got, err = w.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return true, err
		}
		return string(got.GetUID()) == uid, nil
	}
	background := metav1.DeletePropagationBackground
	rsList, err := w.client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, rs := range rsList.Items {
		o := controllerOf(&rs, "Deployment")
		if o == nil || rs.DeletionTimestamp != nil {
			continue
		}
		ok, err := exists("Deployment", o.Name, string(o.UID))
		if err != nil {
			return err
		}
		if !ok {
			uid := rs.UID
			err := w.client.AppsV1().ReplicaSets(ns).Delete(ctx, rs.Name, metav1.DeleteOptions{
				PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
			w.log.Info("deleted orphaned replicaset", "namespace", ns, "replicaset", rs.Name)
		}
	}
	pods, err := w.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		o := controllerOf(&p, "ReplicaSet")
		if o == nil || p.DeletionTimestamp != nil {
			continue
		}
		ok, err := exists("ReplicaSet", o.Name, string(o.UID))
		if err != nil {
			return err
		}
		if !ok {
			uid := p.UID
			err := w.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
			w.log.Info("deleted orphaned pod", "namespace", ns, "pod", p.Name)
		}
	}
	return nil
}
