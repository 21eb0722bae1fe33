// Command kubebin is a multi-call binary holding every Kubernetes component of
// the offline test beds (the host-mode node, and kubeadm and the rest inside
// the kind node image). Linking once is far cheaper than six separate links on
// two cores. Run one component per process: `kubebin <component> [flags]`, or
// through a symlink named after the component.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubeadm "k8s.io/kubernetes/cmd/kubeadm/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kubectl":                 kubectl.NewDefaultKubectlCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "kubebin" {
		if len(args) == 0 {
			usage()
		}
		name, args = args[0], args[1:]
	}
	if name == "local-provisioner" {
		os.Exit(runProvisioner(args))
	}
	if name == "etcd" {
		// etcdmain parses os.Args itself and exits on its own.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	}
	if name == "kubeadm" {
		// kubeadm's Run reads os.Args itself.
		os.Args = append([]string{"kubeadm"}, args...)
		if err := kubeadm.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "kubeadm:", err)
			os.Exit(1)
		}
		return
	}
	newCommand, ok := components[name]
	if !ok {
		usage()
	}
	command := newCommand()
	command.SetArgs(args)
	os.Exit(cli.Run(command))
}

func usage() {
	names := []string{"etcd", "kubeadm", "local-provisioner"}
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kubebin <component> [flags]\ncomponents: %v\n", names)
	os.Exit(2)
}
