package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/archive"
	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/httplimit"
	"github.com/pacsd/pacsd/recompress"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/scp"
)

// serveCommand runs the archive until ctx ends, then shuts down
// gracefully: associations in progress finish (up to ShutdownTimeout)
// before the index and storage close.
type serveCommand struct {
	baseSettings
	storeSettings
	archiveSettings
	identitySettings
	remoteSettings
	routeSettings
	dimseSettings
	querySettings
	httpSettings
	tlsSettings
	httpAuthSettings
	auditSettings
	deidSettings
	faceSettings
	trashSettings
	rateSettings
	compressSettings
	ShutdownTimeout time.Duration `name:"shutdown-timeout" default:"30s" placeholder:"DURATION" help:"how long shutdown waits for associations to finish"`
}

// shutdownGrace is how long serve waits, past the shutdown timeout, for
// what it closes to return before it gives up on it: the process then
// ends, which loses nothing acknowledged.
const shutdownGrace = 5 * time.Second

func (c *serveCommand) Run(ctx context.Context, p *process) (err error) {
	// SIGHUP reloads certificates and tokens; caught from the start, so
	// that one arriving early does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := complete(&c.storeSettings, &c.archiveSettings, &c.identitySettings, &c.remoteSettings, &c.dimseSettings, &c.httpSettings, &c.tlsSettings, &c.httpAuthSettings, &c.trashSettings, &c.rateSettings, &c.compressSettings); err != nil {
		return err
	}
	if err := c.completeAudit(c.Data); err != nil {
		return err
	}
	rs, err := c.remotes()
	if err != nil {
		return err
	}
	if err := c.routeSettings.complete(rs); err != nil {
		return err
	}
	if c.DIMSETLSAddr != "" {
		if err := c.dimseSettings.checkListen(c.DIMSETLSAddr); err != nil {
			return err
		}
	}
	if err := c.httpAuthSettings.checkListen(c.HTTPAddr); err != nil {
		return err
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	deidKey, err := c.deidSettings.key(log)
	if err != nil {
		return err
	}
	fc := newFace(c, log.With("component", "metrics"))
	aes, err := newAEAuthorizer(ctx, &c.dimseSettings)
	if err != nil {
		return err
	}
	if err := aes.checkCertBindings(c.TLSClientCA); err != nil {
		return err
	}
	tlsCfg, err := c.tlsSettings.load(aes.needsClientCert())
	if err != nil {
		return err
	}
	// What serve opens it closes, last first, on every way out, within
	// the shutdown timeout from the moment it begins to stop.
	var opened closers
	started := false
	var stopErr error // why serve stops, for the audit trail
	defer func() {
		stopErr = err
		if cerr := opened.close(c.ShutdownTimeout, log); err == nil {
			err = cerr
		}
		if started {
			log.Info("pacsd stopped")
		}
	}()

	store, closeStore, err := openStorage(ctx, &c.storeSettings, c.s3Env(p.getenv), log)
	if err != nil {
		return err
	}
	opened.add("storage", closeStore)
	db, err := openIndex(ctx, c.Index, c.indexOptions()...)
	if err != nil {
		return err
	}
	opened.add("index", func(context.Context) error { return db.Close() })
	issuers, err := c.issuers()
	if err != nil {
		return err
	}
	// The journal closes before the index, which keeps its head.
	at, err := openAudit(ctx, &c.auditSettings, db.AuditHead(journalName(c.AuditDir)), c.AETitle, tlsCfg.client, log)
	if err != nil {
		return err
	}
	opened.add("audit journal", func(ctx context.Context) error { return at.close(ctx, stopErr) })
	trail := at.trail
	trail.Started()
	dup, err := archive.ParseDuplicatePolicy(c.Duplicates)
	if err != nil {
		return err
	}
	fwd := &forwarder{rules: c.rules}
	codecs := codec.New(codec.Options{})
	arch := archive.New(archive.Config{
		Codecs:     recompress.Codecs{Registry: codecs},
		Store:      store,
		Index:      db,
		AETitle:    c.AETitle,
		Duplicates: dup,
		Logger:     log.With("component", "archive"),
		Forwarder:  fwd,
		Observer:   fc.reg,
		Backend:    backendKind(c.Storage),
		// Rejection notes (IHE IOCM) hide what they name.
		Rejections:     db,
		RejectionPurge: c.RejectionPolicy == "trash",
		Issuers:        issuers,
		NHSIssuers:     c.nhsIssuers(),
	})
	trash := &archive.Trash{Store: store, Index: db, Logger: log.With("component", "trash")}
	journal := &archive.Journal{Store: store, Index: db, Logger: log.With("component", "corrections")}
	replayRecords(ctx, store, db, log.With("component", "records"))
	pctx, stopPurges := context.WithCancel(context.WithoutCancel(ctx))
	// The trash is purged of what is older than --trash-days, and the
	// log of removals, whoever made them, goes to the audit trail.
	var background sync.WaitGroup
	background.Go(func() { runPurges(pctx, trash, c.trashAge(), log.With("component", "trash")) })
	if trail != nil {
		// Without a trail (--audit-off) the logs wait in the index.
		background.Go(func() { runRemovalAudit(pctx, db, trail, log.With("component", "trash")) })
		background.Go(func() { runCorrectionAudit(pctx, db, trail, log.With("component", "corrections")) })
		background.Go(func() { runExportAudit(pctx, db, trail, log.With("component", "export")) })
		background.Go(func() { runLinkAudit(pctx, db, trail, log.With("component", "patients")) })
	}
	purged := make(chan struct{})
	go func() {
		background.Wait()
		close(purged)
	}()
	opened.add("trash purge and removal audit", func(ctx context.Context) error {
		stopPurges()
		select {
		case <-purged:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	routing, err := c.newRouting(c.AETitle, rs, arch, codecs, p.getenv, log.With("component", "route"))
	if err != nil {
		return err
	}
	// The front doors see the index and the archive through the
	// caller's principal, and what they do is audited (access.go).
	au := &auditor{trail: trail, patients: db, log: log.With("component", "audit")}
	gdb, garch := guardedIndex{db: db, failed: fc.reg.ObserveIndexError}, guardedArchive{arch, db}
	for _, d := range routing.destinations {
		if s, ok := d.Sender.(*route.DIMSE); ok && s.TLS != nil {
			// Outgoing TLS presents --tls-cert and verifies the peer
			// against --tls-ca, as C-MOVE does.
			s.TLS = tlsCfg.client
		}
	}
	if err := deidentifyDestinations(routing, c.Destinations, deidKey, db); err != nil {
		return err
	}
	for i, d := range routing.destinations {
		routing.destinations[i].Sender = auditedSender{Sender: d.Sender, auditor: au, dest: auditlog.Actor{User: d.Name}}
	}
	router := route.NewRouter(route.Config{
		Queue:        db.Outbox(),
		Instances:    db,
		Destinations: routing.destinations,
		Owner:        c.nodeID(c.Data),
		Lease:        c.ForwardLease,
		Logger:       log.With("component", "route"),
	})
	fwd.wake = router.Wake
	// The workers run until serve stops, after the servers, so that
	// what the last associations store is queued before they end.
	rctx, stopRouting := context.WithCancel(context.WithoutCancel(ctx))
	routed := make(chan struct{})
	go func() {
		defer close(routed)
		if err := router.Run(rctx); err != nil {
			log.Error("forwarding stopped", "err", err)
		}
	}()
	opened.add("forwarding", func(ctx context.Context) error {
		stopRouting()
		select {
		case <-routed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	stopCompression, err := c.startCompression(ctx, arch, db, c.nodeID(c.Data), fc.reg, log.With("component", "compress"))
	if err != nil {
		return err
	}
	opened.add("archive compression", stopCompression)
	if dests := routing.destinations; len(dests) > 0 {
		names := make([]string, len(dests))
		for i, d := range dests {
			names[i] = d.Name
		}
		log.Info("forwarding", "destinations", names, "routes", len(c.rules.Routes()), "node", c.nodeID(c.Data))
	}
	svc := &scp.Service{Archive: garch, Logger: log}
	remotes := map[string]scp.Remote{}
	for ae, r := range rs {
		remotes[ae] = scp.Remote{AETitle: ae, Addr: r.addr, TLS: r.tls}
	}
	qr := &scp.QR{
		TLSConfig:          tlsCfg.client,
		Codecs:             codecs,
		AETitle:            c.AETitle,
		Index:              gdb,
		Objects:            garch,
		Remotes:            remotes,
		MaxMatches:         c.MaxMatches,
		CaseSensitiveNames: c.CaseSensitivePN,
		Logger:             log.With("component", "qr"),
	}
	commit := &scp.Commitment{
		TLSConfig: tlsCfg.client,
		AETitle:   c.AETitle,
		Archive:   arch,
		Remotes:   remotes,
		Logger:    log.With("component", "commitment"),
	}
	audited := &auditedDIMSE{auditor: au, store: svc, find: qr, move: qr, get: qr, remotes: map[string]string{}}
	for ae, r := range rs {
		audited.remotes[ae] = r.addr
	}
	ops := limitedDIMSE{limiters: newLimiters(c.AERate), next: audited}
	dsrv := &dimse.Server{
		AETitle:            c.AETitle,
		AllowCaller:        aes.allowCaller(),
		AssociationContext: aes.associationContext,
		Observe:            observeAssociations(trail),
		Echo:               svc,
		Store:              ops,
		Find:               ops,
		Move:               ops,
		Get:                ops,
		Commit:             commit,
		CommitResult:       routing.commitments,
		MaxPDULength:       uint32(c.MaxPDU),
		MaxAssociations:    c.MaxAssociations,
		IdleTimeout:        c.IdleTimeout,
		Logger:             log.With("component", "dimse"),
	}
	fc.instrument(dsrv)
	web := &dicomweb.Server{
		Index:              gdb,
		Archive:            garch,
		Trash:              trash,
		Root:               c.DICOMwebRoot,
		MaxBodyBytes:       c.MaxBody,
		MaxMatches:         c.MaxMatches,
		CaseSensitiveNames: c.CaseSensitivePN,
		AETitle:            c.AETitle,
		PublicURL:          c.PublicURL,
		Codecs:             codecs,
		Logger:             log.With("component", "dicomweb"),
	}
	if !slices.Contains(c.CORSOrigins, "*") {
		web.CORSOrigins = c.CORSOrigins
		if web.CORSOrigins == nil {
			web.CORSOrigins = []string{} // none
		}
	}
	if web.Research, err = researchService(deidKey, db, arch, au); err != nil {
		return err
	}
	mw, tokens, err := c.httpAuthSettings.middleware(ctx, trail, log.With("component", "http-auth"))
	if err != nil {
		return err
	}
	e := httpHandler(web)
	fc.store, fc.db, fc.queue, fc.destinations = store, db, db.Outbox(), c.destinationList(rs)
	fc.register(e, c, uiPrincipal(mw))
	(&api.Server{Queue: db.Outbox(), Index: gdb, Destinations: c.destinationList(rs), Wake: router.Wake, Logger: log.With("component", "api"),
		Migrations: db.MigrationState(), Changes: db, Objects: arch, System: fc.system(c),
		Patients: journaled{db, journal}, Corrections: journaled{db, journal}, Originals: originals{db, garch}, Trail: trail}).Register(e)
	registerAuditAPI(e, c.AuditDir, c.AETitle)
	registerDeletionsAPI(e, db)
	registerRestoreAPI(e, trash)
	registerReidentifyAPI(e, db, trail)
	hsrv := httplimit.New(withRefusalCORS(web.CORSOrigins, mw.Wrap(newLimiters(c.HTTPRate).limitHTTP(au.researchGate(web, au.auditRequests(e))))), httplimit.Config{})

	var lc net.ListenConfig
	dl, err := lc.Listen(ctx, "tcp", c.DIMSEAddr)
	if err != nil {
		return fmt.Errorf("DIMSE listener: %w", err)
	}
	opened.add("DIMSE listener", closeListener(dl))
	fc.dimseAddr, dl = dl.Addr().String(), fc.reg.Listener(dl, "dimse")
	hl, err := lc.Listen(ctx, "tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	opened.add("HTTP listener", closeListener(hl))
	fc.httpAddr, hl = hl.Addr().String(), fc.reg.Listener(hl, "http")
	var tl net.Listener
	if c.DIMSETLSAddr != "" {
		l, err := lc.Listen(ctx, "tcp", c.DIMSETLSAddr)
		if err != nil {
			return fmt.Errorf("DICOM TLS listener: %w", err)
		}
		opened.add("DICOM TLS listener", closeListener(l))
		tl = auth.NewListener(fc.reg.Listener(l, "dimse"), tlsCfg.server)
	}

	switch {
	case c.AllowAnyAE:
		log.Warn("accepting associations from any calling AE title", "dimse_addr", dl.Addr().String())
	case len(c.AllowAE) == 0:
		log.Info("no calling AE allow-list: listening on loopback only; set --allow-ae to accept other hosts", "dimse_addr", dl.Addr().String())
	default:
		log.Info("calling AE titles allowed", "allow_ae", c.AllowAE)
	}
	if len(c.RemoteAEs) > 0 {
		log.Info("remote AEs (C-MOVE destinations)", "remote_aes", c.RemoteAEs)
	}

	sctx, stopSampling := context.WithCancel(context.WithoutCancel(ctx))
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		fc.sample(sctx)
	}()
	opened.add("metrics sampling", func(context.Context) error {
		stopSampling()
		<-sampled
		return nil
	})

	var serving sync.WaitGroup
	failed := make(chan error, 3)
	serving.Go(func() {
		if err := dsrv.Serve(dl); !errors.Is(err, dimse.ErrServerClosed) {
			failed <- err
		}
	})
	if tl != nil {
		serving.Go(func() {
			if err := dsrv.Serve(tl); !errors.Is(err, dimse.ErrServerClosed) {
				failed <- err
			}
		})
	}
	serving.Go(func() {
		if err := hsrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	})
	opened.add("servers", func(ctx context.Context) error {
		var stopping sync.WaitGroup
		stopping.Go(func() {
			if err := dsrv.Shutdown(ctx); err != nil {
				log.Warn("associations still open at the shutdown timeout were aborted", "err", err)
			}
		})
		stopping.Go(func() {
			if err := hsrv.Shutdown(ctx); err != nil {
				log.Warn("HTTP requests still running at the shutdown timeout were cut off", "err", err)
				hsrv.Close()
			}
		})
		stopping.Wait()
		serving.Wait()
		// Commitment results still being worked out are dropped; the
		// modality asks again.
		if err := commit.Shutdown(ctx); err != nil {
			log.Warn("storage commitment reports still in progress were dropped", "err", err)
		}
		return nil
	})
	started = true
	attrs := []any{"version", version, "ae_title", c.AETitle, "dimse_addr", dl.Addr().String(),
		"http_addr", hl.Addr().String(), "http_auth", c.HTTPAuth, "storage", c.Storage, "index", c.Index, "duplicates", c.Duplicates, "audit_dir", c.AuditDir}
	if tl != nil {
		attrs = append(attrs, "dimse_tls_addr", tl.Addr().String(), "tls_client_certs", tlsCfg.clientCAs != nil)
	}
	log.Info("pacsd started", attrs...)

	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "timeout", c.ShutdownTimeout)
			return nil
		case err := <-failed:
			log.Error("server failed; shutting down", "err", err)
			return err
		case <-hup:
			reload(tlsCfg.keyPair, tokens, trail, log)
		}
	}
}

// reload reads the TLS certificate and the token file again, on SIGHUP:
// new TLS handshakes use the new certificate, associations and requests
// in progress carry on. A file that cannot be read leaves the last good
// one in force; either way the audit trail records the attempt.
func reload(kp *auth.KeyPair, tokens *auth.TokenFile, trail *auditlog.Trail, log *slog.Logger) {
	if kp == nil && tokens == nil {
		log.Info("SIGHUP: nothing to reload (no --tls-cert, no --token-file)")
		return
	}
	if kp != nil {
		err := kp.Reload()
		trail.ConfigurationReloaded("TLS certificate and key", err)
		if err != nil {
			log.Error("SIGHUP: TLS certificate not reloaded; the previous one stays in use", "err", err)
		} else {
			leaf := kp.Certificate().Leaf
			log.Info("SIGHUP: TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
		}
	}
	if tokens != nil {
		err := tokens.Reload()
		trail.ConfigurationReloaded("token file", err)
		if err != nil {
			log.Error("SIGHUP: token file not reloaded; the previous tokens stay in force", "err", err)
		} else {
			log.Info("SIGHUP: token file reloaded", "tokens", tokens.Len())
		}
	}
}

// closers are what serve has opened, to be closed in reverse order.
type closers []closer

// A closer closes one thing serve opened, within ctx.
type closer struct {
	what  string
	close func(ctx context.Context) error
}

func (cs *closers) add(what string, close func(context.Context) error) {
	*cs = append(*cs, closer{what, close})
}

// close closes everything, last first, within timeout: a spool, last,
// gets what is left of it to finish its uploads (the others resume at the
// next start). It waits up to shutdownGrace more for a closer that does
// not honour the deadline, then returns an error naming it.
func (cs closers) close(timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var mu sync.Mutex
	current := ""
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := len(cs) - 1; i >= 0; i-- {
			mu.Lock()
			current = cs[i].what
			mu.Unlock()
			if err := cs[i].close(ctx); err != nil {
				log.Warn("not closed cleanly", "what", cs[i].what, "err", err)
			}
		}
	}()
	grace := time.NewTimer(timeout + shutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("shutdown: %s still closing %v after the shutdown timeout; giving up on it", current, shutdownGrace)
	}
}

// closeListener returns a closer of l, which a server may have closed
// already.
func closeListener(l net.Listener) func(context.Context) error {
	return func(context.Context) error {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// httpHandler returns the echo instance of the HTTP listener, with the
// DICOMweb services; serve adds the rest.
func httpHandler(web *dicomweb.Server) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	web.Register(e)
	return e
}
