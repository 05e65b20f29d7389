package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/index"
)

// ErrUnreachable marks the errors of a Sender that concern the
// destination as a whole rather than the study it was sending: no
// connection, an association rejected or aborted, an HTTP server that
// fails or refuses the credentials. The Router then probes the
// destination with one task at a time until it answers again.
var ErrUnreachable = errors.New("route: destination unreachable")

// Sender sends the instances of one study to a destination.
type Sender interface {
	// Send sends s.Instances, calling s.Report for each once the
	// destination has accepted it (and committed or counted it, when
	// the sender confirms) or refused it for good. It returns nil when
	// every instance was reported, otherwise why not: an error wrapping
	// ErrUnreachable when the destination could not be reached or
	// failed as a whole. Send returns when ctx ends.
	Send(ctx context.Context, s *Shipment) error
}

// Shipment is one study's instances to send.
type Shipment struct {
	Study     string
	Priority  Priority
	Instances []*index.Instance
	// SentBefore counts the study's instances sent to the destination
	// before this shipment, which a sender that counts what the
	// destination holds expects to find there too.
	SentBefore int
	// Report records the outcome of an instance: refused is empty when
	// the destination accepted it, else why it refused it for good.
	// It is safe for concurrent use.
	Report func(sopInstanceUID, refused string)
}

// Instances finds the records of instances to send.
type Instances interface {
	// Instance returns the record of an instance, or an error wrapping
	// index.ErrNotFound.
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
}

// Destination is a destination and how the Router sends to it.
type Destination struct {
	Name   string
	Sender Sender
	// MaxConcurrency is how many of its tasks are sent at once (default
	// 2).
	MaxConcurrency int
	// MaxAttempts is how many failed attempts make a task failed (0:
	// never give up).
	MaxAttempts int
	// Backoff is the wait after a first failed attempt (default 5 s),
	// doubling with each further one up to MaxBackoff (default 10 min).
	Backoff, MaxBackoff time.Duration
}

// Config configures a Router.
type Config struct {
	Queue        Queue
	Instances    Instances
	Destinations []Destination
	// Owner names this node in the leases it takes; it must differ
	// between nodes that share the queue and stay the same across
	// restarts of one, which take back their tasks at once.
	Owner string
	// Lease is how long a task stays leased to a worker that stopped
	// recording its progress (default 30 s).
	Lease time.Duration
	// Poll is how often idle workers look for tasks that became due or
	// that other nodes queued (default 1 s); tasks queued on this node
	// wake them at once (Wake).
	Poll time.Duration
	// KeepDone is how long done tasks are kept (default 7 days).
	KeepDone time.Duration
	// Location is the zone of the tasks' windows (time.Local when nil).
	Location *time.Location
	Logger   *slog.Logger
}

// Router runs the workers that send the queued tasks. Make one with
// NewRouter and run it with Run.
type Router struct {
	cfg   Config
	log   *slog.Logger
	dests map[string]*dest
}

// dest is the state of a destination on this node.
type dest struct {
	Destination

	mu       sync.Mutex
	wake     chan struct{} // closed and replaced by Wake
	failing  bool
	failures int
	probeAt  time.Time
	probing  bool
}

// NewRouter returns a Router; it sends nothing until Run.
func NewRouter(cfg Config) *Router {
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.KeepDone <= 0 {
		cfg.KeepDone = 7 * 24 * time.Hour
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	r := &Router{cfg: cfg, log: cfg.Logger, dests: map[string]*dest{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range cfg.Destinations {
		if d.MaxConcurrency <= 0 {
			d.MaxConcurrency = 2
		}
		if d.Backoff <= 0 {
			d.Backoff = 5 * time.Second
		}
		if d.MaxBackoff <= 0 {
			d.MaxBackoff = 10 * time.Minute
		}
		r.dests[d.Name] = &dest{Destination: d, wake: make(chan struct{})}
	}
	return r
}

// Wake tells the workers of the destinations named that tasks were
// queued for them; with no name, all destinations.
func (r *Router) Wake(destinations ...string) {
	if len(destinations) == 0 {
		for _, d := range r.dests {
			d.signal()
		}
		return
	}
	for _, name := range destinations {
		if d := r.dests[name]; d != nil {
			d.signal()
		}
	}
}

func (d *dest) signal() {
	d.mu.Lock()
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
}

// Run takes back this node's tasks left in flight by its previous run,
// then sends tasks until ctx ends, and returns once every worker has
// stopped; a task being sent then is released, its progress recorded,
// for the next run or another node.
//
// A queue that cannot be reached at start (the database restarting) is
// tried again, at growing intervals, until it answers or ctx ends:
// routing that gave up then would stay stopped until pacsd restarts.
func (r *Router) Run(ctx context.Context) error {
	if err := r.reclaim(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, d := range r.dests {
		for range d.MaxConcurrency {
			wg.Go(func() { r.work(ctx, d) })
		}
	}
	wg.Go(func() { r.prune(ctx) })
	wg.Wait()
	return nil
}

// reclaim takes back the tasks this node's previous run left in flight,
// before any worker takes a task: afterwards it would take back tasks
// this run is sending. It returns nil once it has, or when ctx ends.
func (r *Router) reclaim(ctx context.Context) error {
	for failures := 1; ; failures++ {
		n, err := r.cfg.Queue.Reclaim(ctx, r.cfg.Owner)
		if err == nil {
			if n > 0 {
				r.log.Info("took back tasks left in flight by the previous run", "tasks", n, "owner", r.cfg.Owner)
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := backoff(time.Second, time.Minute, failures)
		r.log.Warn("forwarding queue unavailable; forwarding starts once it answers", "owner", r.cfg.Owner, "retry_in", wait, "err", err)
		sleep(ctx, nil, wait)
	}
}

// prune deletes old done tasks now and then.
func (r *Router) prune(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := r.cfg.Queue.Prune(ctx, time.Now().Add(-r.cfg.KeepDone)); err != nil && ctx.Err() == nil {
			r.log.Warn("done tasks not pruned", "err", err)
		} else if n > 0 {
			r.log.Debug("done tasks pruned", "tasks", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// work is one worker of d.
func (r *Router) work(ctx context.Context, d *dest) {
	for ctx.Err() == nil {
		d.mu.Lock()
		wake := d.wake
		wait, probe := d.turn(time.Now())
		d.mu.Unlock()
		if wait > 0 {
			sleep(ctx, wake, wait)
			continue
		}
		l, err := r.cfg.Queue.Take(ctx, d.Name, r.cfg.Owner, r.cfg.Lease)
		if err != nil || l == nil {
			if probe {
				d.mu.Lock()
				d.probing = false
				d.mu.Unlock()
			}
			if err != nil && ctx.Err() == nil {
				r.log.Warn("forwarding queue unavailable", "destination", d.Name, "err", err)
			}
			sleep(ctx, wake, r.cfg.Poll)
			continue
		}
		r.send(ctx, d, l, probe)
	}
}

// turn says whether a worker of a failing destination may take a task:
// only one at a time, once its probe is due. It returns how long to wait
// otherwise, and whether the worker is the probe. d.mu is held.
func (d *dest) turn(now time.Time) (wait time.Duration, probe bool) {
	if !d.failing {
		return 0, false
	}
	if d.probing {
		return time.Minute, false // until woken by the probe's end
	}
	if w := d.probeAt.Sub(now); w > 0 {
		return w, false
	}
	d.probing = true
	return 0, true
}

// outcome of one attempt, for the destination's health.
func (d *dest) attempted(unreachable, probe bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if probe {
		d.probing = false
	}
	if !unreachable {
		if d.failing {
			d.failing, d.failures = false, 0
			close(d.wake) // the others may go
			d.wake = make(chan struct{})
		}
		return
	}
	if probe || !d.failing {
		d.failures++
		d.probeAt = now.Add(backoff(d.Backoff, d.MaxBackoff, d.failures))
	}
	d.failing = true
}

// released records a lease ended without an attempt that says anything
// of the destination's health (its window closed, it was dropped): a
// failing destination stays failing, and its next probe may go.
func (d *dest) released(probe bool) {
	if !probe {
		return
	}
	d.mu.Lock()
	d.probing = false
	d.mu.Unlock()
}

// Failing reports whether destination is failing on this node, since
// when a probe is due.
func (r *Router) Failing(destination string) (failing bool, nextProbe time.Time) {
	d := r.dests[destination]
	if d == nil {
		return false, time.Time{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failing, d.probeAt
}

func backoff(base, limit time.Duration, attempts int) time.Duration {
	b := base
	for i := 1; i < attempts && b < limit; i++ {
		b *= 2
	}
	return min(b, limit)
}

func sleep(ctx context.Context, wake <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

// progress collects the outcomes of a lease until they are recorded.
type progress struct {
	mu       sync.Mutex
	gens     map[string]int64
	pending  []Outcome
	refused  int
	firstWhy string
}

func (p *progress) report(sop, refused string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gen, ok := p.gens[sop]
	if !ok {
		return
	}
	delete(p.gens, sop) // once
	p.pending = append(p.pending, Outcome{Item: Item{SOPInstanceUID: sop, Gen: gen}, Refused: refused})
	if refused != "" {
		if p.refused++; p.refused == 1 {
			p.firstWhy = sop + ": " + refused
		}
	}
}

func (p *progress) unreported() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.gens)
}

func (p *progress) take() []Outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pending
	p.pending = nil
	return out
}

// send runs one lease.
func (r *Router) send(ctx context.Context, d *dest, l *Lease, probe bool) {
	t := l.Task
	log := r.log.With("destination", d.Name, "study_instance_uid", t.Study, "task", t.ID)
	q := r.cfg.Queue
	win, _ := ParseWindow(t.Window, r.cfg.Location)
	now := time.Now()
	end := func(outcomes []Outcome, f Finish) {
		// The end is recorded even as ctx ends, at shutdown.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := q.Finish(fctx, l, outcomes, f); err != nil {
			log.Warn("task end not recorded; its lease runs out and it is sent again", "err", err)
		}
	}
	if !win.Contains(now) {
		end(nil, Finish{Verdict: Release, Due: win.Next(now)})
		d.released(probe)
		return
	}
	// A study whose sending stopped its node as many times as it may
	// fail is not sent again: the next attempt would stop this one.
	if d.MaxAttempts > 0 && t.Attempts >= d.MaxAttempts && t.LastError == LostLease {
		end(nil, Finish{Verdict: GiveUp, Err: t.LastError})
		d.released(probe)
		log.Error("study not sent; given up", "attempts", t.Attempts, "err", t.LastError)
		return
	}

	p := &progress{gens: make(map[string]int64, len(l.Items))}
	s := &Shipment{Study: t.Study, Priority: t.Priority, SentBefore: t.Sent, Report: p.report}
	for _, it := range l.Items {
		p.gens[it.SOPInstanceUID] = it.Gen
		in, err := r.cfg.Instances.Instance(ctx, it.SOPInstanceUID)
		switch {
		case errors.Is(err, index.ErrNotFound):
			// Deleted since it was queued: nothing to send, which
			// someone should know.
			p.report(it.SOPInstanceUID, "no longer in the archive")
			continue
		case err != nil:
			r.finishFailed(ctx, d, l, p, end, fmt.Errorf("index: %w", err), probe, log)
			return
		}
		s.Instances = append(s.Instances, in)
	}

	sctx, cancel := context.WithCancel(ctx)
	lost := make(chan struct{})
	keeper := make(chan struct{})
	go func() {
		defer close(keeper)
		// Progress is recorded every second: what a node that dies
		// has sent since is what another sends again.
		tick := time.NewTicker(min(r.cfg.Lease/3, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			out := p.take()
			if err := q.Record(sctx, l, out, r.cfg.Lease); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					close(lost)
					cancel()
					return
				}
				p.mu.Lock()
				p.pending = append(out, p.pending...) // again next time
				p.mu.Unlock()
				log.Warn("progress not recorded", "err", err)
			}
		}
	}()
	start := time.Now()
	var err error
	if len(s.Instances) > 0 {
		err = d.Sender.Send(sctx, s)
	}
	cancel()
	<-keeper
	select {
	case <-lost:
		log.Warn("lease lost while sending (dropped, or taken over after a stall); the next holder sends what is not recorded")
		d.released(probe)
		return
	default:
	}
	if ctx.Err() != nil {
		end(p.take(), Finish{Verdict: Release, Due: time.Now()})
		return
	}
	if n := p.unreported(); err == nil && n > 0 {
		err = fmt.Errorf("route: the sender reported %d of %d instances", len(s.Instances)-n, len(s.Instances))
	}
	if err != nil {
		r.finishFailed(ctx, d, l, p, end, err, probe, log)
		return
	}
	f := Finish{Verdict: Sent}
	if p.refused > 0 {
		f.Err = fmt.Sprintf("%d instance(s) refused; %s", p.refused, p.firstWhy)
		log.Warn("instances refused by the destination", "refused", p.refused, "first", p.firstWhy)
	}
	end(p.take(), f)
	d.attempted(false, probe, time.Now())
	log.Info("study sent", "instances", len(s.Instances), "duration", time.Since(start))
}

// finishFailed ends a lease whose attempt failed with err: retried after
// a backoff, or given up after MaxAttempts.
func (r *Router) finishFailed(ctx context.Context, d *dest, l *Lease, p *progress, end func([]Outcome, Finish), err error, probe bool, log *slog.Logger) {
	now := time.Now()
	unreachable := errors.Is(err, ErrUnreachable)
	d.attempted(unreachable, probe, now)
	attempts := l.Task.Attempts + 1
	why := strings.TrimPrefix(err.Error(), ErrUnreachable.Error()+": ")
	if d.MaxAttempts > 0 && attempts >= d.MaxAttempts {
		end(p.take(), Finish{Verdict: GiveUp, Err: why})
		log.Error("study not sent; given up", "attempts", attempts, "err", err)
		return
	}
	win, _ := ParseWindow(l.Task.Window, r.cfg.Location)
	due := win.Next(now.Add(backoff(d.Backoff, d.MaxBackoff, attempts)))
	end(p.take(), Finish{Verdict: Retry, Err: why, Due: due})
	log.Warn("study not sent; will retry", "attempts", attempts, "retry_at", due, "err", err)
}
