package migrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
)

// Orders of a migration (--order).
const (
	NewestFirst = "newest"
	OldestFirst = "oldest"
)

// Config configures a Migrator.
type Config struct {
	State   State
	Source  Source
	Archive Archive
	Index   Index
	// Name is the source's name in the State: its AE title or URL.
	Name string
	// AETitle is pacsd's, recorded as the AE the instances were sent to.
	AETitle string
	// Since, Until and Keys select the studies (see Discovery).
	Since, Until string
	Keys         []Key
	// Order is NewestFirst (the default) or OldestFirst, by Study Date.
	Order string
	// Priority holds Patient IDs and Accession Numbers whose studies go
	// first.
	Priority map[string]bool
	// Concurrency is how many studies are retrieved at once (default 2).
	Concurrency int
	// MaxAttempts is how many retrievals a study gets in one run before
	// it is failed (default 3).
	MaxAttempts int
	// RetryConflicts retries the studies in conflict, once a person has
	// resolved what they disagreed on.
	RetryConflicts bool
	// Window is when studies may be moved (--window); outside it the
	// migration waits. Limiter caps the rate data is taken from the
	// source (--max-mbps); nil caps nothing.
	Window  route.Window
	Limiter *route.Limiter
	// Owner names this process in the State ("host:pid"); Alive, if set,
	// tells whether the process a recorded owner names still runs, so
	// that a run after a crash need not wait for its heartbeat to age.
	Owner string
	Alive func(owner string) bool
	// Progress, if set, receives the progress line (Progress.go).
	Progress *Progress
	Logger   *slog.Logger
}

// heartbeat is how often a running migration says it is alive;
// staleAfter is how long after its last heartbeat another process may
// take it over.
const (
	heartbeat  = 10 * time.Second
	staleAfter = 3 * heartbeat
)

// Migrator runs a migration.
type Migrator struct {
	cfg   Config
	log   *slog.Logger
	keep  *keeper
	stats stats

	mu  sync.Mutex // guards mig, which the heartbeat also writes
	mig *Migration
}

// stats are the counters of a run, for progress.
type stats struct {
	total, finished, errors atomic.Int64
	instances, bytes        atomic.Int64
}

// New returns a Migrator.
func New(cfg Config) *Migrator {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Order == "" {
		cfg.Order = NewestFirst
	}
	m := &Migrator{cfg: cfg, log: cfg.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.keep = &keeper{archive: cfg.Archive, index: cfg.Index, aeTitle: cfg.AETitle, source: SourceMigrate, limiter: cfg.Limiter,
		received: func(n int64) { m.stats.bytes.Add(n) }}
	return m
}

// Receiver returns a Receiver that keeps instances that arrive for no
// study in flight, as a source's late sub-operations may: images are
// never turned away. A conflict with what pacsd holds is logged.
func (m *Migrator) Receiver() Receiver { return looseReceiver{m} }

type looseReceiver struct{ m *Migrator }

func (r looseReceiver) Receive(ctx context.Context, in *Incoming) error {
	_, err := r.m.keep.keep(ctx, in)
	if errors.Is(err, ErrConflict) {
		r.m.log.Warn("migration: instance for no study in flight conflicts with what pacsd holds", "err", err)
	}
	return err
}

// Summary is what a run did to the studies in its scope: those its
// discovery found.
type Summary struct {
	Migration *Migration
	Discovery DiscoveryResult
	// ByState counts the studies in scope by their state at the end.
	ByState map[StudyState]int
	// Stopped is set when the run was stopped before it had worked
	// through every study.
	Stopped bool
}

// Complete reports whether every study in scope is verified.
func (s Summary) Complete() bool {
	for st, n := range s.ByState {
		if st != Verified && n > 0 {
			return false
		}
	}
	return true
}

// Run runs the migration: it discovers the studies, then retrieves and
// verifies each one not verified yet, until all are done or ctx ends.
// When ctx ends it stops starting studies and returns once those in
// flight are done, with Summary.Stopped set and no error.
func (m *Migrator) Run(ctx context.Context) (*Summary, error) {
	st := m.cfg.State
	mig, err := st.Begin(ctx, m.cfg.Name, m.cfg.Source.Kind())
	if err != nil {
		return nil, err
	}
	if err := m.claim(ctx, mig); err != nil {
		return nil, err
	}
	m.mig = mig
	if err := m.update(ctx, func(g *Migration) {
		g.Running, g.Waiting, g.Finished, g.Window = true, false, false, m.cfg.Window.String()
	}); err != nil {
		return nil, err
	}
	// Whatever happens, the migration is released for the next run.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.update(rctx, func(g *Migration) { g.Running, g.Waiting = false, false }); err != nil {
			m.log.Warn("migration state not updated", "err", err)
		}
		if err := st.Claim(rctx, mig.ID, m.cfg.Owner, "", time.Now()); err != nil {
			m.log.Warn("migration not released", "err", err)
		}
	}()
	stopBeat := m.beat()
	defer stopBeat()

	m.log.Info("migration: discovering studies", "migration", mig.ID, "source", m.cfg.Name, "since", m.cfg.Since, "until", m.cfg.Until)
	scope := map[string]bool{}
	var scopeMu sync.Mutex
	disc := &Discovery{Source: m.cfg.Source, Since: m.cfg.Since, Until: m.cfg.Until, Keys: m.cfg.Keys,
		Found: func(ctx context.Context, studies []*Study) error {
			for _, s := range studies {
				s.Priority = m.cfg.Priority[s.PatientID] || (s.AccessionNumber != "" && m.cfg.Priority[s.AccessionNumber])
			}
			scopeMu.Lock()
			for _, s := range studies {
				scope[s.StudyInstanceUID] = true
			}
			scopeMu.Unlock()
			return st.AddStudies(ctx, mig.ID, studies)
		},
		Queried: func(q Query, a Answer) {
			m.log.Debug("migration: C-FIND", "query", q.String(), "matches", len(a.Studies), "capped", a.Capped, "reason", a.Reason)
		},
	}
	dres, err := disc.Run(ctx)
	sum := &Summary{Discovery: dres}
	defer func() { sum.Migration = m.migration() }()
	if err != nil {
		if ctx.Err() != nil {
			sum.Stopped = true
			return sum, nil
		}
		return nil, err
	}
	for _, part := range dres.Incomplete {
		m.log.Warn("migration: discovery could not split a capped query further; studies may be missing", "part", part)
	}
	queue, err := m.plan(ctx, mig.ID, scope)
	if err != nil {
		return nil, err
	}
	m.log.Info("migration: studies found", "studies", len(scope), "queries", dres.Queries, "to_migrate", len(queue))

	m.stats.total.Store(int64(len(queue)))
	if p := m.cfg.Progress; p != nil {
		p.start(&m.stats)
		defer p.stop()
	}
	sum.Stopped = !m.work(ctx, queue)
	if !sum.Stopped {
		if err := m.update(context.WithoutCancel(ctx), func(g *Migration) { g.Finished = true }); err != nil {
			return nil, err
		}
	}
	sum.ByState = map[StudyState]int{}
	for s, err := range st.Studies(context.WithoutCancel(ctx), mig.ID, StudyFilter{}) {
		if err != nil {
			return nil, err
		}
		if scope[s.StudyInstanceUID] {
			sum.ByState[s.State]++
		}
	}
	return sum, nil
}

// claim makes this process the one running mig, taking over from a
// process that died.
func (m *Migrator) claim(ctx context.Context, mig *Migration) error {
	prev := mig.Owner
	if prev != "" && prev != m.cfg.Owner && time.Since(mig.Heartbeat) < staleAfter && (m.cfg.Alive == nil || m.cfg.Alive(prev)) {
		return fmt.Errorf("%w: %s, alive %v ago", ErrClaimed, prev, time.Since(mig.Heartbeat).Round(time.Second))
	}
	if prev != "" && prev != m.cfg.Owner {
		m.log.Warn("migration: taking over from a process that stopped without releasing it", "previous_owner", prev, "last_heartbeat", mig.Heartbeat)
	}
	if err := m.cfg.State.Claim(ctx, mig.ID, prev, m.cfg.Owner, time.Now()); err != nil {
		return err
	}
	mig.Owner = m.cfg.Owner
	return nil
}

// update changes the migration's record with fn, and writes it with a
// new heartbeat.
func (m *Migrator) update(ctx context.Context, fn func(*Migration)) error {
	m.mu.Lock()
	fn(m.mig)
	m.mig.Heartbeat = time.Now()
	c := *m.mig
	m.mu.Unlock()
	return m.cfg.State.Update(ctx, &c)
}

// migration returns a copy of the migration's record.
func (m *Migrator) migration() *Migration {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *m.mig
	return &c
}

// beat records the migration's heartbeat until the returned function is
// called.
func (m *Migrator) beat() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), heartbeat)
				if err := m.update(ctx, func(*Migration) {}); err != nil {
					m.log.Warn("migration heartbeat not recorded", "err", err)
				}
				cancel()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// plan lists the studies in scope still to migrate, in the order to
// migrate them: priority first, then by Study Date as Order says, studies
// without a date last.
func (m *Migrator) plan(ctx context.Context, id string, scope map[string]bool) ([]*Study, error) {
	var queue []*Study
	for s, err := range m.cfg.State.Studies(ctx, id, StudyFilter{}) {
		if err != nil {
			return nil, err
		}
		if !scope[s.StudyInstanceUID] || s.State == Verified || (s.State == Conflict && !m.cfg.RetryConflicts) {
			continue
		}
		queue = append(queue, s)
	}
	newest := m.cfg.Order != OldestFirst
	slices.SortStableFunc(queue, func(a, b *Study) int {
		if a.Priority != b.Priority {
			if a.Priority {
				return -1
			}
			return 1
		}
		if (a.StudyDate == "") != (b.StudyDate == "") {
			if a.StudyDate == "" {
				return 1
			}
			return -1
		}
		c := cmp.Or(cmp.Compare(a.StudyDate, b.StudyDate), cmp.Compare(a.StudyTime, b.StudyTime))
		if newest {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.StudyInstanceUID, b.StudyInstanceUID))
	})
	return queue, nil
}

// work migrates the queue with Concurrency workers, inside the window.
// It reports whether it went through the whole queue: false when ctx
// ended first, in which case the studies in flight were finished.
func (m *Migrator) work(ctx context.Context, queue []*Study) bool {
	studies := make(chan *Study)
	var wg sync.WaitGroup
	// Studies in flight finish after a stop; ctx's values are kept.
	run := context.WithoutCancel(ctx)
	for range m.cfg.Concurrency {
		wg.Go(func() {
			for s := range studies {
				m.study(run, s)
			}
		})
	}
	complete := true
	for _, s := range queue {
		if !m.waitWindow(ctx) {
			complete = false
			break
		}
		select {
		case studies <- s:
			continue
		case <-ctx.Done():
		}
		complete = false
		break
	}
	close(studies)
	wg.Wait()
	return complete
}

// waitWindow waits until the window is open; false if ctx ends first.
func (m *Migrator) waitWindow(ctx context.Context) bool {
	now := time.Now()
	open := m.cfg.Window.Next(now)
	if !open.After(now) {
		return ctx.Err() == nil
	}
	m.log.Info("migration: outside the time window; waiting", "window", m.cfg.Window.String(), "until", open)
	m.setWaiting(ctx, true)
	defer m.setWaiting(context.WithoutCancel(ctx), false)
	t := time.NewTimer(open.Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Migrator) setWaiting(ctx context.Context, w bool) {
	if err := m.update(ctx, func(g *Migration) { g.Waiting = w }); err != nil {
		m.log.Warn("migration state not updated", "err", err)
	}
}

// study migrates one study: up to MaxAttempts retrievals, each followed
// by verification.
func (m *Migrator) study(ctx context.Context, s *Study) {
	start := time.Now()
	log := m.log.With("study_instance_uid", s.StudyInstanceUID)
	rcv := &studyReceiver{keeper: m.keep, study: s.StudyInstanceUID, held: map[string]bool{}, conflicts: map[string]string{},
		before: patientBefore(ctx, m.cfg.Index, s.PatientID, s.IssuerOfPatientID)}
	var refs []InstanceRef
	var lastErr error
	for attempt := 0; attempt < m.cfg.MaxAttempts; attempt++ {
		if refs == nil {
			var err error
			if refs, err = m.cfg.Source.Instances(ctx, s.StudyInstanceUID); err != nil {
				lastErr = err
				log.Warn("migration: instances not listed", "err", err)
				continue
			}
			if len(refs) == 0 {
				lastErr = errors.New("the source lists no instances of the study")
				refs = nil
				continue
			}
			s.InstancesAtSource = len(refs)
		}
		missing, err := m.missing(ctx, rcv, refs)
		if err != nil {
			lastErr = err
			continue
		}
		if len(missing) > 0 {
			s.Attempts++
			s.State, s.LastError = Pending, errText(lastErr)
			m.put(ctx, s)
			// A study that pacsd holds in part (a retry, a stop in its
			// middle) is completed instance by instance, so that nothing
			// is fetched twice and one instance the source cannot send
			// does not hold back the others.
			var only []InstanceRef
			if len(missing) < len(refs) || s.Attempts > 1 {
				want := make(map[string]bool, len(missing))
				for _, sop := range missing {
					want[sop] = true
				}
				for _, r := range refs {
					if want[r.SOPInstanceUID] {
						only = append(only, r)
					}
				}
			}
			rerr := m.cfg.Source.Retrieve(ctx, s.StudyInstanceUID, refs, only, rcv)
			if rerr != nil {
				log.Warn("migration: retrieval incomplete", "attempt", s.Attempts, "err", rerr)
			} else {
				s.State = Done
				m.put(ctx, s)
			}
			if missing, err = m.missing(ctx, rcv, refs); err != nil {
				lastErr = err
				continue
			}
			if len(missing) > 0 {
				lastErr = fmt.Errorf("%d of %d instances missing after attempt %d: %s", len(missing), len(refs), s.Attempts, listUIDs(missing, 20))
				if rerr != nil {
					lastErr = fmt.Errorf("%w; %v", lastErr, rerr)
				}
				if conflicts := rcv.conflictList(); len(conflicts) > 0 {
					break // the same content would conflict again
				}
				continue
			}
		}
		s.InstancesHere, s.Bytes = len(refs), max(s.Bytes, rcv.bytesReceived())
		s.State, s.LastError = Verified, ""
		if conflicts := rcv.conflictList(); len(conflicts) > 0 {
			s.State, s.LastError = Conflict, fmt.Sprintf("%d instances conflict with what pacsd holds: %s", len(conflicts), strings.Join(conflicts, "; "))
		} else if why := m.patientConflict(ctx, s, rcv); why != "" {
			s.State, s.LastError = Conflict, why
		}
		m.finish(ctx, s, log, start)
		return
	}
	s.State = Failed
	s.InstancesHere = rcv.heldCount()
	if conflicts := rcv.conflictList(); len(conflicts) > 0 {
		s.State = Conflict
		lastErr = fmt.Errorf("%d instances conflict with what pacsd holds: %s", len(conflicts), strings.Join(conflicts, "; "))
	}
	s.LastError = errText(lastErr)
	m.finish(ctx, s, log, start)
}

func (m *Migrator) finish(ctx context.Context, s *Study, log *slog.Logger, start time.Time) {
	m.put(ctx, s)
	m.stats.finished.Add(1)
	m.stats.instances.Add(int64(s.InstancesHere))
	if s.State != Verified {
		m.stats.errors.Add(1)
		log.Warn("migration: study not verified", "state", s.State, "attempts", s.Attempts, "err", s.LastError)
		return
	}
	log.Info("migration: study verified", "instances", s.InstancesHere, "bytes", s.Bytes, "attempts", s.Attempts, "duration", time.Since(start))
}

func (m *Migrator) put(ctx context.Context, s *Study) {
	if err := m.cfg.State.PutStudy(ctx, m.migration().ID, s); err != nil {
		m.log.Error("migration: study state not recorded", "study_instance_uid", s.StudyInstanceUID, "err", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// missing returns the SOP Instance UIDs of refs that pacsd does not hold
// in the study.
func (m *Migrator) missing(ctx context.Context, rcv *studyReceiver, refs []InstanceRef) ([]string, error) {
	var out []string
	for _, r := range refs {
		if rcv.holds(r.SOPInstanceUID) {
			continue
		}
		in, err := m.cfg.Index.Instance(ctx, r.SOPInstanceUID)
		switch {
		case errors.Is(err, index.ErrNotFound):
			out = append(out, r.SOPInstanceUID)
		case err != nil:
			return nil, fmt.Errorf("verify: index: %w", err)
		case in.StudyInstanceUID != rcv.study:
			rcv.conflict(r.SOPInstanceUID, fmt.Sprintf("%s is held in study %s", r.SOPInstanceUID, in.StudyInstanceUID))
			out = append(out, r.SOPInstanceUID)
		case !m.fromSource(in):
			// Held, but not from this source: it is fetched to be
			// compared, and is a conflict if it differs.
			out = append(out, r.SOPInstanceUID)
		default:
			rcv.hold(r.SOPInstanceUID)
		}
	}
	return out, nil
}

// fromSource reports whether pacsd received an archived instance from
// this migration's source, in an earlier run: then it is the source's
// copy.
func (m *Migrator) fromSource(in *index.Instance) bool {
	return m.cfg.Source.Kind() == KindDIMSE && in.Source == SourceMigrate && in.CallingAE == m.cfg.Name
}

// patientConflict says how the patient of a verified study disagrees
// with itself, with other studies of the migration, or with what pacsd
// held of the patient before; "" when it does not.
func (m *Migrator) patientConflict(ctx context.Context, s *Study, rcv *studyReceiver) string {
	seen := rcv.patients()
	if len(seen) > 1 {
		var list []string
		for _, p := range seen {
			list = append(list, fmt.Sprintf("%s %s", p.ID, p))
		}
		slices.Sort(list)
		return "the study's instances disagree on the patient: " + strings.Join(list, ", ")
	}
	me := &patient{ID: s.PatientID, Issuer: s.IssuerOfPatientID, Name: s.PatientName, BirthDate: s.PatientBirthDate}
	if len(seen) == 1 {
		// The instances say who the patient is, issuer included, which
		// discovery does not ask for.
		me = seen[0]
		s.PatientID, s.IssuerOfPatientID, s.PatientName, s.PatientBirthDate = me.ID, me.Issuer, me.Name, me.BirthDate
	}
	if me.ID == "" {
		return ""
	}
	who := fmt.Sprintf("patient %s", me.ID)
	if me.Issuer != "" {
		who += fmt.Sprintf(" (issuer %s)", me.Issuer)
	}
	others, err := m.cfg.State.PatientStudies(ctx, m.migration().ID, me.ID, me.Issuer)
	if err != nil {
		m.log.Warn("migration: patient's other studies not read", "err", err)
	}
	for _, o := range others {
		if o.StudyInstanceUID == s.StudyInstanceUID {
			continue
		}
		op := &patient{Name: o.PatientName, BirthDate: o.PatientBirthDate}
		if d := me.differs(op); d != "" {
			return fmt.Sprintf("%s: %s differs between studies: %s here, %s in study %s", who, d, me, op, o.StudyInstanceUID)
		}
	}
	if p := rcv.before; p != nil {
		if d := me.differs(p); d != "" {
			return fmt.Sprintf("%s: %s differs from what pacsd held: %s here, %s in pacsd", who, d, me, p)
		}
	}
	return ""
}

// studyReceiver keeps the instances retrieved for one study, and what
// was learnt of them.
type studyReceiver struct {
	*keeper
	study string
	// before is the patient as pacsd's index held it before the study's
	// first instance was stored; nil if it held none.
	before *patient

	mu        sync.Mutex
	held      map[string]bool
	conflicts map[string]string
	seen      []*patient
	bytes     int64
}

// Receive implements Receiver.
func (r *studyReceiver) Receive(ctx context.Context, in *Incoming) error {
	k, err := r.keep(ctx, in)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			r.conflict(in.SOPInstanceUID, err.Error())
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[k.sopInstanceUID] = true
	r.bytes += k.bytes
	if p := k.patient; p != nil && !slices.ContainsFunc(r.seen, func(q *patient) bool { return *q == *p }) {
		r.seen = append(r.seen, p)
	}
	return nil
}

func (r *studyReceiver) holds(sop string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[sop]
}

func (r *studyReceiver) hold(sop string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[sop] = true
}

func (r *studyReceiver) heldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

func (r *studyReceiver) bytesReceived() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

func (r *studyReceiver) conflict(sop, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conflicts[sop] = why
}

func (r *studyReceiver) conflictList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, why := range r.conflicts {
		out = append(out, why)
	}
	slices.Sort(out)
	return out
}

func (r *studyReceiver) patients() []*patient {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// patientBefore reads what pacsd's index holds of a patient.
func patientBefore(ctx context.Context, ix Index, id, issuer string) *patient {
	if id == "" {
		return nil
	}
	p, err := ix.Patient(ctx, id, issuer)
	if err != nil {
		return nil
	}
	return &patient{ID: id, Issuer: issuer, Name: p.Attributes.String(tag.PatientName), BirthDate: p.Attributes.First(tag.PatientBirthDate)}
}
