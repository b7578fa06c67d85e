package node_test

import (
	"fmt"
	"io"

	"github.com/tandemsession/tandem/examples/node"
)

// A node's configuration from its flags and environment, as the command
// reads it: flags win over variables; keys come from the environment only.
func ExampleFromArgs() {
	env := map[string]string{
		node.EnvPeers:          "n1=10.0.0.1:7946,n2=10.0.0.2:7946,n3=10.0.0.3:7946",
		node.EnvMode:           "async",
		node.EnvClusterKey:     "hex:" + fmt.Sprintf("%064x", 1),
		node.EnvCookieHashKey:  "base64:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", // 32 bytes
		node.EnvCookieBlockKey: fmt.Sprintf("%032x", 2),                                    // 16 bytes, hex
	}
	cfg, err := node.FromArgs([]string{"-id", "n1", "-http", ":8080", "-repl", ":7946"},
		func(name string) string { return env[name] }, io.Discard)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.ID, cfg.HTTPAddr, cfg.ReplAddr, cfg.Mode, node.FormatPeers(cfg.Peers))
	fmt.Println(len(cfg.ClusterKeys[0]), len(cfg.CookieKeys[0].Hash), len(cfg.CookieKeys[0].Block))

	delete(env, node.EnvClusterKey)
	_, err = node.FromArgs([]string{"-id", "n1"}, func(name string) string { return env[name] }, io.Discard)
	fmt.Println(err)
	// Output:
	// n1 :8080 :7946 async n1=10.0.0.1:7946,n2=10.0.0.2:7946,n3=10.0.0.3:7946
	// 32 32 16
	// node: TANDEM_CLUSTER_KEY is not set: every node of the cluster needs the same keys (generate one with: openssl rand -hex 32)
}
