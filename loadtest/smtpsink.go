package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/internal/ctxtime"
)

// Postfix's test programs (Debian package postfix), the defaults of
// Config.SMTPSinkPath and Config.SMTPSourcePath.
const (
	SMTPSinkPathDefault   = "/usr/sbin/smtp-sink"
	SMTPSourcePathDefault = "/usr/sbin/smtp-source"
)

// SMTPSourceMessageLength is the payload size smtp-source sends (-l), as
// in the figures of the issue that set the target.
const SMTPSourceMessageLength = 1000

// smtpSinkBacklog is smtp-sink's listen backlog.
const smtpSinkBacklog = "1000"

// postfixSink is postfix's smtp-sink on a free loopback port.
type postfixSink struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr bytes.Buffer
}

// startPostfixSink starts smtp-sink and waits until it accepts connections.
func startPostfixSink(ctx context.Context, path string) (*postfixSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &postfixSink{addr: ln.Addr().String(), exited: make(chan struct{})}
	ln.Close()
	var args []string
	if os.Geteuid() == 0 {
		// As root smtp-sink insists on dropping privileges.
		user := "nobody"
		if _, err := osuser.Lookup("postfix"); err == nil {
			user = "postfix"
		}
		args = append(args, "-u", user)
	}
	s.cmd = exec.Command(path, append(args, s.addr, smtpSinkBacklog)...)
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: smtp-sink: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("loadtest: smtp-sink exited: %s", s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("loadtest: smtp-sink did not listen on %s: %v", s.addr, err)
		}
		if err := ctxtime.Sleep(ctx, 10*time.Millisecond); err != nil { // polling the child's listener
			s.stop()
			return nil, err
		}
	}
}

func (s *postfixSink) stop() {
	s.cmd.Process.Kill()
	<-s.exited
}

// runSMTPSource runs smtp-source into addr: n messages over sessions
// parallel sessions, each message on a new connection unless keep (-d),
// and reports its rate.
func runSMTPSource(ctx context.Context, path, addr string, n, sessions int, keep bool) (*SMTPSourceReport, error) {
	args := []string{"-l", strconv.Itoa(SMTPSourceMessageLength), "-m", strconv.Itoa(n), "-s", strconv.Itoa(sessions),
		"-f", "noreply@example.com", "-t", "user@example.com"}
	if keep {
		args = append([]string{"-d"}, args...)
	}
	args = append(args, addr)
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loadtest: smtp-source: %w: %s", err, out.String())
	}
	secs := time.Since(start).Seconds()
	r := &SMTPSourceReport{Command: path, Args: args, Messages: n, Sessions: sessions, KeepsConnections: keep, Seconds: secs}
	if st := cmd.ProcessState; st != nil {
		r.CPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
	}
	if secs > 0 {
		r.MsgsPerSec = float64(n) / secs
	}
	return r, nil
}

// ledgerProvider records what its provider accepted in a ledger: the
// outside check of the delivered count when the sink is another process.
type ledgerProvider struct {
	next   dispatch.Provider
	ledger *sink.Ledger
}

func (p ledgerProvider) Send(ctx context.Context, m *dispatch.Message) error {
	err := p.next.Send(ctx, m)
	if err == nil {
		p.ledger.Add(m)
	}
	return err
}
