package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limits bound what one request may ask of the server, so that no request,
// however hostile, costs more than a known amount. A zero field takes the
// default given with it. docs/conformance.md lists them for operators.
type Limits struct {
	// SearchValues bounds the values of a search's matching keys, all
	// keys together; each UID of a list counts one (default 1,000).
	SearchValues int
	// SearchAttributes bounds the attributes a search returns: the
	// level's defaults, its matching keys and includefield together
	// (default 512).
	SearchAttributes int
	// RenderMemory bounds the memory of renderings in progress, as
	// estimated from each frame's size (default 512 MiB). A rendering
	// estimated above it is refused.
	RenderMemory int64
	// Renders bounds the renderings in progress (default GOMAXPROCS):
	// each holds at least RenderMemory/Renders of the budget.
	Renders int
	// RenderQueue bounds the requests waiting for their turn to render
	// (default 32); RenderWait bounds how long each waits (default 15 s).
	// Beyond either the request is answered 503 with Retry-After.
	RenderQueue int
	RenderWait  time.Duration
}

// Defaults of Limits.
const (
	defaultSearchValues     = 1000
	defaultSearchAttributes = 512
	defaultRenderMemory     = 512 << 20
	defaultRenderQueue      = 32
	defaultRenderWait       = 15 * time.Second
)

func (l Limits) searchValues() int     { return orDefault(l.SearchValues, defaultSearchValues) }
func (l Limits) searchAttributes() int { return orDefault(l.SearchAttributes, defaultSearchAttributes) }

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// renderGate admits renderings while the memory they are estimated to take
// fits the budget, so that N concurrent requests for a large image cost
// the budget, not N times the image. Waiters are served in order.
type renderGate struct {
	once    sync.Once
	sem     *semaphore.Weighted
	budget  int64 // what all renderings together may take
	least   int64 // what each rendering holds at least
	queue   int64
	wait    time.Duration
	waiting atomic.Int64
}

func (g *renderGate) init(l Limits) {
	g.once.Do(func() {
		g.budget = orDefault(l.RenderMemory, defaultRenderMemory)
		g.least = g.budget / int64(orDefault(l.Renders, runtime.GOMAXPROCS(0)))
		g.queue = int64(orDefault(l.RenderQueue, defaultRenderQueue))
		g.wait = orDefault(l.RenderWait, defaultRenderWait)
		g.sem = semaphore.NewWeighted(g.budget)
	})
}

// errBusy is the answer to a rendering that cannot get its turn.
var errBusy = &Error{Status: http.StatusServiceUnavailable, Reason: "every rendering slot is taken; retry shortly"}

// acquire waits for a rendering estimated to take need bytes to fit. The
// caller calls release when its image is encoded.
func (g *renderGate) acquire(ctx context.Context, l Limits, need int64) (release func(), err error) {
	g.init(l)
	if need > g.budget {
		return nil, errorf(http.StatusNotAcceptable, "rendering this frame would take about %d MiB, more than the %d MiB pacsd renders with; retrieve the frame itself with /frames",
			need>>20, g.budget>>20)
	}
	w := max(need, g.least)
	release = func() { g.sem.Release(w) }
	if g.sem.TryAcquire(w) {
		return release, nil
	}
	if g.waiting.Add(1) > g.queue {
		g.waiting.Add(-1)
		return nil, errBusy
	}
	defer g.waiting.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, g.wait)
	defer cancel()
	if err := g.sem.Acquire(wctx, w); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, errBusy
		}
		return nil, fmt.Errorf("render: %w", err)
	}
	return release, nil
}
