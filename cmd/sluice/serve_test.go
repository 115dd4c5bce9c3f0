package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestServeProvidersDefaultReal: serve sends through real providers unless
// told otherwise. A worker given no flag at all asks for the real
// providers' settings instead of quietly starting local sinks.
func TestServeProvidersDefaultReal(t *testing.T) {
	t.Setenv("SLUICE_PROVIDERS", "")
	t.Setenv("SLUICE_SMTP_ADDR", "")
	t.Setenv("SLUICE_TWILIO_ACCOUNT_SID", "")
	t.Setenv("SLUICE_FCM_CREDENTIALS_FILE", "")
	t.Setenv("SLUICE_APNS_KEY_FILE", "")
	var stderr bytes.Buffer
	err := runServe(context.Background(), []string{"--worker", "--database-url", "postgres://127.0.0.1:1/none",
		"--errorlog-keep-addresses", "--env", "staging"}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--providers=real but no provider is configured") {
		t.Fatalf("serve --worker with no provider flag: %v (stderr %s)", err, stderr.String())
	}
}

// TestCheckProviders: the sinks are for dev and test; anywhere else they
// need --allow-sink-providers, and then the process says so at WARN.
func TestCheckProviders(t *testing.T) {
	for _, tc := range []struct {
		which, env string
		allow      bool
		wantErr    string // "" for none
		wantWarn   bool
	}{
		{"real", "production", false, "", false},
		{"real", "dev", false, "", false},
		{"sink", "dev", false, "", false},
		{"sink", "test", false, "", false},
		{"sink", "staging", false, "--allow-sink-providers", false},
		{"sink", "production", false, "would send nothing", false},
		{"sink", "staging", true, "", true},
		{"sink", "production", true, "", true},
		{"smtp", "dev", false, `unknown provider set "smtp"`, false},
	} {
		var log bytes.Buffer
		err := checkProviders(tc.which, tc.env, tc.allow, slog.New(slog.NewTextHandler(&log, nil)))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s/%s/allow=%v: %v", tc.which, tc.env, tc.allow, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s/%s/allow=%v: error %v, want one containing %q", tc.which, tc.env, tc.allow, err, tc.wantErr)
		}
		if warned := strings.Contains(log.String(), "level=WARN") && strings.Contains(log.String(), "NOTHING"); warned != tc.wantWarn {
			t.Errorf("%s/%s/allow=%v: warned %v, want %v: %s", tc.which, tc.env, tc.allow, warned, tc.wantWarn, log.String())
		}
	}
}
