package main

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/httplimit"
	"github.com/pacsd/pacsd/scp"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/spool"
)

// serveCommand runs the archive until ctx ends, then shuts down
// gracefully: associations in progress finish (up to ShutdownTimeout)
// before the index and storage close.
type serveCommand struct {
	baseSettings
	storeSettings
	archiveSettings
	remoteSettings
	dimseSettings
	querySettings
	httpSettings
	ShutdownTimeout time.Duration `name:"shutdown-timeout" default:"30s" placeholder:"DURATION" help:"how long shutdown waits for associations to finish"`
}

// shutdownGrace is how long serve waits, past the shutdown timeout, for
// what it closes to return before it gives up on it: the process then
// ends, which loses nothing acknowledged.
const shutdownGrace = 5 * time.Second

func (c *serveCommand) Run(ctx context.Context, p *process) (err error) {
	if err := complete(&c.storeSettings, &c.archiveSettings, &c.remoteSettings, &c.dimseSettings, &c.httpSettings); err != nil {
		return err
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	// What serve opens it closes, last first, on every way out, within
	// the shutdown timeout from the moment it begins to stop.
	var opened closers
	started := false
	defer func() {
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
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return err
	}
	opened.add("index", func(context.Context) error { return db.Close() })
	dup, err := archive.ParseDuplicatePolicy(c.Duplicates)
	if err != nil {
		return err
	}
	arch := archive.New(archive.Config{
		Store:      store,
		Index:      db,
		AETitle:    c.AETitle,
		Duplicates: dup,
		Logger:     log.With("component", "archive"),
	})
	svc := &scp.Service{Archive: arch, Logger: log}
	rs, err := c.remotes()
	if err != nil {
		return err
	}
	remotes := map[string]scp.Remote{}
	for ae, r := range rs {
		remotes[ae] = scp.Remote{AETitle: ae, Addr: r.addr, TLS: r.tls}
	}
	qr := &scp.QR{
		AETitle:            c.AETitle,
		Index:              db,
		Objects:            arch,
		Remotes:            remotes,
		MaxMatches:         c.MaxMatches,
		CaseSensitiveNames: c.CaseSensitivePN,
		Logger:             log.With("component", "qr"),
	}
	commit := &scp.Commitment{
		AETitle: c.AETitle,
		Archive: arch,
		Remotes: remotes,
		Logger:  log.With("component", "commitment"),
	}
	allow, err := allowCaller(ctx, c.AllowAE, c.AllowAnyAE)
	if err != nil {
		return err
	}
	dsrv := &dimse.Server{
		AETitle:         c.AETitle,
		AllowCaller:     allow,
		Echo:            svc,
		Store:           svc,
		Find:            qr,
		Move:            qr,
		Get:             qr,
		Commit:          commit,
		MaxPDULength:    uint32(c.MaxPDU),
		MaxAssociations: c.MaxAssociations,
		IdleTimeout:     c.IdleTimeout,
		Logger:          log.With("component", "dimse"),
	}
	web := &dicomweb.Server{
		Index:              db,
		Archive:            arch,
		Root:               c.DICOMwebRoot,
		MaxBodyBytes:       c.MaxBody,
		MaxMatches:         c.MaxMatches,
		CaseSensitiveNames: c.CaseSensitivePN,
		AETitle:            c.AETitle,
		PublicURL:          c.PublicURL,
		Logger:             log.With("component", "dicomweb"),
	}
	if !slices.Contains(c.CORSOrigins, "*") {
		web.CORSOrigins = c.CORSOrigins
		if web.CORSOrigins == nil {
			web.CORSOrigins = []string{} // none
		}
	}
	hsrv := httplimit.New(httpHandler(store, db, web), httplimit.Config{})

	var lc net.ListenConfig
	dl, err := lc.Listen(ctx, "tcp", c.DIMSEAddr)
	if err != nil {
		return fmt.Errorf("DIMSE listener: %w", err)
	}
	opened.add("DIMSE listener", closeListener(dl))
	hl, err := lc.Listen(ctx, "tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	opened.add("HTTP listener", closeListener(hl))

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

	var serving sync.WaitGroup
	failed := make(chan error, 2)
	serving.Go(func() {
		if err := dsrv.Serve(dl); !errors.Is(err, dimse.ErrServerClosed) {
			failed <- err
		}
	})
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
	log.Info("pacsd started", "version", version, "ae_title", c.AETitle, "dimse_addr", dl.Addr().String(),
		"http_addr", hl.Addr().String(), "storage", c.Storage, "index", c.Index, "duplicates", c.Duplicates)
	started = true

	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", c.ShutdownTimeout)
		return nil
	case err := <-failed:
		log.Error("server failed; shutting down", "err", err)
		return err
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

// allowCaller builds the calling AE check from the allow-list. Host names
// are resolved once, at start.
func allowCaller(ctx context.Context, list []string, any bool) (func(string, net.Addr) bool, error) {
	if any {
		return nil, nil
	}
	if len(list) == 0 {
		// Loopback only (config.complete checked the address): any
		// local process may associate.
		return nil, nil
	}
	var entries []allowed
	for _, e := range list {
		a, err := parseAllowed(e)
		if err != nil {
			return nil, err
		}
		if a.host != "" {
			addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", a.host)
			if err != nil {
				return nil, fmt.Errorf("allow_ae %s: %w", e, err)
			}
			for _, ip := range addrs {
				b := a
				b.prefix = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
				entries = append(entries, b)
			}
			continue
		}
		entries = append(entries, a)
	}
	return func(ae string, addr net.Addr) bool {
		var ip netip.Addr
		if ta, ok := addr.(*net.TCPAddr); ok {
			ip, _ = netip.AddrFromSlice(ta.IP)
			ip = ip.Unmap()
		}
		for _, e := range entries {
			if e.ae != ae {
				continue
			}
			if !e.prefix.IsValid() || (ip.IsValid() && e.prefix.Contains(ip)) {
				return true
			}
		}
		return false
	}, nil
}

// httpHandler serves the health checks: /healthz says the process is up,
// /readyz that storage and the index answer.
func httpHandler(store storage.Store, db *sqlindex.DB, web *dicomweb.Server) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	web.Register(e)
	e.GET("/healthz", func(c echo.Context) error {
		return c.String(http.StatusOK, "ok\n")
	})
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if _, err := store.Stat(ctx, "readyz"); err != nil && !errors.Is(err, storage.ErrNotFound) {
			if _, spooled := store.(*spool.Store); spooled && errors.Is(err, storage.ErrUnavailable) {
				// The spool takes images in while S3 is away.
				return c.String(http.StatusOK, "ready, spooling: "+err.Error()+"\n")
			}
			return c.String(http.StatusServiceUnavailable, "storage: "+err.Error()+"\n")
		}
		if _, err := db.Instance(ctx, "0"); err != nil && !errors.Is(err, index.ErrNotFound) {
			return c.String(http.StatusServiceUnavailable, "index: "+err.Error()+"\n")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	return e
}
