package tandemotel_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemotel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// A node's manager and buddy.Node reported through an SDK meter provider.
// In production the provider has a periodic reader and an exporter (OTLP,
// Prometheus); here a manual reader collects once. The node runs alone
// (no peers), so it has no buddy.
func Example() {
	clusterKey := make([]byte, buddy.ClusterKeySize)
	cookieKey := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	for _, b := range [][]byte{clusterKey, cookieKey.Hash, cookieKey.Block} {
		_, _ = rand.Read(b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	node, err := buddy.New(buddy.Config{ID: "n1", Listener: ln, ClusterKeys: [][]byte{clusterKey}})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{cookieKey}, Replicator: node})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	metrics, err := tandemotel.New(tandemotel.WithMeterProvider(provider), tandemotel.WithManager(m), tandemotel.WithNode(node))
	if err != nil {
		log.Fatal(err)
	}
	defer metrics.Unregister()

	app := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = core.FromContext(r.Context()).Set("cart", []string{"tea"})
	}))
	app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/cart/add", nil))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch mt.Name {
			case "tandem.sessions", "tandem.buddy.present":
				var v int64
				switch d := mt.Data.(type) {
				case metricdata.Sum[int64]:
					v = d.DataPoints[0].Value
				case metricdata.Gauge[int64]:
					v = d.DataPoints[0].Value
				}
				fmt.Println(mt.Name, v)
			}
		}
	}
	// Output:
	// tandem.sessions 1
	// tandem.buddy.present 0
}
