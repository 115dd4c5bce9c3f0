package email_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/wire"
)

// smtpSinkPath is Postfix's test SMTP server (Debian package postfix).
const smtpSinkPath = "/usr/sbin/smtp-sink"

// startPostfixSink runs smtp-sink on a free loopback port with the extra
// arguments (such as "-f RCPT") and returns its address and the file it
// dumps every transaction to.
func startPostfixSink(t *testing.T, args ...string) (addr, dump string) {
	t.Helper()
	if _, err := os.Stat(smtpSinkPath); err != nil {
		t.Skipf("%s not found: install Debian's postfix package (apt-get install -y postfix) to run the SMTP client against a real MTA's test server", smtpSinkPath)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	// smtp-sink drops privileges (to postfix when run as root) before it
	// writes, so its directory must be open to that user.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	dump = filepath.Join(dir, "dump")
	flags := []string{"-D", dump}
	if os.Geteuid() == 0 {
		// As root smtp-sink insists on dropping privileges.
		user := "nobody"
		if _, err := osuser.Lookup("postfix"); err == nil {
			user = "postfix"
		}
		flags = append(flags, "-u", user)
	}
	cmd := exec.Command(smtpSinkPath, append(append(flags, args...), addr, "100")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("smtp-sink stderr: %s", stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, dump
		}
		select {
		case <-exited:
			t.Fatalf("smtp-sink exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not listen on %s: %v; stderr: %s", addr, err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling for the child's listener
	}
}

func TestPostfixSmtpSink(t *testing.T) {
	t.Parallel()
	addr, dump := startPostfixSink(t)
	p := newProvider(t, email.Config{Addr: addr, From: "noreply@example.com", TLS: email.TLSNone, MaxConns: 2})
	for i := range 20 {
		m := &dispatch.Message{ID: "pf-" + strconv.Itoa(i), To: fmt.Sprintf("u%d@example.com", i), Subject: "Grüße", Body: "hello"}
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("send %d to smtp-sink: %v", i, err)
		}
	}
	// smtp-sink appends each transaction to the dump once it is done.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(dump)
		n := bytes.Count(b, []byte("Message-ID: <pf-"))
		if n == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink dump holds %d of 20 Message-IDs", n)
		}
		time.Sleep(10 * time.Millisecond) // polling a file another process writes
	}
}

func TestPostfixSmtpSinkHardRejectRcpt(t *testing.T) {
	t.Parallel()
	addr, _ := startPostfixSink(t, "-f", "RCPT")
	p := newProvider(t, email.Config{Addr: addr, From: "noreply@example.com", TLS: email.TLSNone})
	for i := range 3 {
		err := p.Send(t.Context(), &dispatch.Message{ID: "r" + strconv.Itoa(i), To: "nobody@example.com"})
		var re *dispatch.RejectedError
		if !errors.As(err, &re) || re.Reason != wire.ReasonRecipientRejected {
			t.Fatalf("send %d with RCPT hard-rejected: %v, want recipient_rejected", i, err)
		}
	}
}

func TestPostfixSmtpSinkSoftRejectRcpt(t *testing.T) {
	t.Parallel()
	addr, _ := startPostfixSink(t, "-r", "RCPT")
	p := newProvider(t, email.Config{Addr: addr, From: "noreply@example.com", TLS: email.TLSNone})
	err := p.Send(t.Context(), &dispatch.Message{ID: "s", To: "later@example.com"})
	if err == nil || errors.Is(err, dispatch.ErrRejected) || errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("send with RCPT soft-rejected: %v, want a transient error", err)
	}
}

func TestPostfixSmtpSinkRejectsData(t *testing.T) {
	t.Parallel()
	addr, _ := startPostfixSink(t, "-f", ".")
	p := newProvider(t, email.Config{Addr: addr, From: "noreply@example.com", TLS: email.TLSNone})
	err := p.Send(t.Context(), &dispatch.Message{ID: "d", To: "a@example.com"})
	var re *dispatch.RejectedError
	if !errors.As(err, &re) || re.Reason != wire.ReasonContentRejected {
		t.Fatalf("send with the final dot hard-rejected: %v, want content_rejected", err)
	}
}
