package memberlist_test

import (
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/memberlist"
)

// Two nodes on memberlist: the first starts the cluster, the second joins
// through its gossip address.
func Example() {
	clusterKey := make([]byte, buddy.ClusterKeySize)
	_, _ = rand.Read(clusterKey)
	start := func(id string, join []string) (*buddy.Node, *memberlist.Membership) {
		mem, err := memberlist.New(memberlist.Config{
			Preset:     memberlist.Local, // LAN (the default) on a real network
			BindAddr:   "127.0.0.1:0",
			Join:       join,
			ClusterKey: clusterKey,
		})
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0") // replication
		if err != nil {
			log.Fatal(err)
		}
		node, err := buddy.New(buddy.Config{ID: id, Listener: ln, ClusterKeys: [][]byte{clusterKey}, Membership: mem})
		if err != nil {
			log.Fatal(err)
		}
		return node, mem
	}
	n1, m1 := start("n1", nil)
	defer n1.Close()
	n2, _ := start("n2", []string{m1.Addr()})
	defer n2.Close()
	for deadline := time.Now().Add(10 * time.Second); n1.Stats().Buddy == "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("n1's buddy:", n1.Stats().Buddy, "- n2's buddy:", n2.Stats().Buddy)
	// Output: n1's buddy: n2 - n2's buddy: n1
}
