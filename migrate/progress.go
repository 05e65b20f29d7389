package migrate

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Progress reports a running migration or import: a line rewritten every
// second on a terminal, a log record every Interval otherwise.
type Progress struct {
	// Terminal, when set, is where the live line goes; Logger gets the
	// records otherwise.
	Terminal io.Writer
	Logger   *slog.Logger
	// Interval is how often a record is logged (default 10 s).
	Interval time.Duration

	stats   *stats
	started time.Time
	done    chan struct{}
	wg      sync.WaitGroup
	// last holds the byte counts of recent ticks, for the rate.
	last []sample
}

type sample struct {
	at    time.Time
	bytes int64
}

func (p *Progress) start(st *stats) {
	p.stats, p.started, p.done = st, time.Now(), make(chan struct{})
	every := p.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	if p.Terminal != nil {
		every = time.Second
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.report(false)
			}
		}
	})
}

func (p *Progress) stop() {
	close(p.done)
	p.wg.Wait()
	p.report(true)
}

// report writes one line or record.
func (p *Progress) report(final bool) {
	now := time.Now()
	b := p.stats.bytes.Load()
	p.last = append(p.last, sample{now, b})
	// The rate is over the last ten seconds or so.
	for len(p.last) > 2 && now.Sub(p.last[0].at) > 10*time.Second {
		p.last = p.last[1:]
	}
	rate := 0.0
	if first := p.last[0]; now.Sub(first.at) > 0 && len(p.last) > 1 {
		rate = float64(b-first.bytes) / now.Sub(first.at).Seconds()
	}
	total, finished, errs := p.stats.total.Load(), p.stats.finished.Load(), p.stats.errors.Load()
	eta := "unknown"
	if elapsed := now.Sub(p.started); finished > 0 {
		eta = (time.Duration(float64(elapsed) / float64(finished) * float64(total-finished))).Round(time.Second).String()
	}
	if p.Terminal != nil {
		end := "\x1b[K"
		if final {
			end += "\n"
		}
		fmt.Fprintf(p.Terminal, "\rstudies %d/%d, instances %d, %.1f MB/s, errors %d, ETA %s%s",
			finished, total, p.stats.instances.Load(), rate/1e6, errs, eta, end)
		return
	}
	if p.Logger != nil {
		p.Logger.Info("migration progress", "studies_done", finished, "studies", total, "instances", p.stats.instances.Load(),
			"mb_per_s", fmt.Sprintf("%.1f", rate/1e6), "errors", errs, "eta", eta)
	}
}
