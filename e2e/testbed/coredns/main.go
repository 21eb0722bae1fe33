// Command coredns is the test bed's cluster DNS: CoreDNS with only the plugins
// its Corefile uses. Upstream's main links every plugin (clouds, etcd, ...),
// which costs minutes of build on two cores for nothing a cluster needs here.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The server's plugin chain is ordered by this list, as upstream's generated
// directives order it.
var directives = []string{"reload", "health", "ready", "errors", "log", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
