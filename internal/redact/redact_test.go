package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://sluice:s3cret@db:5432/sluice?sslmode=disable", "postgres://sluice:xxxxx@db:5432/sluice?sslmode=disable"},
		{"nats://s3cret@127.0.0.1:4222", "nats://xxxxx@127.0.0.1:4222"},
		{"postgres://sluice@127.0.0.1:54329/sluice", "postgres://sluice@127.0.0.1:54329/sluice"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"http://127.0.0.1:9090/metrics", "http://127.0.0.1:9090/metrics"},
		{"postgres://u:p@ss@db/x", "postgres://u:xxxxx@db/x"},
		{"host=db user=sluice password=s3cret", Unprintable},
		{"postgres://u:s3cret@db:port/x", Unprintable},
		{"::", Unprintable},
		{"", Unprintable},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
