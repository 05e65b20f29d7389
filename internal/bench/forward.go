package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The forwarding measurements (package route):
//
//   - throughput: the series stored into a pacsd that forwards every
//     instance at once (--forward) to a fresh storescp, timed from the
//     start of storescu until storescp holds the last instance, beside
//     storescu sending the same series to a fresh storescp directly;
//   - latency: on an idle pacsd forwarding to a DIMSE destination in this
//     process, the time from the C-STORE response pacsd sends to the
//     destination's receipt of the instance, one instance at a time;
//   - the queue in the index: enqueue and take with 100,000 pending tasks,
//     on SQLite and PostgreSQL (queue.go).

// Targets of issue 11.
const (
	targetForwardVsDirect = 0.9
	targetLatencyP50      = 50 * time.Millisecond
	targetLatencyP99      = 200 * time.Millisecond
)

// forwardDestination is the AE title of the storescp forwarded to.
const forwardDestination = "FWDSCP"

// forwardRun is one store of the series, directly or through pacsd.
type forwardRun struct {
	round int
	via   string // "direct", "pacsd" or "intake"
	wall  time.Duration
}

// forwardResult holds the forwarding measurements.
type forwardResult struct {
	runs      []forwardRun
	latencies []time.Duration
	queue     []queueResult
}

// measureForward runs the throughput and latency measurements.
func measureForward(ctx context.Context, o options, bin, tmp, corpus string, files []dcmgen.File, logf func(string, ...any)) (*forwardResult, error) {
	r := &forwardResult{}
	for round := range o.rounds {
		order := []string{"direct", "pacsd", "intake"}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, via := range order {
			dir := filepath.Join(tmp, fmt.Sprintf("forward-%s-%d", via, round+1))
			wall, err := forwardOnce(ctx, bin, dir, via, corpus, len(files))
			if err != nil {
				return nil, fmt.Errorf("forwarding round %d, %s: %w", round+1, via, err)
			}
			logf("forwarding round %d/%d  %-7s %7.3f s  %7.1f instances/s", round+1, o.rounds, via, wall.Seconds(), perSecond(len(files), wall))
			r.runs = append(r.runs, forwardRun{round + 1, via, wall})
		}
	}
	lat, err := measureLatency(ctx, bin, filepath.Join(tmp, "forward-latency"), files, logf)
	if err != nil {
		return nil, fmt.Errorf("forwarding latency: %w", err)
	}
	r.latencies = lat
	if r.queue, err = measureQueue(ctx, tmp, logf); err != nil {
		return nil, fmt.Errorf("forwarding queue: %w", err)
	}
	return r, nil
}

// forwardOnce stores the series with storescu into a fresh storescp,
// directly or through a fresh pacsd forwarding to it, and returns the
// time until storescp holds all n instances; for "intake", into a fresh
// pacsd that forwards nothing, and returns storescu's time: what pacsd's
// own C-STORE costs, which bounds the rate through it.
func forwardOnce(ctx context.Context, bin, dir, via, corpus string, n int) (wall time.Duration, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	scp, err := testpeer.StartStoreSCP(ctx, testpeer.StoreSCPOptions{AET: forwardDestination, Dir: filepath.Join(dir, "storescp")})
	if err != nil {
		return 0, err
	}
	defer func() {
		if serr := scp.Stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	target := &server{aet: scp.AET, host: "127.0.0.1", port: scp.Port, pid: scp.Process().PID()}
	if via == "intake" {
		s, err := startPacsd(ctx, bin, dir, nil)
		if err != nil {
			return 0, err
		}
		defer func() {
			if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
				err = serr
			}
		}()
		syscall.Sync()
		res, err := send(ctx, s, true, corpus)
		return res.wall, err
	}
	if via == "pacsd" {
		pdir := filepath.Join(dir, "pacsd")
		if err := os.Mkdir(pdir, 0o755); err != nil {
			return 0, err
		}
		s, err := startPacsdWith(ctx, bin, pdir, []testpeer.Modality{scp.Modality()}, []string{"--forward", forwardDestination}, nil)
		if err != nil {
			return 0, err
		}
		defer func() {
			if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
				err = serr
			}
		}()
		target = s
	}
	countDir := scp.Dir
	syscall.Sync()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := send(ctx, target, true, corpus)
		done <- err
	}()
	var sendErr error
	sent := false
	deadline := time.Now().Add(10 * time.Minute)
	for {
		entries, err := os.ReadDir(countDir)
		if err != nil {
			return 0, err
		}
		if len(entries) >= n {
			wall = time.Since(start)
			break
		}
		if !sent {
			select {
			case sendErr = <-done:
				sent = true
				if sendErr != nil {
					return 0, sendErr
				}
			default:
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("storescp holds %d of %d instances after 10 minutes", len(entries), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !sent {
		if sendErr = <-done; sendErr != nil {
			return 0, sendErr
		}
	}
	return wall, nil
}

// receipts records when a destination received each instance.
type receipts struct {
	mu   sync.Mutex
	at   map[string]time.Time
	wake chan struct{}
}

func (r *receipts) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	if _, err := io.Copy(io.Discard, req.Dataset); err != nil {
		return err
	}
	now := time.Now()
	r.mu.Lock()
	r.at[req.SOPInstanceUID] = now
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// measureLatency starts a pacsd forwarding to a destination in this
// process and sends it the series one instance at a time, each once the
// one before has arrived and a pause has passed, over one association
// of pacsd's own SCU.
func measureLatency(ctx context.Context, bin, dir string, files []dcmgen.File, logf func(string, ...any)) (lat []time.Duration, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	rec := &receipts{at: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dest := &dimse.Server{AETitle: "FWDDEST", Store: rec}
	go dest.Serve(l)
	defer dest.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s, err := startPacsdWith(ctx, bin, dir, []testpeer.Modality{{AET: "FWDDEST", Host: "127.0.0.1", Port: port}}, []string{"--forward", "FWDDEST"}, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	type item struct {
		meta dicom.FileMeta
		data []byte
	}
	var items []item
	var proposals []dimse.Proposal
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, err
		}
		meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return nil, err
		}
		items = append(items, item{meta, b[n:]})
		p := dimse.Proposal{AbstractSyntax: meta.MediaStorageSOPClassUID, TransferSyntaxes: []string{meta.TransferSyntaxUID}}
		if !slices.ContainsFunc(proposals, func(q dimse.Proposal) bool { return q.AbstractSyntax == p.AbstractSyntax }) {
			proposals = append(proposals, p)
		}
	}
	d := &dimse.Dialer{CallingAE: "BENCH", CalledAE: s.aet, Proposals: proposals}
	a, err := d.Dial(ctx, net.JoinHostPort(s.host, strconv.Itoa(s.port)))
	if err != nil {
		return nil, err
	}
	defer a.Release(context.WithoutCancel(ctx))
	for i, it := range items {
		sop := it.meta.MediaStorageSOPInstanceUID
		if _, err := a.Store(ctx, &dimse.StoreRequest{SOPClassUID: it.meta.MediaStorageSOPClassUID, SOPInstanceUID: sop,
			TransferSyntaxUID: it.meta.TransferSyntaxUID, Dataset: bytes.NewReader(it.data)}); err != nil {
			return nil, err
		}
		responded := time.Now()
		deadline := time.NewTimer(30 * time.Second)
		for {
			rec.mu.Lock()
			at, ok := rec.at[sop]
			rec.mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(responded))
				break
			}
			select {
			case <-rec.wake:
				continue
			case <-deadline.C:
				return nil, fmt.Errorf("instance %d not forwarded within 30 s; see %s", i+1, s.log)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		deadline.Stop()
		// Idle: nothing else in flight when the next one comes.
		time.Sleep(20 * time.Millisecond)
	}
	logf("forwarding latency: %d instances, p50 %.1f ms", len(lat), float64(percentileDuration(lat, 0.5))/1e6)
	return lat, nil
}

// percentileDuration returns the p-quantile of ds (nearest rank).
func percentileDuration(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// print prints the forwarding measurements.
func (r *forwardResult) print(w io.Writer, o options, n int) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	if r == nil {
		p("Forwarding: not measured (-skip-forward)")
		p("")
		return
	}
	p("Forwarding throughput: the series stored with storescu %v +sd, all in one association, either", storescuArgs)
	p("          directly into a fresh storescp (%s), or into a fresh pacsd serve --forward %s that forwards", forwardDestination, forwardDestination)
	p("          each instance as it is stored to a fresh storescp; the figure is the time from storescu's start")
	p("          until storescp's directory holds every instance (storescp writes a file before it answers)")
	p("          intake is storescu's time into a fresh pacsd that forwards nothing: pacsd's own C-STORE, which")
	p("          fsyncs each object and commits its index row before it answers, bounds the rate through it")
	p("rounds    %d, direct, through pacsd and intake in turn, the order reversed every other round", o.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "via\tinstances/s\tmin\tmax\t")
	med := map[string]float64{}
	for _, via := range []string{"direct", "pacsd", "intake"} {
		var rates []float64
		for _, run := range r.runs {
			if run.via == via {
				rates = append(rates, perSecond(n, run.wall))
			}
		}
		med[via] = median(rates)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t\n", via, median(rates), slices.Min(rates), slices.Max(rates))
	}
	tw.Flush()
	ratio := med["pacsd"] / med["direct"]
	p("ratio of medians  through pacsd / direct  %5.2f   target ≥ %.1f  %s", ratio, targetForwardVsDirect, verdict(ratio >= targetForwardVsDirect))
	p("ratio of medians  through pacsd / pacsd's C-STORE alone (intake: storescu into a pacsd that forwards nothing)  %5.2f", med["pacsd"]/med["intake"])
	p("")
	p("Forwarding latency: pacsd serve --forward to a DIMSE destination in the benchmark's process; the series sent")
	p("          one instance at a time over one association, the next 20 ms after the last arrived; the figure is")
	p("          the time from pacsd's C-STORE response to the destination's receipt of the whole instance")
	p50, p99 := percentileDuration(r.latencies, 0.5), percentileDuration(r.latencies, 0.99)
	p("instances %d  p50 %.1f ms (target ≤ %d ms) %s  p99 %.1f ms (target ≤ %d ms) %s  max %.1f ms", len(r.latencies),
		float64(p50)/1e6, targetLatencyP50.Milliseconds(), verdict(p50 <= targetLatencyP50),
		float64(p99)/1e6, targetLatencyP99.Milliseconds(), verdict(p99 <= targetLatencyP99), float64(slices.Max(r.latencies))/1e6)
	p("")
	printQueue(w, r.queue)
}
