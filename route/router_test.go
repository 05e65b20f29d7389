package route_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/route/routetest"
)

// archiveFake holds instance records by SOP Instance UID.
type archiveFake struct {
	mu  sync.Mutex
	ins map[string]*index.Instance
}

func (a *archiveFake) add(study, sop string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ins == nil {
		a.ins = map[string]*index.Instance{}
	}
	a.ins[sop] = &index.Instance{SOPInstanceUID: sop, StudyInstanceUID: study, SeriesInstanceUID: study + ".1",
		SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1", Size: 1000}
}

func (a *archiveFake) Instance(ctx context.Context, sop string) (*index.Instance, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in := a.ins[sop]; in != nil {
		return in, nil
	}
	return nil, index.ErrNotFound
}

// shipment is what a fake sender was asked to send, and when.
type shipment struct {
	at    time.Time
	study string
	sops  []string
}

// fakeSender records shipments and answers each with behave, which
// reports outcomes and returns Send's error; by default it reports every
// instance sent.
type fakeSender struct {
	mu       sync.Mutex
	got      []shipment
	inFlight int
	maxIn    int
	behave   func(n int, s *route.Shipment) error
}

func (f *fakeSender) Send(ctx context.Context, s *route.Shipment) error {
	f.mu.Lock()
	var sops []string
	for _, in := range s.Instances {
		sops = append(sops, in.SOPInstanceUID)
	}
	f.got = append(f.got, shipment{time.Now(), s.Study, sops})
	n := len(f.got)
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	behave := f.behave
	f.mu.Unlock()
	time.Sleep(10 * time.Millisecond) // sending takes time
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if behave != nil {
		return behave(n, s)
	}
	for _, in := range s.Instances {
		s.Report(in.SOPInstanceUID, "")
	}
	return nil
}

func (f *fakeSender) shipments() []shipment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// world is a router over an in-memory queue, in a synctest bubble.
type world struct {
	t       *testing.T
	q       *routetest.Memory
	arch    *archiveFake
	router  *route.Router
	senders map[string]*fakeSender
	rules   *route.Rules
	cancel  context.CancelFunc
	done    chan struct{}
	// stopping is closed when stop is called.
	stopping chan struct{}
}

func newWorld(t *testing.T, specs []route.Spec, dests ...route.Destination) *world {
	w := &world{t: t, q: routetest.NewMemory(nil), arch: &archiveFake{}, senders: map[string]*fakeSender{}}
	var names []string
	for i := range dests {
		s := &fakeSender{}
		w.senders[dests[i].Name] = s
		dests[i].Sender = s
		names = append(names, dests[i].Name)
	}
	rules, err := route.Compile(specs, nil, func(n string) bool { return slices.Contains(names, n) }, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	w.rules = rules
	w.router = route.NewRouter(route.Config{Queue: w.q, Instances: w.arch, Destinations: dests, Owner: "n1", Location: time.UTC})
	return w
}

func (w *world) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done, w.stopping = cancel, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		w.router.Run(ctx)
	}()
}

func (w *world) stop() {
	close(w.stopping)
	w.cancel()
	<-w.done
}

// store stores an instance as the archive would: matched against the
// rules, queued, and the workers woken.
func (w *world) store(study, sop string, f route.Facts) {
	w.t.Helper()
	w.arch.add(study, sop)
	var es []route.Entry
	var dests []string
	for _, tg := range w.rules.Match(&f, time.Now()) {
		es = append(es, route.Entry{Destination: tg.Destination, Study: study, SOPInstanceUID: sop, Due: tg.Due, Window: tg.Window.String(), Priority: tg.Priority})
		dests = append(dests, tg.Destination)
	}
	if err := w.q.Enqueue(context.Background(), es...); err != nil {
		w.t.Fatal(err)
	}
	w.router.Wake(dests...)
}

func (w *world) task(dest, study string) route.Task {
	w.t.Helper()
	ts, err := w.q.Tasks(context.Background(), route.TaskQuery{Destination: dest, Study: study})
	if err != nil || len(ts) != 1 {
		w.t.Fatalf("tasks of %s at %s: %v %v", study, dest, ts, err)
	}
	return ts[0]
}

func forward(to ...string) []route.Spec {
	return []route.Spec{{Name: "all", To: to}}
}

func TestRouterSendsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A"})
		w.start()
		defer w.stop()
		start := time.Now()
		w.store("1.1", "1.1.1", route.Facts{})
		synctest.Wait()
		got := w.senders["A"].shipments()
		if len(got) != 1 || got[0].at != start || fmt.Sprint(got[0].sops) != "[1.1.1]" {
			t.Fatalf("shipments %+v, want 1.1.1 at once", got)
		}
		time.Sleep(time.Second)
		if tk := w.task("A", "1.1"); tk.State != route.Done || tk.Sent != 1 {
			t.Errorf("task %+v", tk)
		}
	})
}

// TestRouterDelay: a study whose instances keep arriving within the
// delay is sent once, the delay after its last instance.
func TestRouterDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, []route.Spec{{Name: "r", To: []string{"A"}, Delay: "30s"}}, route.Destination{Name: "A"})
		w.start()
		defer w.stop()
		for i := range 6 {
			w.store("1.1", fmt.Sprintf("1.1.%d", i), route.Facts{})
			time.Sleep(10 * time.Second)
		}
		last := time.Now().Add(-10 * time.Second)
		time.Sleep(19 * time.Second)
		if got := w.senders["A"].shipments(); len(got) != 0 {
			t.Fatalf("sent before the delay ran out: %+v", got)
		}
		time.Sleep(5 * time.Second)
		got := w.senders["A"].shipments()
		if len(got) != 1 || len(got[0].sops) != 6 {
			t.Fatalf("shipments %+v, want one of 6 instances", got)
		}
		if lag := got[0].at.Sub(last); lag < 30*time.Second || lag > 31*time.Second {
			t.Errorf("sent %s after the last instance, want 30 s (and the 1 s poll)", lag)
		}
	})
}

// TestRouterWindow: a study stored outside its route's window waits for
// the window to open.
func TestRouterWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts at midnight UTC.
		w := newWorld(t, []route.Spec{{Name: "night", To: []string{"A"}, Window: "02:00-03:00"}}, route.Destination{Name: "A"})
		w.start()
		defer w.stop()
		w.store("1.1", "1.1.1", route.Facts{})
		time.Sleep(119 * time.Minute)
		if got := w.senders["A"].shipments(); len(got) != 0 {
			t.Fatalf("sent at %s, outside the window", got[0].at.UTC().Format("15:04"))
		}
		time.Sleep(2 * time.Minute)
		got := w.senders["A"].shipments()
		if len(got) != 1 || got[0].at.UTC().Hour() != 2 {
			t.Fatalf("shipments %+v, want one at 02:00", got)
		}
	})
}

// TestRouterBackoff: failed attempts are retried after 5 s, 10 s, 20 s…
// up to the maximum; MaxAttempts ends the task failed with the error.
func TestRouterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A", MaxAttempts: 6, MaxBackoff: 30 * time.Second})
		w.senders["A"].behave = func(n int, s *route.Shipment) error {
			return fmt.Errorf("C-STORE 0xA700: out of resources (attempt %d)", n)
		}
		w.start()
		defer w.stop()
		w.store("1.1", "1.1.1", route.Facts{})
		time.Sleep(10 * time.Minute)
		got := w.senders["A"].shipments()
		if len(got) != 6 {
			t.Fatalf("%d attempts, want 6", len(got))
		}
		var gaps []string
		for i := 1; i < len(got); i++ {
			gaps = append(gaps, got[i].at.Sub(got[i-1].at).Round(time.Second).String())
		}
		// Each gap is the backoff plus the attempt's 10 ms, rounded.
		if s := strings.Join(gaps, " "); s != "5s 10s 20s 30s 30s" {
			t.Errorf("gaps between attempts %s, want 5s 10s 20s 30s 30s", s)
		}
		tk := w.task("A", "1.1")
		if tk.State != route.Failed || tk.Attempts != 6 || !strings.Contains(tk.LastError, "attempt 6") {
			t.Errorf("task %+v", tk)
		}
	})
}

// TestRouterProbe: a destination that cannot be reached is tried by one
// task at a time, at growing intervals; the other tasks wait without
// counting attempts, another destination is not held up, and once the
// destination answers every task goes.
func TestRouterProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("DOWN", "UP"), route.Destination{Name: "DOWN", MaxConcurrency: 3}, route.Destination{Name: "UP"})
		var up bool
		var mu sync.Mutex
		w.senders["DOWN"].behave = func(n int, s *route.Shipment) error {
			mu.Lock()
			defer mu.Unlock()
			if !up {
				return fmt.Errorf("%w: connection refused", route.ErrUnreachable)
			}
			for _, in := range s.Instances {
				s.Report(in.SOPInstanceUID, "")
			}
			return nil
		}
		w.start()
		defer w.stop()
		for i := range 10 {
			w.store(fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i), route.Facts{})
		}
		time.Sleep(time.Second)
		if got := w.senders["UP"].shipments(); len(got) != 10 {
			t.Errorf("UP got %d studies in a second, want 10", len(got))
		}
		time.Sleep(2 * time.Minute)
		down := w.senders["DOWN"].shipments()
		// The first attempts fail on the workers that had taken a task
		// (3), then one probe after 5 s, 10 s, 20 s, 40 s, 80 s.
		if len(down) > 3+5 {
			t.Errorf("%d attempts on DOWN in two minutes, want at most 8: the others must wait for the probe", len(down))
		}
		if w.senders["DOWN"].maxIn > 3 {
			t.Errorf("%d sends at once", w.senders["DOWN"].maxIn)
		}
		if failing, _ := w.router.Failing("DOWN"); !failing {
			t.Error("DOWN not reported failing")
		}
		mu.Lock()
		up = true
		mu.Unlock()
		time.Sleep(3 * time.Minute)
		st, _ := w.q.Stats(context.Background())
		for _, s := range st {
			if s.Pending+s.InFlight+s.Failed != 0 || s.Done24h != 10 {
				t.Errorf("stats %+v", s)
			}
		}
		for i := range 10 {
			if tk := w.task("DOWN", fmt.Sprintf("1.%d", i)); tk.Attempts != 0 || tk.State != route.Done {
				t.Errorf("task %+v", tk)
			}
		}
	})
}

// TestRouterRefused: an instance refused for good is marked so and the
// rest of the study is sent; the task ends failed with the reason.
func TestRouterRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, []route.Spec{{Name: "r", To: []string{"A"}, Delay: "5s"}}, route.Destination{Name: "A"})
		w.senders["A"].behave = func(n int, s *route.Shipment) error {
			for _, in := range s.Instances {
				why := ""
				if in.SOPInstanceUID == "1.1.2" {
					why = "C-STORE 0xA900: data set does not match SOP class"
				}
				s.Report(in.SOPInstanceUID, why)
			}
			return nil
		}
		w.start()
		defer w.stop()
		for i := range 3 {
			w.store("1.1", fmt.Sprintf("1.1.%d", i), route.Facts{})
		}
		time.Sleep(10 * time.Second)
		tk := w.task("A", "1.1")
		if tk.State != route.Failed || tk.Sent != 2 || tk.Refused != 1 || !strings.Contains(tk.LastError, "0xA900") {
			t.Errorf("task %+v", tk)
		}
		if got := w.senders["A"].shipments(); len(got) != 1 {
			t.Errorf("%d shipments, want 1", len(got))
		}
	})
}

// TestRouterReclaim: a router restarted takes back the tasks its
// previous run left in flight at once, not after the lease.
func TestRouterReclaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A"})
		w.store("1.1", "1.1.1", route.Facts{})
		if l, err := w.q.Take(context.Background(), "A", "n1", time.Hour); err != nil || l == nil {
			t.Fatal("take", err)
		}
		w.start()
		defer w.stop()
		synctest.Wait()
		time.Sleep(time.Second)
		if got := w.senders["A"].shipments(); len(got) != 1 {
			t.Errorf("%d shipments within a second of the restart, want 1", len(got))
		}
	})
}

// TestRouterGivesUpLostLeases: a study whose sending stopped its node
// MaxAttempts times (its leases lost, not finished) is given up, not
// sent a further time that would stop this node too.
func TestRouterGivesUpLostLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A", MaxAttempts: 2})
		w.store("1.1", "1.1.1", route.Facts{})
		ctx := context.Background()
		// The node took the study and stopped, twice; the second
		// time it restarts now.
		if l, err := w.q.Take(ctx, "A", "n1", time.Hour); err != nil || l == nil {
			t.Fatal("take", err)
		}
		if n, err := w.q.Reclaim(ctx, "n1"); err != nil || n != 1 {
			t.Fatal("reclaim", n, err)
		}
		if l, err := w.q.Take(ctx, "A", "n1", time.Hour); err != nil || l == nil {
			t.Fatal("take", err)
		}
		w.start()
		defer w.stop()
		synctest.Wait()
		time.Sleep(time.Second)
		if got := w.senders["A"].shipments(); len(got) != 0 {
			t.Errorf("%d shipments of a study that stopped its node twice, want none", len(got))
		}
		if tk := w.task("A", "1.1"); tk.State != route.Failed || tk.LastError != route.LostLease {
			t.Errorf("task %+v, want failed with the lost lease as its error", tk)
		}
	})
}

// TestRouterStop: a study being sent when the router stops is released,
// with what was sent recorded, and taken at once by the next run.
func TestRouterStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A"})
		w.senders["A"].behave = func(n int, s *route.Shipment) error {
			s.Report(s.Instances[0].SOPInstanceUID, "")
			if n == 1 {
				<-w.stopping // stopped mid-way
				return context.Canceled
			}
			for _, in := range s.Instances[1:] {
				s.Report(in.SOPInstanceUID, "")
			}
			return nil
		}
		for i := range 3 {
			w.store("1.1", fmt.Sprintf("1.1.%d", i), route.Facts{})
		}
		w.start()
		time.Sleep(time.Minute)
		w.stop()
		tk := w.task("A", "1.1")
		if tk.State != route.Pending || tk.Sent != 1 || tk.Attempts != 0 {
			t.Fatalf("task after stop %+v", tk)
		}
		w.start()
		defer w.stop()
		time.Sleep(time.Second)
		got := w.senders["A"].shipments()
		if len(got) != 2 || len(got[1].sops) != 2 {
			t.Errorf("shipments %+v", got)
		}
	})
}

// reclaimFails is a queue whose Reclaim fails at first, as a database
// that is restarting when pacsd starts.
type reclaimFails struct {
	*routetest.Memory
	mu    sync.Mutex
	fails int
}

func (q *reclaimFails) Reclaim(ctx context.Context, owner string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fails > 0 {
		q.fails--
		return 0, errors.New("connection refused")
	}
	return q.Memory.Reclaim(ctx, owner)
}

// TestRouterQueueDownAtStart: a queue that cannot be reached when the
// router starts is tried again until it answers; then the tasks left in
// flight are taken back and sent.
func TestRouterQueueDownAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, forward("A"), route.Destination{Name: "A"})
		q := &reclaimFails{Memory: w.q, fails: 3}
		w.router = route.NewRouter(route.Config{Queue: q, Instances: w.arch, Owner: "n1", Location: time.UTC,
			Destinations: []route.Destination{{Name: "A", Sender: w.senders["A"]}}})
		w.store("1.1", "1.1.1", route.Facts{})
		if l, err := w.q.Take(context.Background(), "A", "n1", time.Hour); err != nil || l == nil {
			t.Fatal("take", err)
		}
		w.start()
		defer w.stop()
		// Tried again after 1 s, 2 s and 4 s.
		time.Sleep(6500 * time.Millisecond)
		if got := w.senders["A"].shipments(); len(got) != 0 {
			t.Fatalf("%d shipments before the queue answered", len(got))
		}
		time.Sleep(2 * time.Second)
		if got := w.senders["A"].shipments(); len(got) != 1 {
			t.Fatalf("%d shipments once the queue answered, want 1", len(got))
		}
	})
}

// TestRouterProbeOutsideWindow: a probe that takes a task whose window is
// closed (made due by queue retry) sends nothing, and the destination
// stays failing: its other workers keep waiting, and the next probe
// goes at once.
func TestRouterProbeOutsideWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		specs := []route.Spec{
			{Name: "now", When: map[string]string{"source": "^now$"}, To: []string{"A"}},
			{Name: "night", When: map[string]string{"source": "^night$"}, To: []string{"A"}, Window: "02:00-03:00", Priority: "high"},
		}
		w := newWorld(t, specs, route.Destination{Name: "A", MaxConcurrency: 3})
		w.senders["A"].behave = func(n int, s *route.Shipment) error {
			return fmt.Errorf("%w: connection refused", route.ErrUnreachable)
		}
		w.start()
		defer w.stop()
		for i := range 3 {
			w.store(fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i), route.Facts{Source: "now"})
		}
		time.Sleep(time.Second)
		if got := w.senders["A"].shipments(); len(got) != 3 {
			t.Fatalf("%d first attempts, want 3", len(got))
		}
		w.store("1.9", "1.9.1", route.Facts{Source: "night"})
		if _, err := w.q.Retry(context.Background(), "A", false); err != nil {
			t.Fatal(err)
		}
		// At 5 s the probe takes 1.9 (high priority), outside its
		// window, releases it and probes with another task.
		time.Sleep(10 * time.Second)
		got := w.senders["A"].shipments()
		if len(got) != 4 {
			t.Fatalf("%d attempts in 11 s, want 4: the three first and one probe", len(got))
		}
		for _, s := range got {
			if s.study == "1.9" {
				t.Errorf("1.9 sent at %s, outside its window", s.at.UTC().Format("15:04:05"))
			}
		}
		if failing, _ := w.router.Failing("A"); !failing {
			t.Error("A no longer failing after a probe sent nothing")
		}
	})
}
