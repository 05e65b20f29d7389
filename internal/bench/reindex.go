package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// The reindex measurement: pacsd reindex rebuilds the index of the C-FIND
// corpus, and of the DICOMweb series stored after it, from pacsd's
// filesystem store alone, into a new SQLite file.

// reindexResult is one run of pacsd reindex.
type reindexResult struct {
	instances int
	wall, cpu time.Duration
}

// measureReindex stops the pacsd of cp, which holds the corpus, and runs
// pacsd reindex on its data directory; the rebuilt index must hold as
// many instances as the one pacsd kept.
func measureReindex(ctx context.Context, bin string, cp *corpusPeers, logf func(string, ...any)) (*reindexResult, error) {
	i := slices.Index(cp.peers, "pacsd")
	if i < 0 {
		return nil, nil
	}
	if err := cp.servers[i].stop(); err != nil {
		return nil, err
	}
	data := filepath.Join(cp.dir, "pacsd", "data")
	want, err := indexedInstances(ctx, filepath.Join(data, "index.db"))
	if err != nil {
		return nil, err
	}
	db := filepath.Join(cp.dir, "reindex.db")
	logf("reindex: rebuilding the index of %d instances", want)
	syscall.Sync()
	cmd := exec.CommandContext(ctx, bin, "reindex", "--data", data, "--index", "sqlite://"+db)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pacsd reindex: %w\n%s", err, out.Bytes()[max(0, out.Len()-2000):])
	}
	res := &reindexResult{wall: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if res.instances, err = indexedInstances(ctx, db); err != nil {
		return nil, err
	}
	if res.instances != want {
		return nil, fmt.Errorf("pacsd reindex indexed %d instances, pacsd had %d", res.instances, want)
	}
	logf("reindex: %d instances in %.1f s", res.instances, res.wall.Seconds())
	return res, nil
}

// printReindex prints the reindex measurement.
func (r *report) printReindex(w io.Writer) {
	x := r.reindex
	if x == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	what := "the C-FIND corpus"
	if r.web != nil {
		what += " and the DICOMweb series"
	}
	p("pacsd reindex: the index rebuilt from pacsd's filesystem store alone (%s) into a new", what)
	p("SQLite file, reading and hashing every object; pacsd stopped, dirty pages synced first, the objects in the")
	p("page cache as loading left them")
	p("  %d instances in %.1f s: %.0f instances/s, pacsd CPU %.1f s (%.2f ms per instance)",
		x.instances, x.wall.Seconds(), perSecond(x.instances, x.wall), x.cpu.Seconds(), x.cpu.Seconds()*1e3/float64(x.instances))
	p("")
}
