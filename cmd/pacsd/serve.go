package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/scp"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/spool"
)

// serve runs the archive until ctx ends, then shuts down gracefully:
// associations in progress finish (up to ShutdownTimeout) before the index
// and storage close.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	store, closeStore, err := openStorage(ctx, cfg, log)
	if err != nil {
		return err
	}
	db, err := openIndex(ctx, cfg.Index)
	if err != nil {
		return err
	}
	defer db.Close()
	dup, err := archive.ParseDuplicatePolicy(cfg.Duplicates)
	if err != nil {
		return err
	}
	arch := archive.New(archive.Config{
		Store:      store,
		Index:      db,
		AETitle:    cfg.AETitle,
		Duplicates: dup,
		Logger:     log.With("component", "archive"),
	})
	svc := &scp.Service{Archive: arch, Logger: log}
	rs, err := parseRemotes(cfg.RemoteAEs)
	if err != nil {
		return err
	}
	remotes := map[string]scp.Remote{}
	for ae, r := range rs {
		remotes[ae] = scp.Remote{AETitle: ae, Addr: r.addr, TLS: r.tls}
	}
	qr := &scp.QR{
		AETitle:            strings.TrimSpace(cfg.AETitle),
		Index:              db,
		Objects:            arch,
		Remotes:            remotes,
		MaxMatches:         cfg.MaxMatches,
		CaseSensitiveNames: cfg.CaseSensitivePN,
		Logger:             log.With("component", "qr"),
	}
	commit := &scp.Commitment{
		AETitle: strings.TrimSpace(cfg.AETitle),
		Archive: arch,
		Remotes: remotes,
		Logger:  log.With("component", "commitment"),
	}
	allow, err := allowCaller(ctx, cfg.AllowAE, cfg.AllowAnyAE)
	if err != nil {
		return err
	}
	dsrv := &dimse.Server{
		AETitle:         strings.TrimSpace(cfg.AETitle),
		AllowCaller:     allow,
		Echo:            svc,
		Store:           svc,
		Find:            qr,
		Move:            qr,
		Get:             qr,
		Commit:          commit,
		MaxPDULength:    uint32(cfg.MaxPDU),
		MaxAssociations: cfg.MaxAssociations,
		IdleTimeout:     cfg.IdleTimeout,
		Logger:          log.With("component", "dimse"),
	}

	var lc net.ListenConfig
	dl, err := lc.Listen(ctx, "tcp", cfg.DIMSEAddr)
	if err != nil {
		return fmt.Errorf("DIMSE listener: %w", err)
	}
	hl, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		dl.Close()
		return fmt.Errorf("HTTP listener: %w", err)
	}
	web := &dicomweb.Server{
		Index:              db,
		Archive:            arch,
		Root:               cfg.DICOMwebRoot,
		MaxBodyBytes:       cfg.MaxBody,
		MaxMatches:         cfg.MaxMatches,
		CaseSensitiveNames: cfg.CaseSensitivePN,
		AETitle:            strings.TrimSpace(cfg.AETitle),
		Logger:             log.With("component", "dicomweb"),
	}
	if !slices.Contains(cfg.CORSOrigins, "*") {
		web.CORSOrigins = cfg.CORSOrigins
		if web.CORSOrigins == nil {
			web.CORSOrigins = []string{} // none
		}
	}
	hsrv := &http.Server{Handler: httpHandler(store, db, web), ReadHeaderTimeout: 10 * time.Second}

	switch {
	case cfg.AllowAnyAE:
		log.Warn("accepting associations from any calling AE title", "dimse_addr", dl.Addr().String())
	case len(cfg.AllowAE) == 0:
		log.Info("no calling AE allow-list: listening on loopback only; set --allow-ae to accept other hosts", "dimse_addr", dl.Addr().String())
	default:
		log.Info("calling AE titles allowed", "allow_ae", cfg.AllowAE)
	}
	if len(cfg.RemoteAEs) > 0 {
		log.Info("remote AEs (C-MOVE destinations)", "remote_aes", cfg.RemoteAEs)
	}
	log.Info("pacsd started", "version", version, "ae_title", cfg.AETitle, "dimse_addr", dl.Addr().String(),
		"http_addr", hl.Addr().String(), "storage", cfg.Storage, "index", cfg.Index, "duplicates", cfg.Duplicates)

	errc := make(chan error, 2)
	go func() { errc <- dsrv.Serve(dl) }()
	go func() { errc <- hsrv.Serve(hl) }()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case runErr = <-errc:
		log.Error("server failed; shutting down", "err", runErr)
	}

	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := dsrv.Shutdown(sctx); err != nil {
			log.Warn("associations still open at the shutdown timeout were aborted", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		hsrv.Shutdown(sctx)
	}()
	wg.Wait()
	// Commitment results still being worked out are dropped; the
	// modality asks again.
	if err := commit.Shutdown(sctx); err != nil {
		log.Warn("storage commitment reports still in progress were dropped", "err", err)
	}
	// A spool finishes the uploads in progress within what is left of
	// the timeout; the others resume at the next start.
	if err := closeStore(sctx); err != nil {
		log.Warn("storage not closed cleanly", "err", err)
	}
	log.Info("pacsd stopped")
	if runErr != nil && !errors.Is(runErr, dimse.ErrServerClosed) && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}

func newLogger(cfg *config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format: %q is not text or json", cfg.LogFormat)
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
func httpHandler(store storage.Store, db *index.DB, web *dicomweb.Server) http.Handler {
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
