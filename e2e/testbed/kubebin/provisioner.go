package main

// A host-path volume provisioner for the test beds. The controller manager's
// built-in hostPath provisioner creates root-owned 0750 directories, which
// non-root database pods cannot write; this one creates world-writable
// directories (pods then set their own modes, e.g. PostgreSQL's 0700 PGDATA)
// and deletes them when a released volume's policy says Delete.
//
// One runs per node (a process on the host-mode bed, a DaemonSet pod on kind):
// each serves only the claims the scheduler placed on its node (the
// selected-node annotation of WaitForFirstConsumer binding), and reclaims only
// the volumes pinned to its node, whose directories it can reach.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	provisionerName     = "relevo.dev/local-path"
	annStorageProvision = "volume.kubernetes.io/storage-provisioner"
	annProvisionedBy    = "pv.kubernetes.io/provisioned-by"
	annSelectedNode     = "volume.kubernetes.io/selected-node"
	hostnameLabel       = "kubernetes.io/hostname"
)

type provisioner struct {
	client   kubernetes.Interface
	root     string
	nodeName string
}

func runProvisioner(args []string) int {
	flags := flag.NewFlagSet("local-provisioner", flag.ContinueOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the cluster (default: in-cluster)")
	root := flags.String("root", "", "directory under which volumes are created")
	nodeName := flags.String("node-name", "", "the node volumes are pinned to")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *root == "" || *nodeName == "" {
		fmt.Fprintln(os.Stderr, "local-provisioner: --root and --node-name are required")
		return 2
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Errorf("loading kubeconfig: %v", err)
		return 1
	}
	p := &provisioner{client: kubernetes.NewForConfigOrDie(config), root: *root, nodeName: *nodeName}
	if err := os.MkdirAll(p.root, 0o755); err != nil {
		klog.Errorf("creating %s: %v", p.root, err)
		return 1
	}

	ctx := context.Background()
	factory := informers.NewSharedInformerFactory(p.client, 30*time.Second)
	claims := factory.Core().V1().PersistentVolumeClaims().Informer()
	volumes := factory.Core().V1().PersistentVolumes().Informer()
	claims.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.provision(ctx, obj) },
		UpdateFunc: func(_, obj any) { p.provision(ctx, obj) },
	})
	volumes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.reclaim(ctx, obj) },
		UpdateFunc: func(_, obj any) { p.reclaim(ctx, obj) },
	})
	klog.Infof("local-provisioner %s serving volumes under %s", provisionerName, p.root)
	factory.Start(ctx.Done())
	<-ctx.Done()
	return 0
}

// provision creates a PersistentVolume pre-bound to a claim that the
// controller manager has handed to this provisioner.
func (p *provisioner) provision(ctx context.Context, obj any) {
	claim, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok || claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil ||
		claim.Annotations[annStorageProvision] != provisionerName {
		return
	}
	if node, ok := claim.Annotations[annSelectedNode]; ok && node != p.nodeName {
		return
	}
	name := "pvc-" + string(claim.UID)
	if _, err := p.client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return
	}
	class, err := p.client.StorageV1().StorageClasses().Get(ctx, storageClassName(claim), metav1.GetOptions{})
	if err != nil {
		klog.Errorf("claim %s/%s: storage class: %v", claim.Namespace, claim.Name, err)
		return
	}
	dir := filepath.Join(p.root, name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		klog.Errorf("claim %s/%s: %v", claim.Namespace, claim.Name, err)
		return
	}
	// MkdirAll applies the umask; the mode must be exact for non-root pods.
	if err := os.Chmod(dir, 0o777); err != nil {
		klog.Errorf("claim %s/%s: %v", claim.Namespace, claim.Name, err)
		return
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	directory := corev1.HostPathDirectory
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &directory},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{p.nodeName},
				}}}},
			}},
		},
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		klog.Errorf("claim %s/%s: creating volume: %v", claim.Namespace, claim.Name, err)
		return
	}
	klog.Infof("provisioned %s for claim %s/%s at %s", name, claim.Namespace, claim.Name, dir)
}

// reclaim deletes the directory and the volume once a claim has released it.
func (p *provisioner) reclaim(ctx context.Context, obj any) {
	volume, ok := obj.(*corev1.PersistentVolume)
	if !ok || volume.Annotations[annProvisionedBy] != provisionerName ||
		volume.Status.Phase != corev1.VolumeReleased ||
		volume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		volume.Spec.HostPath == nil || pinnedNode(volume) != p.nodeName {
		return
	}
	dir := volume.Spec.HostPath.Path
	// Never follow a volume outside our root, whatever its spec says.
	if rel, err := filepath.Rel(p.root, dir); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		klog.Errorf("volume %s: path %s is outside %s; leaving it", volume.Name, dir, p.root)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		klog.Errorf("volume %s: removing %s: %v", volume.Name, dir, err)
		return
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		klog.Errorf("volume %s: deleting: %v", volume.Name, err)
		return
	}
	klog.Infof("deleted volume %s and %s", volume.Name, dir)
}

func storageClassName(claim *corev1.PersistentVolumeClaim) string {
	if claim.Spec.StorageClassName != nil {
		return *claim.Spec.StorageClassName
	}
	return ""
}

// pinnedNode is the node a volume of ours is pinned to by its node affinity.
func pinnedNode(volume *corev1.PersistentVolume) string {
	if volume.Spec.NodeAffinity == nil || volume.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range volume.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, expr := range term.MatchExpressions {
			if expr.Key == hostnameLabel && expr.Operator == corev1.NodeSelectorOpIn && len(expr.Values) == 1 {
				return expr.Values[0]
			}
		}
	}
	return ""
}
