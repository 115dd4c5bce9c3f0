//go:build fleet

package fleettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServerBin finds the nats-server binary or fails the test: the fleet
// test never skips for want of it.
func natsServerBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_NATS_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("nats-server not found (SLUICE_NATS_SERVER, PATH, $(go env GOPATH)/bin): run `make test-fleet`, which installs the version go.mod pins")
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsNode is one nats-server process of the cluster; it keeps its ports
// and store across restarts.
type natsNode struct {
	name, conf, logFile string
	port                int
	cmd                 *exec.Cmd
}

// cluster is three nats-server processes routed to each other on loopback.
type cluster struct {
	t     *testing.T
	bin   string
	nodes []*natsNode
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: natsServerBin(t)}
	dir := t.TempDir()
	clusterPorts := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range clusterPorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), port: freePort(t)}
		store := filepath.Join(dir, n.name)
		n.conf, n.logFile = store+".conf", store+".log"
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n"+
			"cluster {\n  name: sluice\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			n.name, n.port, store, clusterPorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		c.start(n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.kill(n)
		}
		if t.Failed() {
			for _, n := range c.nodes {
				logTail(t, n.logFile, 15)
			}
		}
	})
	c.waitReady()
	return c
}

// start runs n's nats-server.
func (c *cluster) start(n *natsNode) {
	c.t.Helper()
	n.cmd = exec.Command(c.bin, "-c", n.conf, "-l", n.logFile)
	if err := n.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.name, err)
	}
}

// kill stops n at once (SIGKILL): no shutdown, no flush, no goodbye to the
// cluster.
func (c *cluster) kill(n *natsNode) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// urls is the comma-separated seed list of every node.
func (c *cluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(u, ",")
}

func (c *cluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// connect opens the test's own connection to the cluster.
func (c *cluster) connect() jetstream.JetStream {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// waitReady waits until the cluster has a JetStream meta leader.
func (c *cluster) waitReady() {
	c.t.Helper()
	js := c.connect()
	poll(c.t, 60*time.Second, "the JetStream cluster to elect a meta leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil, fmt.Sprint(err)
	})
}

// poll calls cond until it holds, failing the test with cond's last word
// after d.
func poll(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", d, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTail logs the last n lines of a process's log file.
func logTail(t *testing.T, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("%s: %v", path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("--- last lines of %s:\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
