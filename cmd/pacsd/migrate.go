package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/route"
)

// migrateCommand moves the studies of another archive into this one:
// `pacsd migrate --from SOURCE` runs a migration, `pacsd migrate status`
// and `pacsd migrate report` say how far it is (see package migrate).
type migrateCommand struct {
	Run    migrateRunCommand    `cmd:"" default:"withargs" help:"Migrate the studies of the archive --from names (the default subcommand)."`
	Status migrateStatusCommand `cmd:"" help:"Say how far each migration and import is, from the index."`
	Report migrateReportCommand `cmd:"" help:"Write one line per study of every migration and import, then the totals."`
}

// migrateRunCommand runs a migration in the foreground.
type migrateRunCommand struct {
	baseSettings
	storeSettings
	remoteSettings
	dimseSettings
	// The routes decide where migrated instances are forwarded, as
	// pacsd serve's do for what it receives: their tasks are queued with
	// each instance, and pacsd serve sends them.
	routeSettings
	AETitle        string   `name:"ae-title" default:"PACSD" placeholder:"AET" help:"this archive's AE title: the calling AE, and the destination of C-MOVEs, which the source must know"`
	From           string   `config:"-" required:"" placeholder:"SOURCE" help:"the archive to migrate: a remote AE (one of --remote-ae), a DICOMweb root URL, or the name of one (--remote-web)"`
	Via            string   `config:"-" enum:"get,move," default:"" placeholder:"get|move" help:"retrieve by C-GET or C-MOVE (default: C-GET, or C-MOVE if the source refuses C-GET); for C-MOVE this process listens on --dimse-addr as --ae-title"`
	Since          string   `config:"-" placeholder:"YYYYMMDD" help:"the first Study Date to migrate (default: the earliest)"`
	Until          string   `config:"-" placeholder:"YYYYMMDD" help:"the last Study Date to migrate (default: the latest)"`
	Filters        []string `name:"filter" config:"-" sep:"none" placeholder:"KEY=VALUE" help:"a further C-FIND key at STUDY level, e.g. ModalitiesInStudy=CT; repeat for each"`
	Order          string   `config:"-" enum:"newest,oldest" default:"newest" help:"migrate the newest or the oldest studies first"`
	PriorityFile   string   `config:"-" placeholder:"FILE" help:"a file of Patient IDs or Accession Numbers, one a line, whose studies go first"`
	Concurrency    int      `config:"-" default:"2" placeholder:"N" help:"studies retrieved at once, each on one association"`
	MaxMbps        float64  `name:"max-mbps" config:"-" default:"0" placeholder:"N" help:"most megabits per second to take from the source (0: no cap)"`
	Window         string   `config:"-" placeholder:"HH:MM-HH:MM" help:"move studies only inside this local time window; outside it, wait"`
	MaxAttempts    int      `config:"-" default:"3" placeholder:"N" help:"retrievals of a study before it is failed"`
	RetryConflicts bool     `config:"-" help:"retry the studies in conflict, once what they conflicted with is resolved"`
	// The bearer token of a DICOMweb source is a secret: no flag.
	RemoteWebToken string `kong:"-" config:"remote_web_token" help:"bearer token sent to a DICOMweb source"`
}

func (c *migrateRunCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings, &c.remoteSettings, &c.dimseSettings); err != nil {
		return err
	}
	rs, err := c.remotes()
	if err != nil {
		return err
	}
	if err := c.routeSettings.complete(rs); err != nil {
		return err
	}
	usage := func(err error) error { return &usageError{err, "pacsd migrate -h"} }
	if err := validAETitle(c.AETitle); err != nil {
		return usage(fmt.Errorf("ae_title: %w", err))
	}
	for _, d := range []struct{ name, v string }{{"--since", c.Since}, {"--until", c.Until}} {
		if _, err := time.Parse("20060102", d.v); d.v != "" && err != nil {
			return usage(fmt.Errorf("%s %q is not a date YYYYMMDD", d.name, d.v))
		}
	}
	if c.Since != "" && c.Until != "" && c.Since > c.Until {
		return usage(fmt.Errorf("--since %s is after --until %s", c.Since, c.Until))
	}
	var keys []migrate.Key
	for _, f := range c.Filters {
		k, err := migrate.ParseKey(f)
		if err != nil {
			return usage(err)
		}
		keys = append(keys, k)
	}
	window, err := route.ParseWindow(c.Window, nil)
	if err != nil {
		return usage(fmt.Errorf("--window: %w", err))
	}
	if c.Concurrency < 1 || c.MaxAttempts < 1 || c.MaxMbps < 0 {
		return usage(errors.New("--concurrency and --max-attempts must be at least 1, --max-mbps not negative"))
	}
	priority, err := readPriority(c.PriorityFile)
	if err != nil {
		return usage(err)
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	src, name, err := c.source(rs, p.getenv, log)
	if err != nil {
		return usage(err)
	}
	defer src.Close()

	a, err := openForMigration(ctx, &c.storeSettings, c.AETitle, &forwarder{rules: c.rules}, p, log)
	if err != nil {
		return err
	}
	defer a.close(ctx, log)
	m := migrate.New(migrate.Config{
		State: a.state, Source: src, Archive: a.arch, Index: a.db, Name: name, AETitle: c.AETitle,
		Since: c.Since, Until: c.Until, Keys: keys, Order: c.Order, Priority: priority,
		Concurrency: c.Concurrency, MaxAttempts: c.MaxAttempts, RetryConflicts: c.RetryConflicts,
		Window: window, Limiter: route.NewLimiter(c.MaxMbps),
		Owner: owner(), Alive: alive, Progress: progress(p.stdout, log), Logger: log.With("component", "migrate"),
	})
	if d, ok := src.(*migrate.DIMSESource); ok {
		d.Fallback = m.Receiver()
	}
	sum, err := m.Run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "migration %s from %s: %s\n", sum.Migration.ID, name, stateCounts(sum.ByState))
	for _, part := range sum.Discovery.Incomplete {
		fmt.Fprintf(p.stdout, "discovery incomplete: the source capped %s; studies in it may be missing\n", part)
	}
	if sum.Stopped {
		fmt.Fprintln(p.stdout, "stopped; run the same command again to go on")
		return nil
	}
	if !sum.Complete() {
		return fmt.Errorf("migration %s: %d studies failed and %d in conflict; see pacsd migrate report", sum.Migration.ID,
			sum.ByState[migrate.Failed], sum.ByState[migrate.Conflict])
	}
	return nil
}

// source returns the source --from names, and the name it is recorded
// under: a DICOMweb source by its root URL, a remote AE by its AE title.
func (c *migrateRunCommand) source(remotes map[string]remote, getenv func(string) string, log *slog.Logger) (migrate.Source, string, error) {
	root, token := "", c.RemoteWebToken
	switch u, named := c.webs[c.From]; {
	case named:
		root = u
		if token == "" {
			token = c.token(c.From, getenv)
		}
	case strings.HasPrefix(c.From, "http://") || strings.HasPrefix(c.From, "https://"):
		root = c.From
	}
	if root != "" {
		root = strings.TrimRight(root, "/")
		return &migrate.WebSource{Root: root, Token: token, Client: &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: c.Concurrency + 1, ResponseHeaderTimeout: 5 * time.Minute,
		}}}, root, nil
	}
	r, ok := remotes[c.From]
	if !ok {
		return nil, "", fmt.Errorf("--from %q is neither a DICOMweb URL nor a remote AE (--remote-ae) or DICOMweb archive (--remote-web)", c.From)
	}
	if r.tls {
		return nil, "", fmt.Errorf("--from %s: migrating over TLS is not supported", c.From)
	}
	src := &migrate.DIMSESource{AETitle: c.AETitle, CalledAE: r.ae, Addr: r.addr, Via: c.Via, MoveAddr: c.DIMSEAddr, Logger: log.With("component", "migrate")}
	if len(c.AllowAE) > 0 || c.AllowAnyAE {
		aes, err := newAEAuthorizer(context.Background(), &c.dimseSettings)
		if err != nil {
			return nil, "", err
		}
		src.AllowCaller = aes.allowCaller()
		if src.AllowCaller == nil {
			src.AllowCaller = func(string, net.Addr) bool { return true }
		}
	}
	return src, r.ae, nil
}

// readPriority reads a --priority-file: one Patient ID or Accession
// Number a line; blank lines and lines starting with # are skipped.
func readPriority(path string) (map[string]bool, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--priority-file: %w", err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out[line] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--priority-file: %w", err)
	}
	return out, nil
}

// migrationArchive is what a migration or an import opens.
type migrationArchive struct {
	db         *sqlindex.DB
	arch       archiveForMigration
	state      migrate.State
	closeStore closeFunc
}

// openForMigration opens storage, the index and the archive for a
// migration or an import. The archive refuses any duplicate: the
// migration itself compares an instance pacsd holds with the source's
// copy before it stores. fwd queues the forwarding the routes ask for in
// the transaction of each instance, for pacsd serve to send.
func openForMigration(ctx context.Context, s *storeSettings, aet string, fwd archive.Forwarder, p *process, log *slog.Logger) (*migrationArchive, error) {
	store, closeStore, err := openStorage(ctx, s, s.s3Env(p.getenv), log)
	if err != nil {
		return nil, err
	}
	db, err := openIndex(ctx, s.Index)
	if err != nil {
		closeStore(ctx)
		return nil, err
	}
	return &migrationArchive{
		db: db,
		arch: archiveForMigration{archive.New(archive.Config{Store: store, Index: db, AETitle: aet, Duplicates: archive.DuplicateReject,
			Forwarder: fwd, Logger: log.With("component", "archive")})},
		state:      db.MigrationState(),
		closeStore: closeStore,
	}, nil
}

// archiveForMigration is the archive as a migration uses it.
type archiveForMigration struct{ *archive.Service }

// Store implements migrate.Archive.
func (a archiveForMigration) Store(ctx context.Context, req *migrate.StoreRequest) (*index.Instance, error) {
	res, err := a.Service.Store(ctx, &archive.StoreRequest{
		SOPClassUID: req.SOPClassUID, SOPInstanceUID: req.SOPInstanceUID, TransferSyntaxUID: req.TransferSyntaxUID,
		CallingAE: req.CallingAE, CalledAE: req.CalledAE, Source: req.Source, Dataset: req.Dataset,
	})
	switch {
	case errors.Is(err, archive.ErrInvalid), errors.Is(err, archive.ErrMismatch):
		return nil, fmt.Errorf("%w: %w", migrate.ErrRefused, err)
	case errors.Is(err, archive.ErrDuplicate):
		// Stored meanwhile by another process: the next attempt
		// compares it with the source's copy.
		return nil, fmt.Errorf("stored meanwhile by another: %w", err)
	case err != nil:
		return nil, err
	case res.Kept:
		return nil, fmt.Errorf("%w: %s, kept by the archive", migrate.ErrConflict, res.Instance.SOPInstanceUID)
	}
	return res.Instance, nil
}

func (a *migrationArchive) close(ctx context.Context, log *slog.Logger) {
	a.db.Close()
	// Uploads a spool has not finished in this time resume when pacsd
	// next starts on it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := a.closeStore(cctx); err != nil {
		log.Warn("storage not closed cleanly", "err", err)
	}
}

// owner names this process in the migration state.
func owner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// alive reports whether the process a migration's owner names still
// runs; a process on another host is taken to, until its heartbeat ages.
func alive(owner string) bool {
	host, pid, ok := strings.Cut(owner, ":")
	me, _ := os.Hostname()
	n, err := strconv.Atoi(pid)
	if !ok || host != me || err != nil {
		return true
	}
	err = syscall.Kill(n, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// progress reports to a terminal with a live line, or else to the log.
func progress(stdout io.Writer, log *slog.Logger) *migrate.Progress {
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return &migrate.Progress{Terminal: f}
		}
	}
	return &migrate.Progress{Logger: log}
}

func stateCounts(by map[migrate.StudyState]int) string {
	total := 0
	var parts []string
	for _, s := range migrate.StudyStates {
		total += by[s]
		if by[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", by[s], s))
		}
	}
	if total == 0 {
		return "no studies"
	}
	return fmt.Sprintf("%d studies: %s", total, strings.Join(parts, ", "))
}

// migrateStatusCommand prints how far each migration is.
type migrateStatusCommand struct {
	baseSettings
	storeSettings
}

func (c *migrateStatusCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings); err != nil {
		return err
	}
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return err
	}
	defer db.Close()
	st := db.MigrationState()
	migs, err := st.Migrations(ctx)
	if err != nil {
		return err
	}
	if len(migs) == 0 {
		fmt.Fprintln(p.stdout, "no migration or import recorded")
		return nil
	}
	for _, m := range migs {
		s, err := migrate.Describe(ctx, st, m, time.Now())
		if err != nil {
			return err
		}
		if err := migrate.WriteStatus(p.stdout, s); err != nil {
			return err
		}
	}
	return nil
}

// migrateReportCommand writes the report of every migration and import.
type migrateReportCommand struct {
	baseSettings
	storeSettings
	Format string `config:"-" enum:"csv,json" default:"csv" help:"csv or json"`
	Out    string `config:"-" placeholder:"FILE" help:"write the report to FILE instead of standard output"`
}

func (c *migrateReportCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings); err != nil {
		return err
	}
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return err
	}
	defer db.Close()
	w := p.stdout
	var f *os.File
	if c.Out != "" {
		if f, err = os.Create(c.Out); err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	if err := migrate.WriteReport(ctx, bw, db.MigrationState(), c.Format); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f != nil {
		return f.Close()
	}
	return nil
}

// importCommand imports instances from files.
type importCommand struct {
	baseSettings
	storeSettings
	// Remote AEs and DICOMweb archives are the destinations of the
	// routes, which forward imported instances as migrated ones.
	remoteSettings
	routeSettings
	AETitle     string   `name:"ae-title" default:"PACSD" placeholder:"AET" help:"this archive's AE title, written into the objects it stores"`
	Concurrency int      `config:"-" default:"4" placeholder:"N" help:"files read at once"`
	Paths       []string `arg:"" name:"path" help:"files and directories to import; directories are read recursively"`
}

func (c *importCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings, &c.remoteSettings); err != nil {
		return err
	}
	rs, err := c.remotes()
	if err != nil {
		return err
	}
	if err := c.routeSettings.complete(rs); err != nil {
		return err
	}
	if err := validAETitle(c.AETitle); err != nil {
		return &usageError{fmt.Errorf("ae_title: %w", err), "pacsd import -h"}
	}
	if c.Concurrency < 1 {
		return &usageError{errors.New("--concurrency must be at least 1"), "pacsd import -h"}
	}
	for _, path := range c.Paths {
		if _, err := os.Stat(path); err != nil {
			return &usageError{err, "pacsd import -h"}
		}
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	a, err := openForMigration(ctx, &c.storeSettings, c.AETitle, &forwarder{rules: c.rules}, p, log)
	if err != nil {
		return err
	}
	defer a.close(ctx, log)
	im := &migrate.Importer{State: a.state, Archive: a.arch, Index: a.db, AETitle: c.AETitle, Concurrency: c.Concurrency,
		Owner: owner(), Alive: alive, Progress: progress(p.stdout, log), Logger: log.With("component", "import")}
	sum, err := im.Run(ctx, c.Paths)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "import: %d files verified, %d already verified, %d not DICOM or not whole, %d failed, %d in conflict; %s\n",
		sum.Files[migrate.FileVerified], sum.Skipped, sum.Files[migrate.FileRejected], sum.Files[migrate.FileFailed],
		sum.Files[migrate.FileConflict], stateCounts(sum.ByState))
	if sum.Stopped {
		fmt.Fprintln(p.stdout, "stopped; run the same command again to go on")
		return nil
	}
	if !sum.Complete() {
		return fmt.Errorf("import: %d studies failed and %d in conflict; see pacsd migrate report", sum.ByState[migrate.Failed], sum.ByState[migrate.Conflict])
	}
	return nil
}
