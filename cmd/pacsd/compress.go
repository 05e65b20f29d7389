package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/metrics"
	"github.com/pacsd/pacsd/recompress"
)

// compressSettings turn on archive compression (package recompress).
type compressSettings struct {
	CompressAfter  time.Duration `name:"compress-after" placeholder:"DURATION" help:"re-encode, losslessly and in the background, the instances stored uncompressed once they are this old (0: never, the default); the originals come back byte for byte"`
	CompressSyntax string        `name:"compress-syntax" default:"htj2k-lossless" placeholder:"SYNTAX" help:"what --compress-after re-encodes in: htj2k-lossless, jpegls-lossless or j2k-lossless"`
}

func (c *compressSettings) complete() error {
	if c.CompressAfter < 0 {
		return fmt.Errorf("compress_after: %v is negative", c.CompressAfter)
	}
	if _, err := recompress.ParseSyntax(c.CompressSyntax); err != nil {
		return fmt.Errorf("compress_syntax: %w", err)
	}
	return nil
}

// startCompression runs archive compression in the background when
// --compress-after is set, and returns what stops it.
func (c *compressSettings) startCompression(ctx context.Context, arch *archive.Service, db *sqlindex.DB, owner string, reg *metrics.Registry, log *slog.Logger) (func(context.Context) error, error) {
	if c.CompressAfter == 0 {
		return func(context.Context) error { return nil }, nil
	}
	ts, err := recompress.ParseSyntax(c.CompressSyntax)
	if err != nil {
		return nil, err
	}
	comp, err := recompress.New(recompress.Config{
		Archive: arch, Index: db.Compressions(), After: c.CompressAfter, Syntax: ts,
		Owner: owner, Logger: log, Observer: reg,
	})
	if err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		comp.Run(cctx)
	}()
	return func(ctx context.Context) error {
		stop()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}
