package redistest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster starts a Redis Cluster of three masters, without replicas, from
// the redis-server that `make test` installs (scripts/services.sh), each in
// a directory of the test's own, and returns a client of it. The servers
// are stopped when the test ends. It fails the test when redis-server is
// missing or the cluster does not form within 20 seconds.
func Cluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH (scripts/services.sh installs it): %v", err)
	}
	ports := clusterPorts(t, 3)
	addrs := make([]string, len(ports))
	nodes := make([]*redis.Client, len(ports))
	for i, port := range ports {
		dir := t.TempDir()
		cmd := exec.Command(bin,
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf",
			"--cluster-node-timeout", "2000", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server on %d: %v", port, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
		nodes[i] = redis.NewClient(&redis.Options{Addr: addrs[i]})
		t.Cleanup(func() { _ = nodes[i].Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, n := range nodes {
		if err := waitFor(ctx, func() error { return n.Ping(ctx).Err() }); err != nil {
			t.Fatalf("redis-server on %s does not answer: %v", addrs[i], err)
		}
	}
	// The slots split in three, then the nodes meet.
	for i, n := range nodes {
		first, last := i*clusterSlots/len(nodes), (i+1)*clusterSlots/len(nodes)-1
		if err := n.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addrs[i], err)
		}
	}
	for i := 1; i < len(nodes); i++ {
		if err := nodes[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(ports[i])).Err(); err != nil {
			t.Fatalf("CLUSTER MEET %s: %v", addrs[i], err)
		}
	}
	for i, n := range nodes {
		err := waitFor(ctx, func() error {
			info, err := n.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(nodes))) {
				return fmt.Errorf("not formed yet:\n%s", info)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("the cluster did not form on %s: %v", addrs[i], err)
		}
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = client.Close() })
	if err := waitFor(ctx, func() error {
		return client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	}); err != nil {
		t.Fatalf("the cluster client does not reach every master: %v", err)
	}
	return client
}

// clusterPorts returns n free ports whose cluster bus ports (port +
// 10000) are free too.
func clusterPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 200 {
			t.Fatal("no free ports for a Redis Cluster")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = bus.Close()
		ports = append(ports, port)
	}
	return ports
}

// waitFor calls fn every 50 ms until it succeeds or ctx ends, and returns
// its last error then.
func waitFor(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
