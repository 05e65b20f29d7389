package httplimit

import (
	"io"
	"net/http"
	"time"
)

// progress wraps h so that a request body must arrive, and the response be
// taken, at an average of rate bytes a second, stalling for at most
// stall: a read or write that falls further behind fails with a timeout,
// and the connection closes. Unlike a total timeout this lets a large
// upload or download run as long as it moves.
func progress(h http.Handler, rate int64, stall time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		rc := http.NewResponseController(w)
		// A deadline left by the previous request on the connection
		// must not cut this one.
		rc.SetWriteDeadline(time.Time{}) // unsupported only by test recorders
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &body{ReadCloser: r.Body, meter: newMeter(rate, stall, rc.SetReadDeadline)}
		}
		h.ServeHTTP(&writer{ResponseWriter: w, rc: rc, meter: newMeter(rate, stall, rc.SetWriteDeadline)}, r)
		// What the handler left buffered is sent after it returns; the
		// time it took thinking is not the client's.
		rc.SetWriteDeadline(time.Now().Add(stall))
	})
}

// meter holds a connection to a rate. The client has an allowance of
// time to wait for, at most stall, which each byte it moves adds to and
// each moment spent waiting on it takes from. Only time spent in reads
// and writes counts: a STOW-RS that waits for storage between two parts
// is not the client's fault.
type meter struct {
	set   func(time.Time) error // the connection's read or write deadline
	rate  float64               // bytes a second
	stall time.Duration
	allow time.Duration
}

func newMeter(rate int64, stall time.Duration, set func(time.Time) error) meter {
	return meter{set: set, rate: float64(rate), stall: stall, allow: stall}
}

// wait runs io, a read or a write of need bytes (0 for a read, which
// returns what has come), with a deadline of the allowance, and accounts
// for the bytes it moved and the time it took.
func (m *meter) wait(need int, io func() (int, error)) (int, error) {
	start := time.Now()
	m.set(start.Add(m.allow + m.time(need))) // unsupported only by test recorders
	n, err := io()
	m.allow = min(m.stall, m.allow+m.time(n)-time.Since(start))
	return n, err
}

// time is how long n bytes take at the rate.
func (m *meter) time(n int) time.Duration {
	return time.Duration(float64(n) / m.rate * float64(time.Second))
}

// body is a request body under a meter.
type body struct {
	io.ReadCloser
	meter
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	n, err := b.wait(0, func() (int, error) { return b.ReadCloser.Read(p) })
	if err != nil {
		// Read to its end, or failed: the handler may take its time
		// over what it read, and net/http reads the connection for the
		// next request under its own deadlines.
		b.done = true
		b.set(time.Time{})
	}
	return n, err
}

// writer is a response under a meter.
type writer struct {
	http.ResponseWriter
	rc *http.ResponseController
	meter
}

func (w *writer) WriteHeader(status int) {
	w.wait(0, func() (int, error) { w.ResponseWriter.WriteHeader(status); return 0, nil })
}

// writePiece is the most written under one deadline: a client that
// takes nothing is found out after a piece's time at the minimum rate,
// not a whole write's.
const writePiece = 64 << 10

func (w *writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		piece := p[:min(len(p), writePiece)]
		n, err := w.wait(len(piece), func() (int, error) { return w.ResponseWriter.Write(piece) })
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Flush sends what is buffered.
func (w *writer) Flush() {
	w.wait(0, func() (int, error) { return 0, w.rc.Flush() })
}

// Unwrap gives http.ResponseController the response underneath, for
// Hijack and its other methods.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
