package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// flagRe matches a flag line of a flag set's usage: its name and, for a
// flag that takes a value, the value's type.
var flagRe = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)( \S+)?$`)

// commandFlags returns the flags of `sluice <cmd>`, from its own -h
// output, each with whether it takes a value.
func commandFlags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	var stderr bytes.Buffer
	if code := run([]string{cmd, "-h"}, nil, io.Discard, &stderr); code != 2 && code != 0 {
		t.Fatalf("sluice %s -h exited %d: %s", cmd, code, stderr.String())
	}
	flags := map[string]bool{}
	for _, m := range flagRe.FindAllStringSubmatch(stderr.String(), -1) {
		flags[m[1]] = m[2] != ""
	}
	if len(flags) == 0 {
		t.Fatalf("sluice %s -h lists no flags:\n%s", cmd, stderr.String())
	}
	return flags
}

// checkArgs checks one sluice command line (subcommand first) against the
// subcommand's flags: every flag exists, a flag that takes a value has one,
// and nothing is left over (serve and migrate take no arguments).
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no sluice command", where)
		return
	}
	if !slices.Contains([]string{"serve", "migrate"}, args[0]) {
		t.Errorf("%s: sluice %s: a deployment runs serve or migrate", where, args[0])
		return
	}
	flags := commandFlags(t, args[0])
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: sluice %s: argument %q is not a flag", where, args[0], a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := flags[name]
		switch {
		case !ok:
			t.Errorf("%s: sluice %s has no flag --%s", where, args[0], name)
		case takes && !hasValue:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				t.Errorf("%s: --%s takes a value", where, name)
			}
			i++
		}
	}
}

// TestDeployCompose checks deploy/compose/compose.yaml: the services a
// deployment needs are there, every sluice service's command is a valid
// sluice command line, and the files it mounts exist.
func TestDeployCompose(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "deploy", "compose", "compose.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "postgres", "migrate", "api", "worker-1", "worker-2", "prometheus", "grafana"} {
		if _, ok := f.Services[want]; !ok {
			t.Errorf("compose has no service %s", want)
		}
	}
	sluiceServices := 0
	for name, s := range f.Services {
		if strings.HasPrefix(s.Image, "sluice:") {
			sluiceServices++
			checkArgs(t, "compose service "+name, s.Command)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), src)); err != nil {
				t.Errorf("compose service %s mounts %s: %v", name, src, err)
			}
		}
	}
	if sluiceServices != 4 {
		t.Errorf("%d sluice services (image sluice:*), want 4: migrate, api, worker-1, worker-2", sluiceServices)
	}
}

// TestDeployHelm renders the Helm chart with helm template and checks the
// sluice command line of every container it renders, as for compose.
func TestDeployHelm(t *testing.T) {
	t.Parallel()
	helm, err := exec.LookPath("helm")
	if err != nil {
		if home, herr := os.UserHomeDir(); herr == nil {
			helm, err = exec.LookPath(filepath.Join(home, "go", "bin", "helm"))
		}
	}
	if err != nil {
		t.Skip("helm is not installed: `make deploy-tools`")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, "template", "sluice", filepath.Join("..", "..", "deploy", "helm", "sluice"))
	cmd.Stderr = &stderr // helm warns there about the links to deploy/prometheus
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	kinds := map[string]int{}
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []container `yaml:"initContainers"`
						Containers     []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kinds[doc.Kind]++
		pod := doc.Spec.Template.Spec
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			checkArgs(t, doc.Kind+" "+doc.Metadata.Name+" container "+c.Name, c.Args)
		}
	}
	for _, k := range []string{"Deployment", "Job", "PodDisruptionBudget", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("helm template renders no %s (rendered %v)", k, kinds)
		}
	}
}

// container is what the Helm test reads of a rendered container.
type container struct {
	Name string   `yaml:"name"`
	Args []string `yaml:"args"`
}
