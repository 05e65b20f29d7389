package testpeer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// goBinDirs returns the directories where `go install` may have put a
// command, most specific first.
func goBinDirs() []string {
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	// go env also reads the user's go env file (go env -w), which the
	// environment variables alone miss.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) == 2 {
			gobin, gopath = lines[0], lines[1]
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	if first, _, _ := strings.Cut(gopath, string(filepath.ListSeparator)); first != "" {
		dirs = append(dirs, filepath.Join(first, "bin"))
	}
	return dirs
}
