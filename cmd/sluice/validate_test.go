package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// validateCase is one run of sluice validate and what it must print.
type validateCase struct {
	name       string
	args       []string
	stdin      string
	wantCode   int
	wantOut    string
	wantErrSub string // substring of stderr; "" means stderr must be empty
}

// runValidateCases runs each case as a parallel subtest.
func runValidateCases(t *testing.T, tests []validateCase) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := runValidate(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if got := stdout.String(); got != tt.wantOut {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
			switch got := stderr.String(); {
			case tt.wantErrSub == "" && got != "":
				t.Errorf("stderr = %q, want empty", got)
			case !strings.Contains(got, tt.wantErrSub):
				t.Errorf("stderr = %q, want it to contain %q", got, tt.wantErrSub)
			}
		})
	}
}

// TestRunValidate: addresses from the arguments or standard input, one
// verdict a line in their order, as text or JSON.
func TestRunValidate(t *testing.T) {
	t.Parallel()
	tests := []validateCase{
		{
			name:     "all valid args",
			args:     []string{"--channel", "email", "user@example.com", "first.last+tag@bücher.de"},
			wantCode: 0,
			wantOut:  "valid\nvalid\n",
		},
		{
			name:     "mixed args keep order",
			args:     []string{"--channel=email", "user@example.com", "Bob <bob@example.com>", "user@localhost", ""},
			wantCode: 1,
			wantOut:  "valid\ninvalid: syntax\ninvalid: bad_domain\ninvalid: empty\n",
		},
		{
			name:     "single dash flags",
			args:     []string{"-channel", "sms", "+14155552671", "+1 415 555 2671", "+1415555267"},
			wantCode: 1,
			wantOut:  "valid\ninvalid: not_e164\ninvalid: invalid_number\n",
		},
		{
			name:     "push",
			args:     []string{"--channel", "push", strings.Repeat("ab", 32), "short"},
			wantCode: 1,
			wantOut:  "valid\ninvalid: bad_token\n",
		},
		{
			name:     "double dash before dash address",
			args:     []string{"--channel", "email", "--", "-user@example.com"},
			wantCode: 0,
			wantOut:  "valid\n",
		},
		{
			name:     "stdin lines",
			args:     []string{"--channel", "email"},
			stdin:    "user@example.com\nnope\r\n\n user@example.com\nlast@example.com",
			wantCode: 1,
			wantOut:  "valid\ninvalid: syntax\ninvalid: empty\ninvalid: syntax\nvalid\n",
		},
		{
			name:     "stdin final newline is not a line",
			args:     []string{"--channel", "sms"},
			stdin:    "+14155552671\r\n+442071838750\n",
			wantCode: 0,
			wantOut:  "valid\nvalid\n",
		},
		{
			name:     "empty stdin",
			args:     []string{"--channel", "push"},
			stdin:    "",
			wantCode: 0,
			wantOut:  "",
		},
		{
			name:     "args win over stdin",
			args:     []string{"--channel", "email", "user@example.com"},
			stdin:    "nope\n",
			wantCode: 0,
			wantOut:  "valid\n",
		},
		{
			name:     "json",
			args:     []string{"--channel", "email", "--json", "user@example.com", "<a&b@example.com>"},
			wantCode: 1,
			wantOut: `{"address":"user@example.com","valid":true,"reason":""}` + "\n" +
				`{"address":"<a&b@example.com>","valid":false,"reason":"syntax","detail":"display names and angle brackets are not accepted"}` + "\n",
		},
		{
			name:     "json stdin",
			args:     []string{"--json", "--channel", "sms"},
			stdin:    "+14155552671\n\n",
			wantCode: 1,
			wantOut: `{"address":"+14155552671","valid":true,"reason":""}` + "\n" +
				`{"address":"","valid":false,"reason":"empty","detail":"address is empty"}` + "\n",
		},
	}
	runValidateCases(t, tests)
}

// TestRunValidateUsage: flags sluice validate cannot run with, and an
// input line too long to read, exit 2 with the reason on stderr; -h prints
// the usage.
func TestRunValidateUsage(t *testing.T) {
	t.Parallel()
	tests := []validateCase{
		{
			name:       "missing channel",
			args:       []string{"user@example.com"},
			wantCode:   2,
			wantErrSub: "--channel flag is required",
		},
		{
			name:       "unknown channel",
			args:       []string{"--channel", "fax", "+14155552671"},
			wantCode:   2,
			wantErrSub: `unknown channel "fax"`,
		},
		{
			name:       "channel is case sensitive",
			args:       []string{"--channel", "EMAIL", "user@example.com"},
			wantCode:   2,
			wantErrSub: "unknown channel",
		},
		{
			name:       "unknown flag",
			args:       []string{"--channel", "email", "--verbose", "user@example.com"},
			wantCode:   2,
			wantErrSub: "flag provided but not defined: -verbose",
		},
		{
			name:       "flag without value",
			args:       []string{"--channel"},
			wantCode:   2,
			wantErrSub: "flag needs an argument",
		},
		{
			name:       "help",
			args:       []string{"-h"},
			wantCode:   0,
			wantErrSub: "usage: sluice validate --channel email|sms|push",
		},
		{
			name:       "line too long",
			args:       []string{"--channel", "email"},
			stdin:      "user@example.com\n" + strings.Repeat("a", maxValidateLine+1) + "\n",
			wantCode:   2,
			wantOut:    "valid\n",
			wantErrSub: "line 2 of standard input is longer than",
		},
	}
	runValidateCases(t, tests)
}

// TestRunValidateJSONRoundTrip checks that --json output is valid JSON for
// awkward addresses, one object per input line.
func TestRunValidateJSONRoundTrip(t *testing.T) {
	t.Parallel()
	inputs := []string{"\"quoted\\\" name\"@example.com", "tab\there@example.com", "bad\xffutf8@example.com", "\u2028@x.org"}
	var stdout, stderr bytes.Buffer
	code := runValidate(append([]string{"--json", "--channel", "email", "--"}, inputs...), strings.NewReader(""), &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit code = %d, want 1 (stderr %q)", code, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	for i, in := range inputs {
		var res validateResult
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("decoding line %d: %v", i+1, err)
		}
		if want := strings.ToValidUTF8(in, "\ufffd"); res.Address != want {
			t.Errorf("line %d address = %q, want %q", i+1, res.Address, want)
		}
		if res.Valid != (res.Reason == "") {
			t.Errorf("line %d: valid %v with reason %q", i+1, res.Valid, res.Reason)
		}
	}
	if dec.More() {
		t.Error("more JSON values than inputs")
	}
}

func TestRunValidateIOErrors(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	readErr := errors.New("disk on fire")
	code := runValidate([]string{"--channel", "email"}, iotest.ErrReader(readErr), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "disk on fire") {
		t.Errorf("read error: code %d, stderr %q; want 2 and the error", code, stderr.String())
	}

	stderr.Reset()
	code = runValidate([]string{"--channel", "email", "user@example.com"}, strings.NewReader(""), failingWriter{}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "closed pipe") {
		t.Errorf("write error: code %d, stderr %q; want 2 and the error", code, stderr.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
