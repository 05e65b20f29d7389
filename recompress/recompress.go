package recompress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// Syntaxes names the transfer syntaxes archive compression writes, as
// --compress-syntax takes them.
var syntaxes = map[string]string{
	"htj2k-lossless":  uid.HTJ2KLossless,
	"jpegls-lossless": uid.JPEGLSLossless,
	"j2k-lossless":    uid.JPEG2000Lossless,
}

// ParseSyntax returns the transfer syntax UID of a name
// --compress-syntax takes: htj2k-lossless, jpegls-lossless or
// j2k-lossless.
func ParseSyntax(name string) (string, error) {
	if ts, ok := syntaxes[name]; ok {
		return ts, nil
	}
	return "", fmt.Errorf("recompress: syntax %q is not htj2k-lossless, jpegls-lossless or j2k-lossless", name)
}

// Archive is what compression needs of the archive; *archive.Service is
// one.
type Archive interface {
	Compress(ctx context.Context, in *index.Instance, ts string) (*archive.Compression, error)
}

// Index is what compression needs of the index; the Compressions of
// sqlindex.DB together with its Instance are one (see cmd/pacsd).
type Index interface {
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	// Claim takes up to limit instances received before cutoff and
	// stored uncompressed, that no one holds or skipped, for owner,
	// until lease from now.
	Claim(ctx context.Context, owner string, cutoff time.Time, limit int, lease time.Duration) ([]index.CompressTask, error)
	// Renew extends owner's claim to lease from now.
	Renew(ctx context.Context, owner string, t index.CompressTask, lease time.Duration) error
	// Done ends owner's claim on an instance compressed or gone.
	Done(ctx context.Context, owner string, t index.CompressTask) error
	// Skip records that the instance is to stay as it is, and why.
	Skip(ctx context.Context, owner string, t index.CompressTask, reason string) error
	// Release lets any node take the instance again from retry on.
	Release(ctx context.Context, owner string, t index.CompressTask, retry time.Time) error
	// Stats sums up what compression saves across the archive.
	Stats(ctx context.Context) (index.CompressionStats, error)
}

// Observer hears how compression goes, for metrics; a *metrics.Registry
// is one.
type Observer interface {
	// ObserveCompression counts an instance handled: outcome is
	// compressed, skipped or failed.
	ObserveCompression(outcome string, originalBytes, storedBytes int64)
	// SetCompressionTotals records the archive's totals.
	SetCompressionTotals(instances, savedBytes int64)
}

// Outcomes of an instance, for Observer.
const (
	OutcomeCompressed = "compressed"
	OutcomeSkipped    = "skipped"
	OutcomeFailed     = "failed"
)

// Defaults of Config.
const (
	DefaultConcurrency = 1
	DefaultRate        = 32 << 20
	DefaultInterval    = time.Minute
	DefaultLease       = 15 * time.Minute
	DefaultRetry       = 10 * time.Minute
	batch              = 16
)

// Config configures a Compressor.
type Config struct {
	Archive Archive
	Index   Index
	// After is the age, since it was received, at which an instance is
	// compressed.
	After time.Duration
	// Syntax is the transfer syntax UID to compress in (see
	// ParseSyntax).
	Syntax string
	// Owner names this node in the index's leases; it must differ
	// between nodes.
	Owner string
	// Concurrency is how many instances are compressed at once
	// (DefaultConcurrency when 0), and Rate the most bytes of originals
	// compressed a second (DefaultRate when 0), so that compression
	// leaves the CPUs and storage to ingest and retrieval.
	Concurrency int
	Rate        int64
	// Interval is the wait between passes that found nothing left to do
	// (DefaultInterval when 0, or After when shorter, but a second); Lease how long a node holds the
	// instances it claims (DefaultLease); Retry how long an instance
	// that failed for a reason that may pass waits (DefaultRetry).
	Interval, Lease, Retry time.Duration
	Logger                 *slog.Logger
	Observer               Observer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Compressor compresses the archive in the background.
type Compressor struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
}

// New returns a Compressor.
func New(cfg Config) (*Compressor, error) {
	switch {
	case cfg.Archive == nil || cfg.Index == nil:
		return nil, errors.New("recompress: no archive or index")
	case cfg.After <= 0:
		return nil, errors.New("recompress: the age to compress at must be positive")
	case cfg.Owner == "":
		return nil, errors.New("recompress: no owner")
	}
	if ts, ok := uid.LookupTransferSyntax(cfg.Syntax); !ok || !isTarget(ts.UID) {
		return nil, fmt.Errorf("recompress: %s is not a syntax archive compression writes", uid.Name(cfg.Syntax))
	}
	c := &Compressor{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	// An age shorter than the interval is checked as often as it.
	setDefault(&c.cfg.Interval, min(DefaultInterval, max(cfg.After, time.Second)))
	setDefault(&c.cfg.Lease, DefaultLease)
	setDefault(&c.cfg.Retry, DefaultRetry)
	if c.cfg.Concurrency <= 0 {
		c.cfg.Concurrency = DefaultConcurrency
	}
	if c.cfg.Rate <= 0 {
		c.cfg.Rate = DefaultRate
	}
	return c, nil
}

func isTarget(ts string) bool {
	for _, t := range syntaxes {
		if t == ts {
			return true
		}
	}
	return false
}

// Pass is the account of one pass.
type Pass struct {
	Compressed, Skipped, Failed int
	// OriginalBytes and StoredBytes are those of the instances
	// compressed.
	OriginalBytes, StoredBytes int64
	Elapsed                    time.Duration
}

// Saved returns the bytes the pass saved.
func (p Pass) Saved() int64 { return p.OriginalBytes - p.StoredBytes }

// Run compresses until ctx is done: a pass, then a wait of Interval, and
// again. It returns ctx's error.
func (c *Compressor) Run(ctx context.Context) error {
	c.log.Info("archive compression started", "after", c.cfg.After, "syntax", uid.Name(c.cfg.Syntax),
		"concurrency", c.cfg.Concurrency, "rate_bytes_per_second", c.cfg.Rate)
	for {
		if _, err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("archive compression pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.cfg.Interval):
		}
	}
}

// Pass compresses every instance due now, in batches claimed from the
// index, and logs what it did. It stops early, with the error, when the
// index fails or ctx ends.
func (c *Compressor) Pass(ctx context.Context) (Pass, error) {
	start := time.Now()
	var (
		p   Pass
		mu  sync.Mutex
		err error
	)
	pace := newPacer(c.cfg.Rate, time.Now)
	// An instance is worked on once a pass: one that changed meanwhile
	// may be claimed again, and waits for the next pass.
	seen := map[index.CompressTask]bool{}
	for ctx.Err() == nil {
		var tasks []index.CompressTask
		tasks, err = c.cfg.Index.Claim(ctx, c.cfg.Owner, c.now().Add(-c.cfg.After), batch, c.cfg.Lease)
		if err != nil {
			break
		}
		fresh := tasks[:0]
		for _, t := range tasks {
			if seen[t] {
				// Not this pass: let it go at once, for the next.
				if rerr := c.cfg.Index.Release(ctx, c.cfg.Owner, t, c.now()); rerr != nil {
					c.log.Warn("archive compression claim not ended; its lease runs out", "sop_instance_uid", t.SOPInstanceUID, "err", rerr)
				}
				continue
			}
			seen[t] = true
			fresh = append(fresh, t)
		}
		if len(fresh) == 0 {
			break
		}
		tasks = fresh
		work := make(chan index.CompressTask)
		var wg sync.WaitGroup
		for range c.cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t := range work {
					outcome, orig, stored := c.one(ctx, t)
					mu.Lock()
					switch outcome {
					case OutcomeCompressed:
						p.Compressed++
						p.OriginalBytes += orig
						p.StoredBytes += stored
					case OutcomeSkipped:
						p.Skipped++
					case OutcomeFailed:
						p.Failed++
					}
					mu.Unlock()
					if c.cfg.Observer != nil && outcome != "" {
						c.cfg.Observer.ObserveCompression(outcome, orig, stored)
					}
					pace.wait(ctx, orig)
				}
			}()
		}
		for _, t := range tasks {
			select {
			case work <- t:
			case <-ctx.Done():
			}
		}
		close(work)
		wg.Wait()
	}
	if err == nil {
		err = ctx.Err()
	}
	p.Elapsed = time.Since(start)
	total, serr := c.cfg.Index.Stats(context.WithoutCancel(ctx))
	if serr != nil {
		c.log.Warn("archive compression totals not counted", "err", serr)
	} else if c.cfg.Observer != nil {
		c.cfg.Observer.SetCompressionTotals(total.Instances, total.Saved())
	}
	if p.Compressed+p.Skipped+p.Failed > 0 {
		c.log.Info("archive compression pass", "compressed", p.Compressed, "skipped", p.Skipped, "failed", p.Failed,
			"original_bytes", p.OriginalBytes, "stored_bytes", p.StoredBytes, "saved_bytes", p.Saved(), "duration", p.Elapsed,
			"archive_compressed_instances", total.Instances, "archive_saved_bytes", total.Saved())
	}
	return p, err
}

// one compresses the instance t names and ends its claim. It returns
// the outcome ("" when there was nothing to do) and, for an instance
// compressed, the sizes of its original and of its new object.
func (c *Compressor) one(ctx context.Context, t index.CompressTask) (outcome string, original, stored int64) {
	owner := c.cfg.Owner
	// The claim ends even when ctx has: a lease left to run out would
	// only delay the instance.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	end := func(err error) {
		if err != nil {
			c.log.Warn("archive compression claim not ended; its lease runs out", "sop_instance_uid", t.SOPInstanceUID, "err", err)
		}
	}
	in, err := c.cfg.Index.Instance(ctx, t.SOPInstanceUID)
	switch {
	case errors.Is(err, index.ErrNotFound) || (err == nil && in.Key != t.Key):
		end(c.cfg.Index.Done(ectx, owner, t))
		return "", 0, 0
	case err != nil:
		end(c.cfg.Index.Release(ectx, owner, t, c.now().Add(c.cfg.Retry)))
		c.log.Warn("archive compression: instance not read", "sop_instance_uid", t.SOPInstanceUID, "err", err)
		return OutcomeFailed, 0, 0
	}
	// The claim is renewed while the compression runs, so that no
	// other node takes the instance however long it takes.
	rctx, stopRenew := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(c.cfg.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				if err := c.cfg.Index.Renew(rctx, owner, t, c.cfg.Lease); err != nil && rctx.Err() == nil {
					c.log.Warn("archive compression claim not renewed", "sop_instance_uid", t.SOPInstanceUID, "err", err)
				}
			}
		}
	}()
	res, err := c.cfg.Archive.Compress(ctx, in, c.cfg.Syntax)
	stopRenew()
	<-renewed
	switch {
	case err == nil:
		end(c.cfg.Index.Done(ectx, owner, t))
		c.log.Debug("instance compressed", "sop_instance_uid", in.SOPInstanceUID, "original_bytes", res.Original.Size,
			"bytes", res.Instance.Size, "transfer_syntax", uid.Name(c.cfg.Syntax))
		return OutcomeCompressed, res.Original.Size, res.Instance.Size
	case errors.Is(err, archive.ErrChanged):
		end(c.cfg.Index.Done(ectx, owner, t))
		return "", 0, 0
	case errors.Is(err, archive.ErrSkipped):
		end(c.cfg.Index.Skip(ectx, owner, t, err.Error()))
		c.log.Info("instance left uncompressed", "sop_instance_uid", in.SOPInstanceUID, "transfer_syntax", uid.Name(in.TransferSyntaxUID), "reason", err)
		return OutcomeSkipped, 0, 0
	default:
		end(c.cfg.Index.Release(ectx, owner, t, c.now().Add(c.cfg.Retry)))
		if ctx.Err() != nil {
			return "", 0, 0
		}
		c.log.Warn("archive compression failed; tried again later", "sop_instance_uid", in.SOPInstanceUID, "err", err)
		return OutcomeFailed, 0, 0
	}
}

// pacer holds the compression to rate bytes a second, on average, across
// its workers.
type pacer struct {
	mu   sync.Mutex
	rate int64
	now  func() time.Time
	next time.Time // when the budget spent so far is earned
}

func newPacer(rate int64, now func() time.Time) *pacer {
	return &pacer{rate: rate, now: now, next: now()}
}

// wait spends n bytes of the budget and waits until they are earned.
func (p *pacer) wait(ctx context.Context, n int64) {
	p.mu.Lock()
	now := p.now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	d := p.next.Sub(now)
	p.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
