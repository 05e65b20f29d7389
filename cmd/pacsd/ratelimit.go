package main

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"sync"

	"golang.org/x/time/rate"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dimse"
)

// rateSettings bound how fast one caller may use pacsd, so that one
// misbehaving client (a viewer in a loop, a script, a compromised token)
// cannot take the archive from everyone else.
type rateSettings struct {
	HTTPRate float64 `name:"http-rate" default:"200" placeholder:"N" help:"requests a second each token or signed-in user may make over HTTP, in bursts of ten times as many; beyond it 429 Too Many Requests (0: no limit). Without --http-auth nobody signs in and nothing is limited"`
	AERate   float64 `name:"ae-rate" default:"0" placeholder:"N" help:"DIMSE operations (C-STORE, C-FIND, C-MOVE, C-GET) a second each calling AE title may ask for, in bursts of ten times as many; beyond it pacsd waits before it answers (0: no limit)"`
}

func (r *rateSettings) complete() error {
	if r.HTTPRate < 0 || r.AERate < 0 {
		return fmt.Errorf("http_rate %v, ae_rate %v: want 0 (no limit) or more", r.HTTPRate, r.AERate)
	}
	return nil
}

// maxLimited bounds the callers whose rate is tracked at once; past it
// the slate is wiped, which at worst lets callers burst again.
const maxLimited = 10000

// limiters holds one token bucket per caller.
type limiters struct {
	rate rate.Limit
	mu   sync.Mutex
	by   map[string]*rate.Limiter
}

// newLimiters returns the limiters of perSecond a caller, or nil for
// none.
func newLimiters(perSecond float64) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{rate: rate.Limit(perSecond), by: map[string]*rate.Limiter{}}
}

func (l *limiters) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.by[key]
	if !ok {
		if len(l.by) >= maxLimited {
			clear(l.by)
		}
		burst := max(1, int(10*float64(l.rate)))
		lim = rate.NewLimiter(l.rate, burst)
		l.by[key] = lim
	}
	return lim
}

// limitHTTP answers 429 to a principal beyond its rate. It runs after the
// authentication, so that the rate of a token is the token's wherever it
// is used from. Anonymous callers, which only loopback or
// --allow-anonymous-http let in, are not limited: they are all one.
func (l *limiters) limitHTTP(next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok || p.Kind == auth.KindAnonymous {
			next.ServeHTTP(w, r)
			return
		}
		if !l.get(string(p.Kind) + ":" + p.Name).Allow() {
			h := w.Header()
			h.Set("Retry-After", "1")
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintln(w, "too many requests: slow down and try again")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// wait holds a DIMSE operation of calling AE ae until its rate allows it.
func (l *limiters) wait(ctx context.Context, ae string) error {
	if l == nil {
		return nil
	}
	if err := l.get(ae).Wait(ctx); err != nil {
		return fmt.Errorf("rate of %s: %w", ae, err)
	}
	return nil
}

// limitedDIMSE holds each DIMSE operation of a calling AE beyond its rate
// until the rate allows it: a modality is slowed down rather than told to
// fail, which it may not retry.
type limitedDIMSE struct {
	*limiters
	next interface {
		dimse.StoreHandler
		dimse.FindHandler
		dimse.MoveHandler
		dimse.GetHandler
	}
}

func (d limitedDIMSE) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	if err := d.wait(ctx, a.CallingAE()); err != nil {
		return &dimse.StatusError{Status: dimse.StatusOutOfResources, Comment: "rate limit", Err: err}
	}
	return d.next.Store(ctx, a, req)
}

func (d limitedDIMSE) Find(ctx context.Context, a *dimse.Association, req *dimse.FindRequest) iter.Seq2[*dicom.Dataset, error] {
	if err := d.wait(ctx, a.CallingAE()); err != nil {
		return func(yield func(*dicom.Dataset, error) bool) {
			yield(nil, &dimse.StatusError{Status: dimse.StatusOutOfResources, Comment: "rate limit", Err: err})
		}
	}
	return d.next.Find(ctx, a, req)
}

func (d limitedDIMSE) Move(ctx context.Context, a *dimse.Association, req *dimse.MoveRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	if err := d.wait(ctx, a.CallingAE()); err != nil {
		return dimse.SubOperations{}, &dimse.StatusError{Status: dimse.StatusOutOfResources, Comment: "rate limit", Err: err}
	}
	return d.next.Move(ctx, a, req, progress)
}

func (d limitedDIMSE) Get(ctx context.Context, a *dimse.Association, req *dimse.GetRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	if err := d.wait(ctx, a.CallingAE()); err != nil {
		return dimse.SubOperations{}, &dimse.StatusError{Status: dimse.StatusOutOfResources, Comment: "rate limit", Err: err}
	}
	return d.next.Get(ctx, a, req, progress)
}
