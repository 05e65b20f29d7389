package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// Concurrent C-STORE. Modalities send at the same time: a CT, an MR and
// a few workstations, each on its own association. The measurement sends
// o.conc series of o.concInstances instances of o.size, one per
// association, with o.conc storescu processes started at once, and takes
// the wall time from the start of the first to the exit of the last:
// instances/s over all associations. Beside it, the same peers receive
// one of those series on one association, so that the table shows how
// far each peer scales. Peers: pacsd, dcmtk's storescp --fork (one
// process per association, the way storescp serves several modalities at
// once), and Orthanc as the Debian package configures it
// (SyncStorageArea=true: it fsyncs its files, as pacsd does).
//
// pacsd writes a log line per instance with the time it spent receiving
// the data set, making the object durable and committing its record (see
// archive); the report sums them over each pacsd run, to say where an
// instance's time goes on one association and on several.

// The targets of the issue that asked for this measurement.
const (
	targetConcVsSingle   = 2.0 // pacsd, o.conc associations ≥ 2 × its own single association
	targetConcVsStoreSCP = 0.8 // ≥ 0.8 × storescp --fork on the same associations
	targetConcVsOrthanc  = 4.0 // ≥ 4 × Orthanc with SyncStorageArea=true on the same associations
)

// concPeer is a peer of the concurrency measurement and how many
// associations it gets.
type concPeer struct {
	peer
	assocs int
}

func (c concPeer) label() string {
	if c.assocs == 1 {
		return c.name + " ×1"
	}
	return fmt.Sprintf("%s ×%d", c.name, c.assocs)
}

// concRun is one run of the concurrency measurement.
type concRun struct {
	round int
	peer  string // concPeer.label
	sendResult
	instances int
	// phases sums pacsd's per-instance times; zero for other peers.
	phases phases
}

// phases are the sums of the times pacsd logs per instance.
type phases struct {
	n                              int
	duration, receive, sync, index time.Duration
}

// concPeers are the peers of the measurement: each at o.conc
// associations and at one.
func concPeers(o options, bin string) []concPeer {
	pacsd := pacsdPeer(bin)
	pacsd.start = func(ctx context.Context, dir string, dests ...testpeer.Modality) (*server, error) {
		// At info level pacsd logs the phases of each instance.
		return startPacsdWith(ctx, bin, dir, dests, []string{"--log-level", "info", "--log-format", "json"}, nil)
	}
	fork := storescpPeer()
	fork.name = "storescp"
	fork.acks = "storescp --fork: a process per association; writes into the page cache, never calls fsync"
	fork.start = func(ctx context.Context, dir string, _ ...testpeer.Modality) (*server, error) {
		s, err := testpeer.StartStoreSCP(ctx, testpeer.StoreSCPOptions{Dir: dir, Args: []string{"--fork"}})
		if err != nil {
			return nil, err
		}
		return &server{aet: s.AET, host: "127.0.0.1", port: s.Port, pid: s.Process().PID(),
			stored: func(context.Context) (int, error) {
				files, err := s.Files()
				return len(files), err
			},
			stop: s.Stop, log: s.Process().Log()}, nil
	}
	peers := []concPeer{{pacsd, o.conc}, {pacsd, 1}, {fork, o.conc}, {fork, 1}}
	if !o.skipOrthanc {
		orthanc := orthancPeer(true, false)
		orthanc.name = "orthanc-sync"
		peers = append(peers, concPeer{orthanc, o.conc})
	}
	return peers
}

// measureConcurrency writes the o.conc series and runs every peer on
// them, o.rounds times, rotating the order.
func measureConcurrency(ctx context.Context, o options, peers []concPeer, tmp string, logf func(string, ...any)) ([]concRun, error) {
	corpus := filepath.Join(tmp, "conc")
	var dirs []string
	logf("writing %d series of %d instances of %s for the concurrent C-STORE", o.conc, o.concInstances, o.size)
	for i := range o.conc {
		dir := filepath.Join(corpus, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		tmpl := dcmgen.Instance{Patient: dcmgen.Patient{ID: fmt.Sprintf("CONC%d", i)}}
		if _, err := dcmgen.WriteSeries(dir, o.concInstances, int64(o.size), tmpl); err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	defer os.RemoveAll(corpus)
	var runs []concRun
	for round := range o.rounds {
		for slot := range peers {
			p := peers[(round+slot)%len(peers)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			run, err := concInto(ctx, p, filepath.Join(tmp, fmt.Sprintf("conc-%s-%d-%d", p.name, p.assocs, round+1)), dirs[:p.assocs], o.concInstances)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, p.label(), err)
			}
			run.round = round + 1
			logf("round %d/%d  %-16s %7.3f s  %7.1f instances/s", round+1, o.rounds, p.label(), run.wall.Seconds(), perSecond(run.instances, run.wall))
			runs = append(runs, run)
		}
	}
	return runs, nil
}

// concInto starts p fresh in dir, sends it the series of dirs, one
// storescu each, all at once, and checks that it holds them all.
func concInto(ctx context.Context, p concPeer, dir string, dirs []string, n int) (run concRun, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return run, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	s, err := p.start(ctx, dir)
	if err != nil {
		return run, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	syscall.Sync()
	run.peer, run.instances = p.label(), n*len(dirs)
	if run.sendResult, err = sendAll(ctx, s, dirs); err != nil {
		return run, err
	}
	got, err := s.stored(ctx)
	if err != nil {
		return run, fmt.Errorf("counting stored instances: %w", err)
	}
	if got != run.instances {
		return run, fmt.Errorf("%s holds %d of %d instances after storescu; see %s", p.label(), got, run.instances, s.log)
	}
	if p.name == "pacsd" {
		if run.phases, err = readPhases(s.log); err != nil {
			return run, err
		}
	}
	return run, nil
}

// sendAll runs one storescu per directory, all at once, and measures them
// together: wall time from the first start to the last exit, the CPU of
// every storescu, and the peer's CPU meanwhile, its reaped children's
// included (storescp --fork).
func sendAll(ctx context.Context, s *server, dirs []string) (sendResult, error) {
	bin, err := testpeer.Lookup("storescu")
	if err != nil {
		return sendResult{}, err
	}
	cmds := make([]*exec.Cmd, len(dirs))
	outs := make([]bytes.Buffer, len(dirs))
	for i, d := range dirs {
		args := append(append([]string(nil), storescuArgs...), "-aec", s.aet, "+sd", s.host, strconv.Itoa(s.port), d)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		cmd.WaitDelay = 5 * time.Second
		cmds[i] = cmd
	}
	cpu0, err0 := procCPUWithChildren(s.pid)
	start := time.Now()
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { errs[i] = cmd.Run() })
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1, err1 := procCPUWithChildren(s.pid)
	r := sendResult{wall: wall, peerCPU: cpu1 - cpu0, peerRead: err0 == nil && err1 == nil}
	for i, cmd := range cmds {
		if errs[i] != nil {
			return sendResult{}, fmt.Errorf("storescu %d: %w\n%s", i, errs[i], lastLines(outs[i].String(), 15))
		}
		r.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return r, nil
}

// procCPUWithChildren is procCPU plus the CPU time of the children the
// process has waited for.
func procCPUWithChildren(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 15 {
		return 0, fmt.Errorf("bench: malformed /proc stat of %d", pid)
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// readPhases sums the times of the "instance stored" lines of a pacsd
// log.
func readPhases(path string) (phases, error) {
	f, err := os.Open(path)
	if err != nil {
		return phases{}, err
	}
	defer f.Close()
	var p phases
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"instance stored"`)) {
			continue
		}
		var line struct {
			Duration, Receive, Sync, Index int64
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return phases{}, fmt.Errorf("bench: %s: %w", path, err)
		}
		p.n++
		p.duration += time.Duration(line.Duration)
		p.receive += time.Duration(line.Receive)
		p.sync += time.Duration(line.Sync)
		p.index += time.Duration(line.Index)
	}
	return p, sc.Err()
}

// concStats summarises the runs of one peer label.
type concStats struct {
	rate, cpuPerInstance float64 // medians
	min, max             float64
	phases               phases // of the median run by rate
}

func concSummary(runs []concRun, label string) (concStats, bool) {
	var rates, cpus []float64
	var ofLabel []concRun
	for _, r := range runs {
		if r.peer != label {
			continue
		}
		ofLabel = append(ofLabel, r)
		rates = append(rates, perSecond(r.instances, r.wall))
		cpus = append(cpus, r.peerCPU.Seconds()/float64(r.instances))
	}
	if len(rates) == 0 {
		return concStats{}, false
	}
	s := concStats{rate: median(rates), cpuPerInstance: median(cpus), min: rates[0], max: rates[0]}
	for _, x := range rates {
		s.min, s.max = min(s.min, x), max(s.max, x)
	}
	var phaseSum phases
	for _, r := range ofLabel {
		phaseSum.n += r.phases.n
		phaseSum.duration += r.phases.duration
		phaseSum.receive += r.phases.receive
		phaseSum.sync += r.phases.sync
		phaseSum.index += r.phases.index
	}
	s.phases = phaseSum
	return s, true
}

// printConcurrency prints the concurrency table.
func (r *report) printConcurrency(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Concurrent C-STORE: %d associations at once, one series of %d instances of at most %s each per association", o.conc, o.concInstances, o.size)
	p("sender    %d storescu %s -aec <peer AE> +sd <series i> 127.0.0.1 <port>, started together; the", o.conc, strings.Join(storescuArgs, " "))
	p("          figure is the wall time from the first start to the last exit over all instances; ×1 is one")
	p("          storescu with the first series alone. Every run starts the peer fresh in an empty directory.")
	p("when each peer answers:")
	for _, pe := range r.concPeers {
		if pe.assocs == 1 {
			continue
		}
		p("  %-13s %s", pe.name, pe.acks)
	}
	p("")
	p("medians over %d round(s); CPU ms/instance is the peer's user+system time (its children's included) per instance", o.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tinstances/s\tmin\tmax\tMB/s\tpeer CPU ms/instance\t")
	all := map[string]concStats{}
	for _, pe := range r.concPeers {
		s, ok := concSummary(r.conc, pe.label())
		if !ok {
			continue
		}
		all[pe.label()] = s
		mbps := s.rate * float64(o.size) / 1e6
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t\n", pe.label(), s.rate, s.min, s.max, mbps, s.cpuPerInstance*1e3)
	}
	tw.Flush()
	p("")
	n := strconv.Itoa(o.conc)
	ratio := func(a, b string, target float64, note string) {
		x, okx := all[a]
		y, oky := all[b]
		if !okx || !oky {
			return
		}
		v := x.rate / y.rate
		t := ""
		if target > 0 {
			t = fmt.Sprintf("target ≥ %.1f  %s", target, verdict(v >= target))
		}
		p("  %-22s / %-18s %5.2f   %-22s %s", a, b, v, t, note)
	}
	p("ratios of medians (instances/s)")
	ratio("pacsd ×"+n, "pacsd ×1", targetConcVsSingle, "scaling")
	ratio("pacsd ×"+n, "storescp ×"+n, targetConcVsStoreSCP, "storescp --fork never fsyncs")
	ratio("pacsd ×"+n, "orthanc-sync ×"+n, targetConcVsOrthanc, "Orthanc fsyncs its files")
	ratio("pacsd ×1", "storescp ×1", 0, "one association")
	ratio("storescp ×"+n, "storescp ×1", 0, "storescp's own scaling")
	p("")
	p("where pacsd's time per instance goes (sums over the runs of the instance times pacsd logs; receive is")
	p("reading the data set from the network through the header decoder into storage's page-cache writes,")
	p("sync the fsync of the object and its directory and the rename, index the commit of its record,")
	p("waiting for the group commit included; the rest of the wall time per instance is storescu and the")
	p("round trip of the response)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tms/instance\treceive\tsync\tindex\twall ms/instance/association\t")
	for _, label := range []string{"pacsd ×1", "pacsd ×" + n} {
		s, ok := all[label]
		if !ok || s.phases.n == 0 {
			continue
		}
		ph := s.phases
		avg := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(ph.n) }
		share := func(d time.Duration) string {
			return fmt.Sprintf("%.1f (%.0f%%)", avg(d), 100*d.Seconds()/ph.duration.Seconds())
		}
		assocs := 1
		if label != "pacsd ×1" {
			assocs = o.conc
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\t%.1f\t\n", label, avg(ph.duration), share(ph.receive), share(ph.sync), share(ph.index),
			1e3*float64(assocs)/s.rate)
	}
	tw.Flush()
	p("  (machine: %d CPUs)", runtime.NumCPU())
	p("")
}
