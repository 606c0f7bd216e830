package main

import (
	"context"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// runNamespaceInitializer stands in for two kube-controller-manager controllers: every namespace
// gets the "default" ServiceAccount (serviceaccount-controller) and the "kube-root-ca.crt"
// ConfigMap holding the cluster CA (root-ca-cert-publisher). Without them the ServiceAccount
// admission plugin rejects pods and projected token volumes cannot be built.
func runNamespaceInitializer(ctx context.Context, client kubernetes.Interface, caPEM []byte, logger *slog.Logger) {
	factory := informers.NewSharedInformerFactory(client, 5*time.Minute)
	inf := factory.Core().V1().Namespaces()
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespaces"})
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp == nil {
			queue.Add(ns.Name)
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return
		}
		if err := initNamespace(ctx, client, name, caPEM); err != nil && ctx.Err() == nil {
			logger.Warn("namespace init failed, retrying", "namespace", name, "err", err)
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

func initNamespace(ctx context.Context, client kubernetes.Interface, ns string, caPEM []byte) error {
	_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data:       map[string]string{"ca.crt": string(caPEM)},
	}
	_, err = client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, getErr := client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if existing.Data["ca.crt"] == cm.Data["ca.crt"] {
			return nil
		}
		existing.Data = cm.Data
		_, err = client.CoreV1().ConfigMaps(ns).Update(ctx, existing, metav1.UpdateOptions{})
	}
	// Forbidden: the namespace is terminating; nothing to do.
	if apierrors.IsForbidden(err) {
		return nil
	}
	return err
}

// runClusterRoleAggregator stands in for the clusterrole-aggregation controller: a ClusterRole
// with an aggregationRule (such as the built-in admin, edit and view) gets the union of the rules
// of every ClusterRole its selectors match. Without it those roles grant nothing.
func runClusterRoleAggregator(ctx context.Context, client kubernetes.Interface, logger *slog.Logger) {
	factory := informers.NewSharedInformerFactory(client, 5*time.Minute)
	inf := factory.Rbac().V1().ClusterRoles()
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "aggregation"})
	defer queue.ShutDown()
	// Any change may affect any aggregated role: re-evaluate all of them.
	enqueueAll := func(any) {
		roles, err := inf.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		for _, r := range roles {
			if r.AggregationRule != nil {
				queue.Add(r.Name)
			}
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueAll,
		UpdateFunc: func(_, obj any) { enqueueAll(obj) },
		DeleteFunc: enqueueAll,
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	enqueueAll(nil)
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return
		}
		if err := aggregate(ctx, client, inf.Lister(), name); err != nil && ctx.Err() == nil {
			logger.Warn("clusterrole aggregation failed, retrying", "clusterrole", name, "err", err)
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

func aggregate(ctx context.Context, client kubernetes.Interface, lister rbaclisters.ClusterRoleLister, name string) error {
	role, err := lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if role.AggregationRule == nil {
		return nil
	}
	var rules []rbacv1.PolicyRule
	seen := map[string]bool{}
	for _, sel := range role.AggregationRule.ClusterRoleSelectors {
		selector, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return err
		}
		matches, err := lister.List(selector)
		if err != nil {
			return err
		}
		sort.Slice(matches, func(i, j int) bool { return matches[i].Name < matches[j].Name })
		for _, m := range matches {
			if m.Name == role.Name {
				continue
			}
			for _, r := range m.Rules {
				key := r.String()
				if !seen[key] {
					seen[key] = true
					rules = append(rules, r)
				}
			}
		}
	}
	if equality.Semantic.DeepEqual(rules, role.Rules) {
		return nil
	}
	updated := role.DeepCopy()
	updated.Rules = rules
	_, err = client.RbacV1().ClusterRoles().Update(ctx, updated, metav1.UpdateOptions{})
	return err
}
