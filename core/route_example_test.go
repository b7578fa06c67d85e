package core_test

import (
	"fmt"
	"log"

	"github.com/tandemsession/tandem/core"
)

// Route cookies for Envoy's stateful-session filter: each node ID maps to
// the address at which Envoy reaches that node's application. Envoy's
// filter is configured with the cookie name tandem_node and path "/".
func ExampleEnvoyRoute() {
	route, err := core.EnvoyRoute(map[string]string{
		"n1": "10.0.0.1:8080",
		"n2": "10.0.0.2:8080",
	}, core.EnvoyProto)
	if err != nil {
		log.Fatal(err)
	}
	cfg := core.Config{
		Keys: []core.KeyPair{{Hash: make([]byte, 32), Block: make([]byte, 32)}}, // yours, the same on every node
		Cookie: core.CookieConfig{
			RouteName:  core.DefaultRouteCookie, // the cookie name in Envoy's configuration
			RouteValue: route,
		},
	}
	m, err := core.NewManager(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(route("n1"))
	fmt.Printf("%q\n", route("n7")) // unknown: no route cookie, Envoy load-balances
	fmt.Println(core.EnvoyCookieValue("1.2.3.4:80", core.EnvoyPlain))
	// Output:
	// Cg0xMC4wLjAuMTo4MDgw
	// ""
	// MS4yLjMuNDo4MA==
}
