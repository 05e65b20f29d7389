package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The targets of the issue that asked for this benchmark.
const (
	targetVsStoreSCP    = 0.8                   // pacsd instances/s ≥ 0.8 × storescp's
	targetVsOrthanc     = 4.0                   // pacsd instances/s ≥ 4 × Orthanc's
	targetRSSGrowth     = 64 << 20              // bytes of RSS growth storing 1 GiB
	targetFindP99       = 50 * time.Millisecond // pacsd's p99 of STUDY-level C-FIND
	targetFindVsOrthanc = 5.0                   // Orthanc's C-FIND times ≥ 5 × pacsd's
	targetMoveVsOrthanc = 3.0                   // pacsd C-MOVE instances/s ≥ 3 × Orthanc's
	targetStowVsOrthanc = 3.0                   // pacsd STOW-RS instances/s ≥ 3 × Orthanc's
	targetQidoP99       = 50 * time.Millisecond // pacsd's p99 of QIDO-RS study searches
	targetMetadataP99   = 100 * time.Millisecond
	targetWadoVsRaw     = 0.7 // pacsd's WADO-RS series retrieve MB/s ≥ 0.7 × a raw read of its files
	targetDirectVsPut   = 0.7 // pacsd ack=direct instances/s ≥ 0.7 × a minio-go PutObject loop's
	targetSpoolVsFile   = 0.8 // pacsd ack=spool instances/s ≥ 0.8 × pacsd on the filesystem
)

type options struct {
	rounds            int
	instances         int
	size              byteSize
	bigSize           byteSize
	findInstances     int
	findReps          int
	findLoaders       int
	webReps           int
	metadataInstances int
	metadataReps      int
	wadoReps          int
	pacsd             string
	skipOrthanc       bool
	skipStore         bool
	skipBig           bool
	skipFind          bool
	skipMove          bool
	skipWeb           bool
	skipForward       bool
	skipS3            bool
	skipCodec         bool
	skipSecurity      bool
	skipGetConvert    bool
	s3Latency         time.Duration
	conc              int
	concInstances     int
	skipConc          bool
	skipMigrate       bool
	migrateStudies    int
	migrateInstances  int
	discoveryStudies  int
	discoveryCap      int
	skipTrash         bool
	onlyUI            bool
	skipCorrected     bool
}

func main() {
	o := options{size: 512 << 10, bigSize: 1 << 30}
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each stores the series once into every peer (with C-STORE, and with STOW-RS into pacsd and Orthanc), and moves it once out of pacsd and Orthanc")
	flag.IntVar(&o.instances, "instances", 300, "instances in the series (one study) of the C-STORE, C-MOVE, STOW-RS and WADO-RS retrieve measurements")
	flag.Var(&o.size, "size", "size of each instance of the series (e.g. 512KiB)")
	flag.Var(&o.bigSize, "big-size", "size of the multi-frame instance of the memory measurement (e.g. 1GiB)")
	flag.IntVar(&o.findInstances, "find-instances", 100000, "instances in the index of the C-FIND measurement, in studies of 50")
	flag.IntVar(&o.findReps, "find-reps", 100, "repetitions of the mix of C-FIND queries per peer")
	flag.IntVar(&o.findLoaders, "find-loaders", 4, "storescu associations in parallel loading the C-FIND corpus")
	flag.IntVar(&o.webReps, "web-reps", 100, "repetitions of the mix of QIDO-RS searches per peer")
	flag.IntVar(&o.metadataInstances, "metadata-instances", 1000, "instances in the series of the WADO-RS metadata measurement")
	flag.IntVar(&o.metadataReps, "metadata-reps", 30, "repetitions of the WADO-RS metadata request per peer")
	flag.IntVar(&o.wadoReps, "wado-reps", 10, "repetitions of the WADO-RS series retrieve per peer, and of the raw read and the net/http reference")
	flag.StringVar(&o.pacsd, "pacsd", "", "pacsd binary to measure (default: build it from this module)")
	flag.BoolVar(&o.skipOrthanc, "skip-orthanc", false, "leave Orthanc out")
	flag.BoolVar(&o.skipStore, "skip-store", false, "leave out the C-STORE throughput measurement")
	flag.BoolVar(&o.skipBig, "skip-big", false, "leave out the memory measurement with one large instance")
	flag.BoolVar(&o.skipFind, "skip-find", false, "leave out the C-FIND latency measurement")
	flag.BoolVar(&o.skipMove, "skip-move", false, "leave out the C-MOVE throughput measurement")
	flag.BoolVar(&o.skipForward, "skip-forward", false, "leave out the forwarding measurements (throughput and latency of --forward, the queue at 100,000 tasks)")
	flag.BoolVar(&o.skipWeb, "skip-web", false, "leave out the DICOMweb measurements (STOW-RS, QIDO-RS, WADO-RS)")
	flag.DurationVar(&o.s3Latency, "s3-latency", 10*time.Millisecond, "latency added to every request to MinIO, as S3 across a network has")
	flag.BoolVar(&o.skipS3, "skip-s3", false, "leave pacsd on S3 (MinIO, ack=direct and ack=spool) out of the C-STORE measurement")
	flag.BoolVar(&o.skipCodec, "skip-codec", false, "leave out pixel data decoding beside dcmtk and GDCM, render.Render's latency, and /rendered and /thumbnail over HTTP beside Orthanc")
	flag.BoolVar(&o.skipSecurity, "skip-security", false, "leave out C-STORE over DICOM TLS beside plain TCP, C-STORE with the audit trail beside --audit-off, and QIDO-RS with OIDC token validation beside none")
	flag.IntVar(&o.conc, "conc", 8, "associations at once in the concurrent C-STORE measurement")
	flag.IntVar(&o.concInstances, "conc-instances", 300, "instances per association in the concurrent C-STORE measurement")
	flag.BoolVar(&o.skipConc, "skip-conc", false, "leave out the concurrent C-STORE measurement")
	flag.BoolVar(&o.skipGetConvert, "skip-get-convert", false, "leave out C-GET of a JPEG-LS study by an SCU of uncompressed syntaxes, beside the study stored uncompressed and Orthanc")
	flag.BoolVar(&o.skipMigrate, "skip-migrate", false, "leave out the migration measurement (pacsd migrate and import)")
	flag.IntVar(&o.migrateStudies, "migrate-studies", 20, "studies of the migration measurement")
	flag.IntVar(&o.migrateInstances, "migrate-instances", 100, "instances of -size in each study of the migration measurement")
	flag.IntVar(&o.discoveryStudies, "discovery-studies", 100000, "studies of the capped source of the discovery measurement")
	flag.IntVar(&o.discoveryCap, "discovery-cap", 1000, "most matches the source of the discovery measurement answers")
	flag.BoolVar(&o.skipTrash, "skip-trash", false, "leave out the deletion measurement (hiding a deleted 1,000-instance study, purging the trash) on SQLite and PostgreSQL")
	flag.BoolVar(&o.onlyUI, "only-ui", false, "measure only the study list of the web interface and its /metrics (every other measurement left out)")
	flag.BoolVar(&o.skipCorrected, "skip-corrected", false, "leave out WADO-RS of a corrected series beside the same series uncorrected")
	flag.Parse()
	if flag.NArg() > 0 || o.rounds < 1 || o.instances < 1 || o.findInstances < studySize || o.findReps < 1 || o.findLoaders < 1 ||
		o.webReps < 1 || o.metadataInstances < 1 || o.metadataReps < 1 || o.wadoReps < 1 || o.conc < 2 || o.concInstances < 1 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		if ctx.Err() != nil {
			// The error is only the first thing the interruption broke.
			err = errors.New("interrupted; the processes it started have ended and its temporary files are removed")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// run is the whole benchmark; it returns only after every process it
// started has ended and its temporary directory is gone. The report goes
// to out and progress to progress.
func run(ctx context.Context, o options, out, progress io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "pacsd-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }

	bin := o.pacsd
	if bin == "" {
		logf("building pacsd")
		bin = filepath.Join(tmp, "pacsd")
		if err := buildPacsd(ctx, bin); err != nil {
			return err
		}
	}
	// testpeer starts a program in its own directory, where a relative
	// path would no longer name it.
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if o.onlyUI {
		return measureUI(ctx, o, bin, tmp, out, logf)
	}
	pacsd := pacsdPeer(bin)
	peers := []peer{pacsd, storescpPeer()}
	drains := map[string][]time.Duration{}
	if !o.skipCodec {
		if err := measureCodecs(ctx, out, tmp, 40, o.rounds, logf); err != nil {
			return fmt.Errorf("codec bench: %w", err)
		}
		if err := measureRendered(ctx, out, tmp, bin, o.instances, 3*o.wadoReps, !o.skipOrthanc, logf); err != nil {
			return fmt.Errorf("rendering bench: %w", err)
		}
	}
	if !o.skipGetConvert {
		if err := measureGetConversion(ctx, out, tmp, bin, o.instances, o.rounds, !o.skipOrthanc, logf); err != nil {
			return fmt.Errorf("C-GET conversion bench: %w", err)
		}
	}
	if !o.skipS3 && !o.skipStore {
		// One MinIO serves every run, each run into a bucket of its own.
		logf("starting MinIO")
		srv, err := testpeer.StartMinIO(ctx, filepath.Join(tmp, "minio"))
		if err != nil {
			return err
		}
		defer srv.Stop()
		endpoint := srv.Endpoint
		if o.s3Latency > 0 {
			var stop func()
			if endpoint, stop, err = latencyProxy(srv.URL, o.s3Latency); err != nil {
				return err
			}
			defer stop()
		}
		peers = append(peers, s3Peers(bin, srv, endpoint, o.s3Latency, drains)...)
		peers = append(peers, putObjectPeer(srv, endpoint))
	}
	// C-FIND, C-MOVE and DICOMweb compare pacsd with the Orthanc testpeer
	// configures; whether Orthanc fsyncs its files matters little to the
	// first two. The corpus of C-FIND is loaded once, into peers that
	// serve the DICOMweb searches too, so its Orthanc loads the DICOMweb
	// plugin when they are measured.
	web := !o.skipWeb
	qrPeers, corpusPeers, webPeers := []peer{pacsd}, []peer{pacsd}, []peer{pacsd}
	if !o.skipOrthanc {
		peers = append(peers, orthancPeer(false, false), orthancPeer(true, false))
		qrPeers = append(qrPeers, orthancPeer(false, false))
		corpusPeers = append(corpusPeers, orthancPeer(false, web))
		webPeers = append(webPeers, orthancPeer(false, true))
	}
	versions := peerVersions(ctx, bin, !o.skipOrthanc, web)

	r := report{opts: o, bin: bin, drains: drains, peers: peers, qrPeers: qrPeers, webPeers: webPeers, versions: versions, tmp: tmp}
	r.load[0] = loadAverage()
	start := time.Now()
	var files []dcmgen.File
	corpus := filepath.Join(tmp, "series")
	if !o.skipStore || !o.skipBig || !o.skipMove || web || !o.skipSecurity || !o.skipForward {
		logf("writing %d instances of %s", o.instances, o.size)
		if err := os.Mkdir(corpus, 0o755); err != nil {
			return err
		}
		if files, err = dcmgen.WriteSeries(corpus, o.instances, int64(o.size), dcmgen.Instance{}); err != nil {
			return err
		}
		for _, f := range files {
			r.corpusBytes += f.Size
		}
	}

	if !o.skipStore {
		t := time.Now()
		if r.runs, err = measureRounds(ctx, o, peers, tmp, corpus, logf); err != nil {
			return err
		}
		r.elapsedStore = time.Since(t)
	}
	if !o.skipConc {
		t := time.Now()
		r.concPeers = concPeers(o, bin)
		if r.conc, err = measureConcurrency(ctx, o, r.concPeers, tmp, logf); err != nil {
			return err
		}
		r.elapsedConc = time.Since(t)
	}
	if !o.skipSecurity {
		t := time.Now()
		if r.security, err = measureSecurity(ctx, o, bin, tmp, corpus, files, logf); err != nil {
			return fmt.Errorf("security bench: %w", err)
		}
		r.elapsedSecurity = time.Since(t)
	}
	if !o.skipBig {
		if r.big, err = measureBig(ctx, o, pacsd, tmp, files[0].Path, logf); err != nil {
			return err
		}
	}
	if !o.skipFind || web {
		t := time.Now()
		if err := r.measureCorpus(ctx, corpusPeers, corpus, files, logf); err != nil {
			return err
		}
		r.elapsedFind = time.Since(t) - r.elapsedWeb - r.elapsedReindex
	}
	if !o.skipMove {
		t := time.Now()
		if r.moves, err = measureMoves(ctx, o, qrPeers, tmp, corpus, files[0].StudyInstanceUID, logf); err != nil {
			return err
		}
		r.elapsedMove = time.Since(t)
	}
	if web {
		t := time.Now()
		if r.web.stows, err = measureStow(ctx, o, webPeers, tmp, files, logf); err != nil {
			return err
		}
		r.elapsedWeb += time.Since(t)
	}
	if !o.skipForward {
		if r.forward, err = measureForward(ctx, o, bin, tmp, corpus, files, logf); err != nil {
			return err
		}
	}
	if !o.skipMigrate {
		if r.migrate, err = measureMigrate(ctx, o, bin, tmp, logf); err != nil {
			return err
		}
	}
	r.elapsed = time.Since(start)
	r.load[1] = loadAverage()
	r.print(out)
	if !o.skipTrash {
		rs, err := measureTrash(ctx, tmp, o.rounds, logf)
		if err != nil {
			return err
		}
		printTrash(out, rs)
	}
	if !o.skipCorrected {
		rs, err := measureCorrectedWADO(ctx, o, bin, tmp, logf)
		if err != nil {
			return err
		}
		printCorrectedWADO(out, rs, loadAverage())
	}
	return measureUI(ctx, o, bin, tmp, out, logf)
}

// measureCorpus loads the C-FIND corpus into peers, runs the C-FIND
// measurement on them unless skipped, and then the DICOMweb measurements
// that read: QIDO-RS on the same corpus, and metadata and retrieve of two
// series stored into the same peers afterwards, the series of the
// C-STORE measurement (in seriesDir) and a longer one. Last, it stops
// pacsd and times pacsd reindex of everything it holds.
func (r *report) measureCorpus(ctx context.Context, peers []peer, seriesDir string, series []dcmgen.File, logf func(string, ...any)) (err error) {
	o := r.opts
	cp, err := loadCorpus(ctx, o, peers, r.tmp, !o.skipWeb && !o.skipOrthanc, logf)
	if err != nil {
		return err
	}
	defer func() {
		if serr := cp.stop(ctx); serr != nil && err == nil {
			err = serr
		}
	}()
	r.corpus = cp.corpusLoad
	if !o.skipFind {
		if r.find, err = measureFind(ctx, o, cp, logf); err != nil {
			return err
		}
	}
	if !o.skipWeb {
		if err := r.measureWebReads(ctx, cp, seriesDir, series, logf); err != nil {
			return err
		}
	}
	t := time.Now()
	r.reindex, err = measureReindex(ctx, r.bin, cp, logf)
	r.elapsedReindex = time.Since(t)
	return err
}

// measureWebReads runs the DICOMweb measurements that read from the
// loaded peers of cp.
func (r *report) measureWebReads(ctx context.Context, cp *corpusPeers, seriesDir string, series []dcmgen.File, logf func(string, ...any)) (err error) {
	o := r.opts
	t := time.Now()
	defer func() { r.elapsedWeb += time.Since(t) }()
	r.web = &webResult{}
	if r.web.qido, err = measureQido(ctx, o, cp, logf); err != nil {
		return err
	}
	meta, retrieve, err := loadWebSeries(ctx, o, cp, filepath.Join(cp.dir, "metadata-series"), seriesDir, series, logf)
	if err != nil {
		return err
	}
	if r.web.metadata, err = measureMetadata(ctx, o, cp, meta, logf); err != nil {
		return err
	}
	if r.web.retrieve, err = measureRetrieve(ctx, o, cp, retrieve, logf); err != nil {
		return err
	}
	return nil
}

// runResult is one store of the series into one peer.
type runResult struct {
	round, slot int
	peer        string
	sendResult
}

// measureRounds stores the series into every peer, o.rounds times,
// rotating the order of the peers by one each round.
func measureRounds(ctx context.Context, o options, peers []peer, tmp, corpus string, logf func(string, ...any)) ([]runResult, error) {
	var runs []runResult
	for round := range o.rounds {
		for slot := range peers {
			p := peers[(round+slot)%len(peers)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := storeInto(ctx, p, filepath.Join(tmp, fmt.Sprintf("%s-%d", p.name, round+1)), o.instances, corpus)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, p.name, err)
			}
			logf("round %d/%d  %-12s %7.3f s  %7.1f instances/s", round+1, o.rounds, p.name,
				res.wall.Seconds(), perSecond(o.instances, res.wall))
			runs = append(runs, runResult{round: round + 1, slot: slot + 1, peer: p.name, sendResult: res})
		}
	}
	return runs, nil
}

// storeInto starts p in the new directory dir, sends it the series with
// storescu, checks that it holds all n instances afterwards, and removes
// the peer and its directory again.
//
// Before storescu starts, every dirty page of the machine is written out
// (sync). Otherwise the dirty pages left by a peer that does not fsync
// (storescp writes the whole series without one) would be written back
// during the next peer's run and charged to its fsyncs.
func storeInto(ctx context.Context, p peer, dir string, n int, corpus string) (res sendResult, err error) {
	if p.run != nil {
		syscall.Sync()
		return p.run(ctx, corpus)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	s, err := p.start(ctx, dir)
	if err != nil {
		return res, err
	}
	defer func() {
		// A peer that died during the run is news, unless the run was
		// interrupted, when Ctrl-C reached the peer too.
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	syscall.Sync()
	if res, err = send(ctx, s, true, corpus); err != nil {
		return res, err
	}
	got, err := s.stored(ctx)
	if err != nil {
		return res, fmt.Errorf("counting stored instances: %w", err)
	}
	if got != n {
		// A run that did not store everything measured something else.
		return res, fmt.Errorf("%s holds %d of %d instances after storescu; see %s", p.name, got, n, s.log)
	}
	return res, nil
}

// bigResult is the memory measurement with one large instance.
type bigResult struct {
	size       int64
	frames     int
	baseline   int64 // VmRSS after storing one ordinary instance
	warmPeak   int64 // VmHWM at the same moment
	peak       int64 // VmHWM after storing the large instance
	sendResult       // of the large instance
}

// measureBig writes one multi-frame instance of at least o.bigSize,
// starts a fresh pacsd, stores the ordinary instance warm into it, notes
// its resident set, stores the large instance and notes the peak resident
// set.
func measureBig(ctx context.Context, o options, p peer, tmp, warm string, logf func(string, ...any)) (*bigResult, error) {
	dir := filepath.Join(tmp, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	logf("writing one multi-frame instance of %s", o.bigSize)
	in := dcmgen.Instance{}
	if err := in.FitFrames(int64(o.bigSize)); err != nil {
		return nil, err
	}
	// FitFrames stays at or below the size, less than a frame short of
	// it; the issue asks for at least the size, so add frames until the
	// file reaches it.
	for {
		n, err := in.Size()
		if err != nil {
			return nil, err
		}
		if n >= int64(o.bigSize) {
			break
		}
		in.NumberOfFrames++
	}
	path := filepath.Join(dir, "big.dcm")
	size, err := writeInstance(ctx, path, &in)
	if err != nil {
		return nil, err
	}

	pdir := filepath.Join(dir, "pacsd")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		return nil, err
	}
	s, err := p.start(ctx, pdir)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	if _, err := send(ctx, s, false, warm); err != nil {
		return nil, err
	}
	res := &bigResult{size: size, frames: in.NumberOfFrames}
	if res.baseline, res.warmPeak, err = procMemory(s.pid); err != nil {
		return nil, err
	}
	syscall.Sync()
	logf("storing it into pacsd")
	if res.sendResult, err = send(ctx, s, false, path); err != nil {
		return nil, err
	}
	if _, res.peak, err = procMemory(s.pid); err != nil {
		return nil, err
	}
	if got, err := s.stored(ctx); err != nil || got != 2 {
		return nil, fmt.Errorf("pacsd holds %d of 2 instances after the large store (%v); see %s", got, err, s.log)
	}
	return res, nil
}

// writeInstance writes in to a new file at path, streaming, and stops
// when ctx ends: a gigabyte takes long enough that Ctrl-C should not wait
// for it.
func writeInstance(ctx context.Context, path string, in *dcmgen.Instance) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := dcmgen.WriteFile(ctxWriter{ctx, f}, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

// buildPacsd builds ./cmd/pacsd into bin, with the version stamp the
// Makefile gives it, so the report names what was measured.
func buildPacsd(ctx context.Context, bin string) error {
	version := "dev"
	if b, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		version = strings.TrimSpace(string(b))
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version="+version, "-o", bin, "./cmd/pacsd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building pacsd (run from the module root): %w", err)
	}
	return nil
}

// versions are the first lines the peers print about themselves.
type versions struct {
	pacsd, pacsdBuild, storescu, storescp, orthanc, orthancWeb string
}

func peerVersions(ctx context.Context, bin string, orthanc, web bool) versions {
	first := func(name string, args ...string) string {
		stdout, stderr, err := testpeer.Run(ctx, name, args...)
		if err != nil {
			return "unknown (" + firstLine(err.Error()) + ")"
		}
		return firstLine(stdout + stderr)
	}
	v := versions{
		pacsd:    first(bin, "version"),
		storescu: first("storescu", "--version"),
		storescp: first("storescp", "--version"),
	}
	if orthanc {
		// Orthanc prints the path it was started as before its version.
		v.orthanc = first("Orthanc", "--version")
		if f := strings.Fields(v.orthanc); len(f) == 2 && strings.Contains(f[0], "/") {
			v.orthanc = filepath.Base(f[0]) + " " + f[1]
		}
		if web {
			v.orthancWeb = "orthanc-dicomweb " + first("dpkg-query", "-W", "-f", "${Version}", "orthanc-dicomweb")
		}
	}
	// The version stamp says what was built only if the build set it;
	// the Go toolchain records the commit in every binary built in a
	// repository.
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		v.pacsdBuild = "built with " + bi.GoVersion
		if rev != "" {
			v.pacsdBuild += ", commit " + rev
			if modified == "true" {
				v.pacsdBuild += " with uncommitted changes"
			}
		}
	}
	return v
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// report prints the results.
type report struct {
	opts        options
	bin         string // pacsd
	peers       []peer // of the C-STORE measurement
	qrPeers     []peer // of the C-FIND and C-MOVE measurements
	webPeers    []peer // of the STOW-RS measurement
	corpusBytes int64
	runs        []runResult
	concPeers   []concPeer
	conc        []concRun
	big         *bigResult
	corpus      *corpusLoad // of C-FIND and QIDO-RS
	find        *findResult
	migrate     *migrateResult
	reindex     *reindexResult
	moves       []moveResult
	web         *webResult
	security    *securityResult
	forward     *forwardResult
	versions    versions
	// drains are the times spooled peers took to upload everything
	// after storescu ended, by peer.
	drains  map[string][]time.Duration
	tmp     string
	load    [2]string
	elapsed time.Duration
	// The times of the parts; the memory measurement is quick.
	elapsedStore, elapsedConc, elapsedFind, elapsedReindex, elapsedMove, elapsedWeb, elapsedSecurity time.Duration
}

// stats summarises the runs of one peer.
type stats struct {
	rate                    []float64 // instances/s of each round
	median, min, max        float64
	medianMBps              float64
	medianPeerCPU, medianSU float64 // CPU seconds per wall second
	medianCPUPerInstance    float64 // the peer's CPU seconds per instance
	peerCPURead             bool
}

func (r *report) stats(name string) stats {
	var s stats
	var mbps, pcpu, scpu, perInstance []float64
	s.peerCPURead = true
	for _, run := range r.runs {
		if run.peer != name {
			continue
		}
		w := run.wall.Seconds()
		s.rate = append(s.rate, float64(r.opts.instances)/w)
		mbps = append(mbps, float64(r.corpusBytes)/1e6/w)
		pcpu = append(pcpu, run.peerCPU.Seconds()/w)
		scpu = append(scpu, run.cpu.Seconds()/w)
		perInstance = append(perInstance, run.peerCPU.Seconds()/float64(r.opts.instances))
		s.peerCPURead = s.peerCPURead && run.peerRead
	}
	s.median, s.min, s.max = median(s.rate), slices.Min(s.rate), slices.Max(s.rate)
	s.medianMBps, s.medianPeerCPU, s.medianSU = median(mbps), median(pcpu), median(scpu)
	s.medianCPUPerInstance = median(perInstance)
	return s
}

func (r *report) print(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("pacsd benchmark: C-STORE, concurrent C-STORE, memory, C-FIND, C-MOVE, DICOMweb")
	p("")
	p("machine   %d CPUs (%s), %s RAM, Linux %s, %s", runtime.NumCPU(), cpuModel(), memTotal(), kernelRelease(), runtime.Version())
	p("          temporary directory on %s; load average %s at start, %s at end", fsType(r.tmp), r.load[0], r.load[1])
	p("pacsd     %s (%s)", r.versions.pacsd, r.versions.pacsdBuild)
	p("storescu  %s", r.versions.storescu)
	p("storescp  %s", r.versions.storescp)
	if r.versions.orthanc != "" {
		p("Orthanc   %s (Debian package)", r.versions.orthanc)
	}
	p("network   127.0.0.1; TCP_NODELAY=1 in the environment of storescu, storescp and Orthanc (dcmtk reads it);")
	p("          pacsd, and the SCU of pacsd's dimse package that sends the C-FINDs and C-MOVEs, are written in Go,")
	p("          whose TCP connections have TCP_NODELAY set by default")
	if r.corpusBytes > 0 {
		p("series    %d instances of at most %s each, %.1f MB in all, one study: CT Image Storage, explicit VR little endian,",
			o.instances, o.size, float64(r.corpusBytes)/1e6)
		p("          written by dcmgen")
	}
	p("")
	if r.runs != nil {
		r.printStore(w)
	} else {
		p("C-STORE: not measured (-skip-store)")
		p("")
	}
	if r.conc != nil {
		r.printConcurrency(w)
	} else {
		p("Concurrent C-STORE: not measured (-skip-conc)")
		p("")
	}
	r.printBig(w)
	r.printFind(w)
	r.printReindex(w)
	r.printMove(w)
	r.printMigrate(w)
	r.printWeb(w)
	r.printSecurity(w)
	r.forward.print(w, o, o.instances)
	var parts []string
	findPart := "C-FIND with loading"
	if r.find == nil {
		findPart = "loading the C-FIND corpus"
	}
	for _, pt := range []struct {
		name string
		d    time.Duration
	}{{"C-STORE", r.elapsedStore}, {"concurrent C-STORE", r.elapsedConc}, {findPart, r.elapsedFind}, {"reindex", r.elapsedReindex}, {"C-MOVE", r.elapsedMove}, {"DICOMweb without loading the corpus", r.elapsedWeb}, {"security", r.elapsedSecurity}} {
		if pt.d > 0 {
			parts = append(parts, pt.name+" "+pt.d.Round(time.Second).String())
		}
	}
	p("total time of the measurements: %s (%s)", r.elapsed.Round(time.Second), strings.Join(parts, ", "))
}

// printStore prints the C-STORE measurement.
func (r *report) printStore(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("C-STORE throughput")
	p("sender    storescu %s -aec <peer AE> +sd <series> 127.0.0.1 <port>:", strings.Join(storescuArgs, " "))
	p("          all instances in one association; the figure is storescu's wall time, start to exit")
	p("rounds    %d: each round stores the series once into every peer, in an order rotated by one", o.rounds)
	p("          each round; every run starts the peer fresh in an empty directory (so every run stores into an")
	p("          empty archive), syncs the machine's dirty pages before storescu starts, and removes the peer's")
	p("          directory afterwards")
	p("")
	p("when each peer sends the success response of a C-STORE:")
	for _, pe := range r.peers {
		p("  %-13s %s", pe.name, pe.acks)
	}

	p("")
	p("throughput over %d round(s): median, minimum and maximum of instances/s; the other columns are medians", o.rounds)
	p("(CPU/wall: CPU seconds per second of storescu's wall time; on %d CPUs at most %d)", runtime.NumCPU(), runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tinstances/s\tmin\tmax\tMB/s\tpeer CPU/wall\tpeer CPU ms/instance\tstorescu CPU/wall\t")
	all := map[string]stats{}
	for _, pe := range r.peers {
		s := r.stats(pe.name)
		all[pe.name] = s
		peerCPU, perInstance := "n/a", "n/a"
		if s.peerCPURead {
			peerCPU = fmt.Sprintf("%.2f", s.medianPeerCPU)
			perInstance = fmt.Sprintf("%.2f", s.medianCPUPerInstance*1e3)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%.2f\t\n", pe.name, s.median, s.min, s.max, s.medianMBps, peerCPU, perInstance, s.medianSU)
	}
	tw.Flush()

	p("")
	p("ratios of medians (pacsd's instances/s over the other's)")
	ratio := func(other string, target float64, note string) {
		s, ok := all[other]
		if !ok {
			return
		}
		x := all["pacsd"].median / s.median
		verdict := "met"
		if x < target {
			verdict = "not met"
		}
		p("  pacsd / %-13s %5.2f   target ≥ %.1f  %-7s  %s", other, x, target, verdict, note)
	}
	ratio("storescp", targetVsStoreSCP, "storescp does not fsync")
	ratio("orthanc", targetVsOrthanc, "this Orthanc does not fsync its files")
	ratio("orthanc-sync", targetVsOrthanc, "this Orthanc fsyncs its files, not its directories or index")
	if d, ok := all["pacsd-s3-direct"]; ok {
		sp := all["pacsd-s3-spool"]
		p("")
		p("pacsd on S3 (MinIO on this machine, same disk, %v added to every request)", o.s3Latency)
		target := func(x, t float64) string { return fmt.Sprintf("target ≥ %.1f  %s", t, verdict(x >= t)) }
		if put, ok := all[putObjectName]; ok {
			x := d.median / put.median
			p("  ack=direct / %s  %5.2f   %s", putObjectName, x, target(x, targetDirectVsPut))
		}
		x := sp.median / all["pacsd"].median
		p("  ack=spool / filesystem    %5.2f   %s", x, target(x, targetSpoolVsFile))
		p("  ack=spool / ack=direct    %5.2f", sp.median/d.median)
		p("  ack=direct / filesystem   %5.2f", d.median/all["pacsd"].median)
		var secs []float64
		for _, x := range r.drains["pacsd-s3-spool"] {
			secs = append(secs, x.Seconds())
		}
		if len(secs) > 0 {
			p("  the spool finished uploading a median %.2f s after storescu ended (%d runs)", median(secs), len(secs))
		}
	}
	p("")

	p("every run (order: slot within its round; CPU in seconds)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tslot\tpeer\twall s\tinstances/s\tpeer CPU\tstorescu CPU\t")
	for _, run := range r.runs {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.3f\t%.1f\t%.2f\t%.2f\t\n", run.round, run.slot, run.peer,
			run.wall.Seconds(), perSecond(o.instances, run.wall), run.peerCPU.Seconds(), run.cpu.Seconds())
	}
	tw.Flush()
	p("")
}

// printBig prints the memory measurement.
func (r *report) printBig(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	if b := r.big; b != nil {
		verdict := "met"
		growth := b.peak - b.baseline
		if growth > targetRSSGrowth {
			verdict = "not met"
		}
		p("memory: one multi-frame instance of %.1f MiB (%d bytes, %d frames of 512×512×16 bit) stored into a fresh pacsd", mib(b.size), b.size, b.frames)
		p("  baseline RSS   %7.1f MiB  (VmRSS after storing one %s instance; VmHWM then %.1f MiB)", mib(b.baseline), o.size, mib(b.warmPeak))
		p("  peak RSS       %7.1f MiB  (VmHWM after the large store)", mib(b.peak))
		p("  growth         %7.1f MiB  target ≤ %d MiB  %s", mib(growth), targetRSSGrowth>>20, verdict)
		p("  store          %.2f s wall, %.1f MB/s; pacsd CPU %.2f s, storescu CPU %.2f s",
			b.wall.Seconds(), float64(b.size)/1e6/b.wall.Seconds(), b.peerCPU.Seconds(), b.cpu.Seconds())
	} else {
		p("memory: not measured (-skip-big)")
	}
	p("")
}

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// The machine facts come from /proc. Each says "unknown" rather than fail
// the run where it cannot be read.

func kernelRelease() string { return procLine("/proc/sys/kernel/osrelease", "") }

func loadAverage() string {
	f := strings.Fields(procLine("/proc/loadavg", ""))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string { return procLine("/proc/cpuinfo", "model name") }

func memTotal() string {
	v := strings.TrimSuffix(procLine("/proc/meminfo", "MemTotal"), " kB")
	kb, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

// procLine returns the value of the first line "key: value" of a /proc
// file, or its first line when key is empty.
func procLine(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if key == "" {
			return strings.TrimSpace(line)
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// fsType names the filesystem that holds dir, from the longest mount
// point in /proc/mounts that contains it: fsync costs differ a lot
// between filesystems.
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown filesystem"
	}
	best, typ := "", "unknown filesystem"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mnt := f[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) > len(best) {
			best, typ = mnt, f[2]
		}
	}
	return typ
}

// byteSize is a flag value in bytes that accepts "512KiB", "1GiB",
// "300MB" or a plain number.
type byteSize int64

func (b byteSize) String() string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return errors.New("want a positive size such as 512KiB or 1GiB")
	}
	*b = byteSize(n * mult)
	return nil
}
