package migrate

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// Limiter caps the rate at which a migration takes data in, across all
// its studies in flight (--max-mbps): the source's disks and the link to
// it serve the hospital meanwhile. A slowed reader slows the sender by
// TCP's flow control.
type Limiter struct {
	l     *rate.Limiter
	chunk int
}

// NewLimiter returns a Limiter of mbps megabits per second, or nil, which
// limits nothing, when mbps is not positive.
func NewLimiter(mbps float64) *Limiter {
	if mbps <= 0 {
		return nil
	}
	perSec := mbps * 1e6 / 8
	// A tenth of a second's worth at a time keeps the rate even
	// without making reads tiny.
	chunk := max(int(perSec/10), 4<<10)
	return &Limiter{l: rate.NewLimiter(rate.Limit(perSec), chunk), chunk: chunk}
}

// Reader returns r read at no more than l's rate; r itself when l is nil.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, l: l}
}

type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > lr.l.chunk {
		p = p[:lr.l.chunk]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.l.WaitN(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
