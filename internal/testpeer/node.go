package testpeer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedNodeModules makes sure that node and the packages of the node
// project in dir (a package-lock.json installed with npm ci) are
// installed, skipping tb, or failing it under CI=true, as Need does for a
// missing program.
func NeedNodeModules(tb testing.TB, dir string) {
	tb.Helper()
	Need(tb, "node")
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		tb.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	msg := "the node packages of " + dir + " are not installed, or older than its package-lock.json"
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s, and under CI=true a missing peer fails the test: the CI setup must run scripts/install-test-deps, as `make test` does", msg)
	}
	tb.Skipf("%s; run `make test`, which installs them (npm ci)", msg)
}

// RunNode runs the node script of the project in dir, handing it plan as
// a JSON file named by its one argument, and decodes the JSON object the
// script prints as its last line of standard output into result. The
// script's standard error is logged with tb.
func RunNode(tb testing.TB, dir string, timeout time.Duration, script string, plan, result any) {
	tb.Helper()
	b, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	planFile := filepath.Join(tb.TempDir(), "plan.json")
	if err := os.WriteFile(planFile, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), timeout)
	defer cancel()
	start := time.Now()
	stdout, stderr, err := Run(ctx, "node", filepath.Join(dir, script), planFile)
	tb.Logf("node %s: %v", script, time.Since(start).Round(time.Millisecond))
	if strings.TrimSpace(stderr) != "" {
		tb.Logf("node %s standard error:\n%s", script, tail(stderr, 60))
	}
	if err != nil {
		tb.Fatalf("node %s: %v", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), result); err != nil {
		tb.Fatalf("node %s printed no JSON result: %v\n%s", script, err, tail(stdout, 20))
	}
}

// Step decodes the result of one step of a node script, res being the
// results by step name, failing tb with the step's error if it failed.
func Step(tb testing.TB, res map[string]json.RawMessage, name string, v any) {
	tb.Helper()
	raw, ok := res[name]
	if !ok {
		tb.Fatalf("no result for %s", name)
	}
	var failed struct{ Error *string }
	if json.Unmarshal(raw, &failed) == nil && failed.Error != nil {
		tb.Fatalf("%s failed: %s", name, *failed.Error)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.Fatalf("%s: %v\n%s", name, err, raw)
	}
}
