package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/migrate"
)

// The migration measurement (issue 12): a legacy Orthanc holding
// -migrate-studies studies of -migrate-instances instances of -size is
// migrated by `pacsd migrate`, by C-GET and by C-MOVE, beside dcmtk's
// movescu moving the same studies from the same Orthanc to storescp, one
// after the other; then the same files are imported by `pacsd import`
// beside storescu sending them to pacsd serve; and discovery runs on a
// source of -discovery-studies studies that answers at most
// -discovery-cap matches a query.

// The targets of issue 12.
const (
	targetMigrateVsMovescu = 0.8 // pacsd migrate MB/s ≥ 0.8 × movescu's
	targetConcurrency      = 1.5 // --concurrency 4 ≥ 1.5 × --concurrency 1
	targetImportVsStorescu = 0.8 // pacsd import ≥ 0.8 × storescu to pacsd
)

// migrateRun is one timed run of the migration measurement.
type migrateRun struct {
	name  string
	wall  time.Duration
	peers string // what else ran: the source, the destination
}

// migrateResult is the whole migration measurement.
type migrateResult struct {
	studies, instances int
	bytes              int64
	runs               []migrateRun
	// Discovery of the large capped source.
	discStudies, discCap, discQueries, discFound int
	discWall                                     time.Duration
	discIncomplete                               []string
}

// measureMigrate runs the migration measurement in a directory of tmp.
func measureMigrate(ctx context.Context, o options, bin, tmp string, logf func(string, ...any)) (*migrateResult, error) {
	dir := filepath.Join(tmp, "migrate")
	corpus := filepath.Join(dir, "corpus")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &migrateResult{studies: o.migrateStudies, instances: o.migrateStudies * o.migrateInstances}
	logf("migrate: writing %d studies of %d instances of %s", o.migrateStudies, o.migrateInstances, o.size)
	var studies []string
	for i := range o.migrateStudies {
		d := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i)
		tmpl := dcmgen.Instance{
			Patient: dcmgen.Patient{ID: fmt.Sprintf("M%d", i), Name: fmt.Sprintf("MIGRATE^%d", i)},
			Study:   dcmgen.Study{Date: d.Format("20060102"), Time: "120000", AccessionNumber: fmt.Sprintf("M%d", i)},
		}
		files, err := dcmgen.WriteSeries(corpus, o.migrateInstances, int64(o.size), tmpl)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			res.bytes += f.Size
		}
		studies = append(studies, files[0].StudyInstanceUID)
	}

	// The source: Orthanc, knowing storescp and pacsd migrate as C-MOVE
	// destinations.
	movePort, err := testpeer.FreePort()
	if err != nil {
		return nil, err
	}
	scp, err := testpeer.StartStoreSCP(ctx, testpeer.StoreSCPOptions{AET: moveDestination, Dir: filepath.Join(dir, "storescp")})
	if err != nil {
		return nil, err
	}
	defer scp.Stop()
	odir := filepath.Join(dir, "orthanc")
	os.Mkdir(odir, 0o755)
	orth, err := testpeer.StartOrthanc(ctx, testpeer.OrthancOptions{Dir: odir, AET: "LEGACY", Modalities: map[string]testpeer.Modality{
		"scp": scp.Modality(), "pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: movePort},
	}})
	if err != nil {
		return nil, err
	}
	defer orth.Stop()
	logf("migrate: loading Orthanc")
	src := &server{aet: orth.AET, host: "127.0.0.1", port: orth.DICOMPort, pid: orth.Process().PID()}
	if _, err := send(ctx, src, true, corpus); err != nil {
		return nil, err
	}
	var stats struct{ CountInstances int }
	if err := orth.GetJSON(ctx, "/statistics", &stats); err != nil || stats.CountInstances != res.instances {
		return nil, fmt.Errorf("the source, Orthanc, holds %d of %d instances (%v)", stats.CountInstances, res.instances, err)
	}
	run := func(name, peers string, fn func(dir string) error) error {
		rdir := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.Mkdir(rdir, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(rdir)
		syscall.Sync()
		start := time.Now()
		if err := fn(rdir); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		wall := time.Since(start)
		res.runs = append(res.runs, migrateRun{name: name, wall: wall, peers: peers})
		logf("migrate: %-28s %7.2f s  %7.1f MB/s", name, wall.Seconds(), float64(res.bytes)/1e6/wall.Seconds())
		return nil
	}

	if err := run("movescu to storescp", "movescu, one study at a time", func(string) error {
		for _, st := range studies {
			out, err := exec.CommandContext(ctx, "movescu", "-S", "-aet", "BENCH", "-aec", orth.AET, "-aem", moveDestination,
				"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+st, "127.0.0.1", strconv.Itoa(orth.DICOMPort)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("movescu: %v\n%s", err, lastLines(string(out), 10))
			}
		}
		files, err := scp.Files()
		if err == nil && len(files) != res.instances {
			err = fmt.Errorf("storescp holds %d of %d instances", len(files), res.instances)
		}
		return err
	}); err != nil {
		return nil, err
	}
	migrateWith := func(via string, concurrency int) func(string) error {
		return func(rdir string) error {
			args := []string{"migrate", "--from", orth.AET, "--remote-ae", orth.AET + "=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(orth.DICOMPort)),
				"--data", filepath.Join(rdir, "data"), "--ae-title", "PACSD", "--dimse-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(movePort)),
				"--via", via, "--concurrency", strconv.Itoa(concurrency), "--log-level", "warn"}
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
			out, err := cmd.CombinedOutput()
			want := fmt.Sprintf("%d studies: %d verified", res.studies, res.studies)
			if err != nil || !bytes.Contains(out, []byte(want)) {
				return fmt.Errorf("pacsd %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 15))
			}
			return nil
		}
	}
	for _, r := range []struct {
		via         string
		concurrency int
	}{{"get", 1}, {"move", 1}, {"get", 4}, {"move", 4}} {
		name := fmt.Sprintf("pacsd migrate --via %s -c %d", r.via, r.concurrency)
		if err := run(name, "pacsd migrate", migrateWith(r.via, r.concurrency)); err != nil {
			return nil, err
		}
	}
	orth.Stop()

	// Import of the same files, beside storescu of them to pacsd serve.
	if err := run("storescu to pacsd serve", "storescu, one association", func(rdir string) error {
		s, err := startPacsd(ctx, bin, rdir, nil)
		if err != nil {
			return err
		}
		defer s.stop()
		if _, err := send(ctx, s, true, corpus); err != nil {
			return err
		}
		n, err := s.stored(ctx)
		if err == nil && n != res.instances {
			err = fmt.Errorf("pacsd holds %d of %d instances", n, res.instances)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := run("pacsd import", "pacsd import, default concurrency", func(rdir string) error {
		out, err := exec.CommandContext(ctx, bin, "import", "--data", filepath.Join(rdir, "data"), "--log-level", "warn", corpus).CombinedOutput()
		want := fmt.Sprintf("import: %d files verified", res.instances)
		if err != nil || !bytes.Contains(out, []byte(want)) {
			return fmt.Errorf("pacsd import: %v\n%s", err, lastLines(string(out), 15))
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// Discovery on a large source with a cap, in this process.
	logf("migrate: discovery of %d studies capped at %d", o.discoveryStudies, o.discoveryCap)
	fake := newCappedSource(o.discoveryStudies, o.discoveryCap)
	found := map[string]bool{}
	d := &migrate.Discovery{Source: fake, Found: func(_ context.Context, sts []*migrate.Study) error {
		for _, s := range sts {
			found[s.StudyInstanceUID] = true
		}
		return nil
	}}
	start := time.Now()
	dres, err := d.Run(ctx)
	if err != nil {
		return nil, err
	}
	res.discWall, res.discStudies, res.discCap = time.Since(start), o.discoveryStudies, o.discoveryCap
	res.discQueries, res.discFound, res.discIncomplete = dres.Queries, len(found), dres.Incomplete
	if len(found) != o.discoveryStudies {
		return nil, fmt.Errorf("discovery found %d of %d studies", len(found), o.discoveryStudies)
	}
	return res, nil
}

// cappedSource is a source of many studies in memory that ends each
// answer after cap matches, with the Cancel status as Orthanc does. Only
// discovery uses it.
type cappedSource struct {
	studies []*migrate.Study // by date
	cap     int
}

func newCappedSource(n, limit int) *cappedSource {
	rng := rand.New(rand.NewPCG(1, 2))
	mods := []string{"CT", "MR", "CR", "US", "DX", "MG", `CT\SR`}
	s := &cappedSource{cap: limit}
	for i := range n {
		// Ten years of a department, busier in recent ones.
		day := int(3650 * (1 - rng.Float64()*rng.Float64()))
		s.studies = append(s.studies, &migrate.Study{
			StudyInstanceUID: "1.2.826.0.1.3680043.10.9." + strconv.Itoa(i+1),
			StudyDate:        time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, day).Format("20060102"),
			StudyTime:        fmt.Sprintf("%02d%02d%02d", 7+rng.IntN(13), rng.IntN(60), rng.IntN(60)),
			PatientName:      string(rune('A'+rng.IntN(26))) + "OE^" + strconv.Itoa(i),
			Modalities:       mods[rng.IntN(len(mods))],
		})
	}
	slices.SortFunc(s.studies, func(a, b *migrate.Study) int { return strings.Compare(a.StudyDate, b.StudyDate) })
	return s
}

func (s *cappedSource) FindStudies(ctx context.Context, q migrate.Query) (migrate.Answer, error) {
	var a migrate.Answer
	lo, hi := 0, len(s.studies)
	if !q.EmptyDate && q.DateFrom != "" {
		lo, _ = slices.BinarySearchFunc(s.studies, q.DateFrom, func(st *migrate.Study, d string) int { return strings.Compare(st.StudyDate, d) })
		hi, _ = slices.BinarySearchFunc(s.studies, q.DateTo+"~", func(st *migrate.Study, d string) int { return strings.Compare(st.StudyDate, d) })
	}
	for _, st := range s.studies[lo:hi] {
		switch {
		case q.EmptyDate && st.StudyDate != "", q.EmptyTime && st.StudyTime != "":
			continue
		case q.TimeFrom != "" && (st.StudyTime < q.TimeFrom || st.StudyTime > q.TimeTo):
			continue
		case q.Modality != "" && !slices.Contains(strings.Split(st.Modalities, `\`), q.Modality):
			continue
		case q.NameInitial != "" && !strings.HasPrefix(st.PatientName, q.NameInitial):
			continue
		}
		if len(a.Studies) == s.cap {
			a.Capped, a.Reason = true, "the answer ended with status 0xFE00"
			break
		}
		a.Studies = append(a.Studies, st)
	}
	return a, nil
}

func (s *cappedSource) Instances(context.Context, string) ([]migrate.InstanceRef, error) {
	return nil, fmt.Errorf("bench: discovery only")
}

func (s *cappedSource) Retrieve(context.Context, string, []migrate.InstanceRef, []migrate.InstanceRef, migrate.Receiver) error {
	return fmt.Errorf("bench: discovery only")
}

func (s *cappedSource) Kind() string { return migrate.KindDIMSE }
func (s *cappedSource) Close() error { return nil }

// printMigrate prints the migration measurement.
func (r *report) printMigrate(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.migrate
	if m == nil {
		p("Migration: not measured (-skip-migrate)")
		p("")
		return
	}
	p("Migration (issue 12): %d studies × %d instances of %s (%.0f MB) from Orthanc (testpeer's, no fsync), one run each",
		m.studies, m.instances/max(m.studies, 1), r.opts.size, float64(m.bytes)/1e6)
	p("  movescu moves the studies one at a time to storescp (+xa, no fsync); pacsd migrate discovers, retrieves, stores")
	p("  (fsync and index commit per instance) and verifies every study by an IMAGE-level C-FIND; the times are the")
	p("  commands' from start to exit. pacsd import reads the same files, stores them and reads each back to compare its")
	p("  SHA-256; storescu sends them to pacsd serve in one association.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\twall s\tinstances/s\tMB/s\tTB/day\t")
	rate := map[string]float64{}
	for _, run := range m.runs {
		mbps := float64(m.bytes) / 1e6 / run.wall.Seconds()
		rate[run.name] = mbps
		fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%.1f\t%.2f\t\n", run.name, run.wall.Seconds(), perSecond(m.instances, run.wall), mbps, mbps*86400/1e6)
	}
	tw.Flush()
	verdict := func(x, target float64) string {
		if x >= target {
			return "met"
		}
		return "not met"
	}
	for _, via := range []string{"get", "move"} {
		for _, c := range []int{1, 4} {
			x := rate[fmt.Sprintf("pacsd migrate --via %s -c %d", via, c)] / rate["movescu to storescp"]
			p("ratio  pacsd migrate --via %s -c %d / movescu  %5.2f   target ≥ %.1f  %s", via, c, x, targetMigrateVsMovescu, verdict(x, targetMigrateVsMovescu))
		}
		x := rate[fmt.Sprintf("pacsd migrate --via %s -c 4", via)] / rate[fmt.Sprintf("pacsd migrate --via %s -c 1", via)]
		p("ratio  --via %s --concurrency 4 / --concurrency 1  %5.2f   target ≥ %.1f  %s", via, x, targetConcurrency, verdict(x, targetConcurrency))
	}
	x := rate["pacsd import"] / rate["storescu to pacsd serve"]
	p("ratio  pacsd import / storescu to pacsd serve  %5.2f   target ≥ %.1f  %s", x, targetImportVsStorescu, verdict(x, targetImportVsStorescu))
	p("Discovery: %d studies over ten years on a source in this process (not a real PACS) that ends every answer after",
		m.discStudies)
	p("  %d matches with Cancel, as Orthanc's LimitFindResults does: %d queries, %.2f s, %d studies found, %d parts left capped",
		m.discCap, m.discQueries, m.discWall.Seconds(), m.discFound, len(m.discIncomplete))
	p("")
}
