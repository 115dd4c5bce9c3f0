// Package apitest makes requests to a running sluice HTTP API from tests:
// one helper, so that every package's tests call the API the same way.
package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// Do sends method path to the API at base, with body encoded as JSON (nil:
// no body) and key as the bearer key ("" none), and returns the status, the
// headers and the body. Transport errors fail the test.
func Do(tb testing.TB, base, method, path, key string, body any) (int, http.Header, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(tb.Context(), method, base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// Must is Do that fails the test unless the status is want; it returns the
// body.
func Must(tb testing.TB, base, method, path, key string, body any, want int) []byte {
	tb.Helper()
	code, _, data := Do(tb, base, method, path, key, body)
	if code != want {
		tb.Fatalf("%s %s = %d, want %d: %s", method, path, code, want, data)
	}
	return data
}
