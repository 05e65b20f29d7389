package main

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/metrics"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/spool"
	"github.com/pacsd/pacsd/ui"
)

// The face of pacsd for the staff who run it: metrics, the web interface,
// the health checks and the system's state, wired here from the parts
// serve opens.

// faceSettings are serve's settings of the web interface.
type faceSettings struct {
	OHIFURL    string   `name:"ohif-url" placeholder:"URL" help:"root of an OHIF viewer that reads this pacsd; the web interface links each study to it"`
	UIClientID string   `name:"ui-client-id" placeholder:"ID" help:"OpenID Connect client ID the web interface signs in as (a public client using PKCE), with --http-auth oidc"`
	UIScopes   []string `name:"ui-scopes" placeholder:"SCOPE" help:"scopes the web interface asks the OpenID Connect provider for, besides openid; comma-separated or repeated"`
}

// What the index, the forwarding queue, the migrations and the spool
// hold is read for the metrics when /metrics is scraped, at most once per
// scrapeMaxAge: several Prometheus servers scraping at once, or a burst
// of scrapes, read it once. Each read is bounded by scrapeReadTimeout.
const (
	scrapeMaxAge      = time.Second
	scrapeReadTimeout = 2 * time.Second
)

// face is what serve shows of itself: metrics, the number of associations
// open, and what GET /api/system and /readyz report.
type face struct {
	reg     *metrics.Registry
	started time.Time
	active  atomic.Int64 // DIMSE associations open now

	// Set by serve once it has them.
	store        storage.Store
	db           *sqlindex.DB
	queue        route.Queue
	destinations []api.Destination
	log          *slog.Logger
	// The listeners' addresses, once they listen.
	dimseAddr, httpAddr string
	// counted is the index's last count.
	counted atomic.Pointer[counted]
	// migrated is what each migration had brought in at the last
	// sample, by ID, so that the counters grow by the difference.
	migrated map[string]migrate.Totals
}

// counted is a count of the index, made when the change feed's last
// entry was seq.
type counted struct {
	n   index.Counts
	seq int64
}

// indexCounts counts the index, unless nothing changed since the last
// count: every change of the index's records is an entry of the change
// feed, whose last number is cheap to read, while counting a large index
// is not, and a system page refreshes every few seconds in every browser
// that shows it.
func (f *face) indexCounts(ctx context.Context) (index.Counts, error) {
	// The number first: a change committed while counting makes the
	// next call count again.
	seq, err := f.db.LastChange(ctx)
	if err != nil {
		return index.Counts{}, err
	}
	if c := f.counted.Load(); c != nil && c.seq == seq {
		return c.n, nil
	}
	n, err := f.db.Counts(ctx)
	if err != nil {
		return index.Counts{}, err
	}
	f.counted.Store(&counted{n, seq})
	return n, nil
}

func newFace(c *serveCommand, log *slog.Logger) *face {
	var known []string
	for _, a := range c.AllowAE {
		known = append(known, strings.SplitN(strings.SplitN(a, "@", 2)[0], "#", 2)[0])
	}
	for _, r := range c.RemoteAEs {
		known = append(known, strings.SplitN(r, "=", 2)[0])
	}
	return &face{
		reg:     metrics.New(metrics.Config{KnownAEs: known, Version: version}),
		started: time.Now(),
		log:     log,
	}
}

// instrument makes the DIMSE server report its associations and
// operations, beside whatever it reports them to already.
func (f *face) instrument(s *dimse.Server) {
	prev := s.Observe
	s.Observe = func(ev dimse.AssociationEvent) {
		if prev != nil {
			prev(ev)
		}
		f.reg.ObserveAssociation(ev.CallingAE, ev.Accepted)
		if ev.Accepted {
			f.active.Add(1)
		}
	}
	prevEnd := s.ObserveEnd
	s.ObserveEnd = func(ev dimse.AssociationEvent) {
		if prevEnd != nil {
			prevEnd(ev)
		}
		f.reg.AssociationClosed()
		f.active.Add(-1)
	}
	prevOp := s.ObserveOperation
	s.ObserveOperation = func(ev dimse.OperationEvent) {
		if prevOp != nil {
			prevOp(ev)
		}
		// Instances stored are counted by the archive, which knows their
		// size and whether they were kept.
		f.reg.ObserveDIMSE(ev.Command, uint16(ev.Status), ev.Duration)
	}
}

// sample makes the metrics read what the index, the forwarding queue,
// the migrations and the spool hold at every scrape, until ctx ends; the
// metrics keep the last values read after that, while serve shuts down.
func (f *face) sample(ctx context.Context) {
	f.reg.ReadAtScrape(f.snapshot, scrapeMaxAge, scrapeReadTimeout)
	<-ctx.Done()
	f.reg.ReadAtScrape(nil, 0, 0)
}

// snapshot reads what the metrics show of the archive's state. The
// metrics call it while they are scraped, one call at a time. What fails
// to be read is counted as an index error and keeps its last value.
func (f *face) snapshot(ctx context.Context) metrics.Snapshot {
	var s metrics.Snapshot
	if n, err := f.indexCounts(ctx); err == nil {
		c := metrics.IndexCounts(n)
		s.Index = &c
	} else if ctx.Err() == nil {
		f.reg.ObserveIndexError("count")
		f.log.Warn("metrics: counting the index failed", "err", err)
	}
	if depth, err := f.db.QueueDepth(ctx); err == nil {
		s.Queues = queueStates(depth, f.destinations, time.Now())
	} else if ctx.Err() == nil {
		f.reg.ObserveIndexError("queue")
		f.log.Warn("metrics: reading the forwarding queue failed", "err", err)
	}
	s.Migrations = f.migrations(ctx)
	if sp, ok := f.store.(*spool.Store); ok {
		if objects, bytes, err := sp.Backlog(ctx); err == nil {
			s.Spool = &metrics.SpoolBacklog{Objects: objects, Bytes: bytes}
		}
	}
	return s
}

// queueStates returns the queue of every configured destination, empty
// or not, and of any other destination with tasks not done.
func queueStates(depth []route.Stats, dests []api.Destination, now time.Time) map[string]metrics.QueueState {
	out := make(map[string]metrics.QueueState, len(dests))
	for _, d := range dests {
		out[d.Name] = metrics.QueueState{}
	}
	for _, d := range depth {
		q := metrics.QueueState{Pending: d.Pending, InFlight: d.InFlight, Failed: d.Failed}
		if !d.OldestPending.IsZero() {
			q.OldestPending = max(0, now.Sub(d.OldestPending))
		}
		out[d.Destination] = q
	}
	return out
}

// migrations counts the studies of each migration by state, and what it
// brought in since the last read, from the state that pacsd migrate and
// pacsd import keep in the index, whichever process runs them. It
// returns nil when the migrations could not be read.
func (f *face) migrations(ctx context.Context) map[string]metrics.MigrationState {
	if f.db == nil {
		return nil
	}
	st := f.db.MigrationState()
	migs, err := st.Migrations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.reg.ObserveIndexError("migration")
			f.log.Warn("metrics: reading the migrations failed", "err", err)
		}
		return nil
	}
	if f.migrated == nil {
		f.migrated = map[string]migrate.Totals{}
	}
	out := map[string]metrics.MigrationState{}
	for _, m := range migs {
		t, err := st.Totals(ctx, m.ID)
		if err != nil {
			if ctx.Err() == nil {
				f.reg.ObserveIndexError("migration")
			}
			return nil
		}
		out[m.Source] = metrics.MigrationState{Pending: t.ByState[migrate.Pending], Done: t.ByState[migrate.Done],
			Verified: t.ByState[migrate.Verified], Failed: t.ByState[migrate.Failed], Conflict: t.ByState[migrate.Conflict]}
		last, seen := f.migrated[m.ID]
		if seen && t.InstancesHere >= last.InstancesHere && t.Bytes >= last.Bytes {
			f.reg.ObserveMigrated(m.Source, t.InstancesHere-last.InstancesHere, t.Bytes-last.Bytes)
		} else if !seen {
			f.reg.ObserveMigrated(m.Source, t.InstancesHere, t.Bytes)
		}
		f.migrated[m.ID] = t
	}
	return out
}

// register mounts /metrics, the health checks and the web interface on e,
// and counts every request e routes. The web interface's routes come
// last in its own right: any path it does not serve answers 404.
func (f *face) register(e *echo.Echo, c *serveCommand, principal func(*http.Request) *ui.Principal) {
	e.Use(f.reg.EchoMiddleware())
	e.GET("/metrics", echo.WrapHandler(f.reg.Handler()))
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", f.readyz)
	modes := strings.Split(c.HTTPAuth, ",")
	page := ui.Handler(ui.Config{
		Version:      version,
		DICOMwebRoot: c.DICOMwebRoot,
		OHIFURL:      c.OHIFURL,
		AuthModes:    modes,
		OIDC:         ui.OIDC{Issuer: c.OIDCIssuer, ClientID: c.UIClientID, Scopes: append([]string{}, trimList(c.UIScopes)...), Audience: c.OIDCAudience},
		Principal:    principal,
	})
	h := echo.WrapHandler(page)
	e.GET("/", h)
	e.HEAD("/", h)
	e.GET("/index.html", h)
	e.GET(ui.ConfigPath, h)
	e.GET("/ui/*", h)
	e.HEAD("/ui/*", h)
}

// check is one dependency's line in the body of /readyz.
type check struct {
	Status string `json:"status"` // ok or fail
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// readyz answers 200 when pacsd can take images in, 503 otherwise, with
// each dependency's state (docs/api.md).
func (f *face) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	checks := map[string]check{}
	ready := true
	_, serr := f.store.Stat(ctx, "readyz")
	sp, spooled := f.store.(*spool.Store)
	switch {
	case serr == nil, errors.Is(serr, storage.ErrNotFound):
		checks["storage"] = check{Status: "ok"}
	case spooled && errors.Is(serr, storage.ErrUnavailable):
		// The spool takes images in while S3 is away.
		checks["storage"] = check{Status: "ok", Detail: "S3 unavailable, spooling: " + serr.Error()}
	default:
		checks["storage"] = check{Status: "fail", Error: serr.Error()}
		ready = false
	}
	if _, err := f.db.Instance(ctx, "0"); err != nil && !errors.Is(err, index.ErrNotFound) {
		checks["index"] = check{Status: "fail", Error: err.Error()}
		ready = false
	} else {
		checks["index"] = check{Status: "ok"}
	}
	if spooled {
		objects, bytes, err := sp.Backlog(ctx)
		if err != nil {
			checks["spool"] = check{Status: "fail", Error: err.Error()}
			ready = false
		} else {
			f.reg.SetSpoolBacklog(objects, bytes)
			checks["spool"] = check{Status: "ok", Detail: fmt.Sprintf("%d objects (%d bytes) waiting for S3", objects, bytes)}
		}
	}
	body := struct {
		Status string           `json:"status"`
		Checks map[string]check `json:"checks"`
	}{"ready", checks}
	status := http.StatusOK
	if !ready {
		body.Status, status = "not ready", http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, body)
}

// system returns what GET /api/system reports.
func (f *face) system(c *serveCommand) api.SystemFunc {
	return func(ctx context.Context) (*api.System, error) {
		n, err := f.indexCounts(ctx)
		if err != nil {
			return nil, fmt.Errorf("count the index: %w", err)
		}
		sys := &api.System{
			Version:       version,
			UptimeSeconds: int64(time.Since(f.started) / time.Second),
			AETitle:       c.AETitle,
			DIMSEAddr:     f.dimseAddr,
			HTTPAddr:      f.httpAddr,
			Associations:  api.Associations{Active: int(f.active.Load()), Max: c.MaxAssociations},
			Storage:       api.StorageState{Kind: backendKind(c.Storage), Location: redactURL(c.Storage)},
			Index:         api.IndexState{Kind: indexKind(c.Index), Location: redactURL(c.Index), Counts: api.IndexCounts(n)},
		}
		if root, err := pathOf(c.Storage, "file"); err == nil {
			var st syscall.Statfs_t
			if err := syscall.Statfs(root, &st); err == nil {
				free := int64(st.Bavail) * st.Bsize
				used := int64(st.Blocks-st.Bfree) * st.Bsize
				sys.Storage.FreeBytes, sys.Storage.UsedBytes = &free, &used
			}
		}
		if c.CompressAfter > 0 {
			st, err := f.db.Compressions().Stats(ctx)
			if err != nil {
				return nil, fmt.Errorf("compression: %w", err)
			}
			sys.Compression = &api.CompressionState{Syntax: c.CompressSyntax, AfterSeconds: int64(c.CompressAfter / time.Second),
				Instances: st.Instances, OriginalBytes: st.OriginalBytes, StoredBytes: st.StoredBytes, SavedBytes: st.Saved(), Skipped: st.Skipped}
		}
		if sp, ok := f.store.(*spool.Store); ok {
			objects, bytes, err := sp.Backlog(ctx)
			if err != nil {
				return nil, fmt.Errorf("spool backlog: %w", err)
			}
			sys.Spool = &api.SpoolState{Objects: objects, Bytes: bytes}
		}
		return sys, nil
	}
}

// backendKind names the storage a URL opens, as the metrics label it:
// file, s3, or spool for a bucket with a local spool in front.
func backendKind(u string) string {
	switch {
	case strings.HasPrefix(u, "s3://") && strings.Contains(u, "ack=spool"):
		return "spool"
	case strings.HasPrefix(u, "s3://"):
		return "s3"
	}
	return "file"
}

func indexKind(u string) string {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		return "postgres"
	}
	return "sqlite"
}

// redactURL drops what may hold a secret from a storage or index URL: the
// password and the query (PostgreSQL takes password= there too).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.ForceQuery = "", false
	return u.String()
}

// uiPrincipal returns who a request to the web interface's configuration
// comes from: that request is open, so that a page without a token learns
// how to sign in, and its token, if any, is checked here.
func uiPrincipal(mw *auth.Middleware) func(*http.Request) *ui.Principal {
	if len(mw.Authenticators) == 0 {
		return nil // authentication off: everyone may do everything
	}
	return func(r *http.Request) *ui.Principal {
		p, err := mw.Authenticate(r)
		if err != nil {
			return nil
		}
		out := &ui.Principal{Name: p.Name, Scopes: []string{}, Issuers: []string{}}
		for _, s := range []struct {
			scope auth.Scope
			name  string
		}{{auth.Read, ui.ScopeRead}, {auth.Write, ui.ScopeWrite}, {auth.Delete, ui.ScopeDelete}, {auth.Admin, ui.ScopeAdmin}} {
			if p.Can(s.scope) {
				out.Scopes = append(out.Scopes, s.name)
			}
		}
		if !p.AllIssuers() {
			out.Issuers = append(out.Issuers, p.Issuers...)
		}
		return out
	}
}
