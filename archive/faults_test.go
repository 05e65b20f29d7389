package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
)

// Steps of a store at which world injects a fault.
const (
	stepPut           = "storage put"              // Put fails; nothing is stored
	stepPutDurable    = "storage put, durable"     // Put stores the object, then fails
	stepPrepare       = "index prepare"            // PreparePut fails
	stepCommit        = "index commit"             // Commit fails; nothing is written
	stepCommitApplied = "index commit, applied"    // Commit writes, then fails
	stepDelete        = "delete of the old object" // Delete fails
)

var faultSteps = []string{stepPut, stepPutDurable, stepPrepare, stepCommit, stepCommitApplied, stepDelete}

// world is an archive's storage and index, in memory, with faults. At the
// step armed, the operation fails; if crash is set, the process "dies"
// there: every later operation of storage or the index fails, so that
// nothing the archive would do afterwards (clean up, read back, delete)
// takes effect. restart brings the world back as a restarted process
// finds it. It keeps a log of the writes in the order they took effect.
type world struct {
	mu      sync.Mutex
	objects *mem.Store
	records map[string]*index.Instance // by SOP Instance UID
	docs    map[string][]byte          // metadata documents, by key
	fault   string
	crash   bool
	fired   bool
	dead    bool
	log     []string
}

func newWorld() *world {
	return &world{objects: mem.New(), records: map[string]*index.Instance{}, docs: map[string][]byte{}}
}

var errInjected = fmt.Errorf("injected fault: %w", storage.ErrUnavailable)

// at reports whether the operation at step must fail, and fails
// everything after a crash.
func (w *world) at(step string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return true
	}
	if w.fault == step && !w.fired {
		w.fired = true
		w.dead = w.crash
		return true
	}
	return false
}

func (w *world) arm(step string, crash bool) {
	w.mu.Lock()
	w.fault, w.crash, w.fired = step, crash, false
	w.mu.Unlock()
}

func (w *world) restart() {
	w.mu.Lock()
	w.fault, w.dead = "", false
	w.mu.Unlock()
}

func (w *world) record(format string, args ...any) {
	w.mu.Lock()
	w.log = append(w.log, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

func (w *world) isDead() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return errInjected
	}
	return nil
}

// faultStore is the world's storage.
type faultStore struct{ w *world }

func (s faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if err := s.w.isDead(); err != nil {
		return storage.Info{}, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Info{}, err
	}
	if s.w.at(stepPut) {
		return storage.Info{}, errInjected
	}
	info, err := s.w.objects.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return info, err
	}
	s.w.record("put %s", key)
	if s.w.at(stepPutDurable) {
		return storage.Info{}, errInjected
	}
	return info, nil
}

func (s faultStore) Delete(ctx context.Context, key string) error {
	if s.w.at(stepDelete) {
		return errInjected
	}
	s.w.record("delete %s", key)
	return s.w.objects.Delete(ctx, key)
}

func (s faultStore) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := s.w.isDead(); err != nil {
		return nil, err
	}
	return s.w.objects.Open(ctx, key)
}

func (s faultStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := s.w.isDead(); err != nil {
		return storage.Info{}, err
	}
	return s.w.objects.Stat(ctx, key)
}

func (s faultStore) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return s.w.objects.List(ctx, prefix)
}

// fakeIndex is the world's index: records by SOP Instance UID, the
// metadata document of each, and nothing else.
type fakeIndex struct{ w *world }

func (x fakeIndex) PreparePut(ctx context.Context, req *index.PutRequest) (index.Pending, error) {
	if x.w.at(stepPrepare) {
		return nil, errInjected
	}
	return &fakePending{w: x.w, req: req}, nil
}

func (x fakeIndex) Put(ctx context.Context, req *index.PutRequest) (*index.Change, error) {
	p, err := x.PreparePut(ctx, req)
	if err != nil {
		return nil, err
	}
	return p.Commit(ctx)
}

type fakePending struct {
	w     *world
	req   *index.PutRequest
	ended bool
}

func (p *fakePending) Commit(ctx context.Context) (*index.Change, error) {
	if p.ended {
		return nil, errors.New("fake index: already ended")
	}
	p.ended = true
	w := p.w
	if w.at(stepCommit) {
		return nil, errInjected
	}
	in := p.req.Instance
	w.mu.Lock()
	cur := w.records[in.SOPInstanceUID]
	if p.req.Check != nil {
		var c *index.Instance
		if cur != nil {
			cp := *cur
			c = &cp
		}
		if err := p.req.Check(c); err != nil {
			w.mu.Unlock()
			return nil, fmt.Errorf("fake index: %w", err)
		}
	}
	rec := *in
	rec.Header, rec.Metadata = nil, nil
	w.records[in.SOPInstanceUID] = &rec
	if in.Metadata != nil {
		w.docs[in.Key] = in.Metadata
	}
	w.log = append(w.log, "commit "+in.Key)
	w.mu.Unlock()
	if w.at(stepCommitApplied) {
		return nil, errInjected
	}
	ch := &index.Change{Kind: index.Created, Instance: in}
	if cur != nil {
		ch.Kind, ch.Previous = index.Replaced, cur
	}
	return ch, nil
}

func (p *fakePending) Rollback() { p.ended = true }

func (x fakeIndex) Instance(ctx context.Context, sop string) (*index.Instance, error) {
	if err := x.w.isDead(); err != nil {
		return nil, err
	}
	x.w.mu.Lock()
	defer x.w.mu.Unlock()
	in := x.w.records[sop]
	if in == nil {
		return nil, fmt.Errorf("fake index: %s: %w", sop, index.ErrNotFound)
	}
	cp := *in
	return &cp, nil
}

func (x fakeIndex) Metadata(ctx context.Context, in *index.Instance) ([]byte, error) {
	if err := x.w.isDead(); err != nil {
		return nil, err
	}
	x.w.mu.Lock()
	defer x.w.mu.Unlock()
	if rec := x.w.records[in.SOPInstanceUID]; rec == nil || rec.Key != in.Key || x.w.docs[in.Key] == nil {
		return nil, fmt.Errorf("fake index: metadata of %s: %w", in.Key, index.ErrNotFound)
	}
	return x.w.docs[in.Key], nil
}

func (x fakeIndex) Instances(ctx context.Context) iter.Seq2[*index.Instance, error] {
	return func(yield func(*index.Instance, error) bool) {
		x.w.mu.Lock()
		var all []*index.Instance
		for _, in := range x.w.records {
			cp := *in
			all = append(all, &cp)
		}
		x.w.mu.Unlock()
		slices.SortFunc(all, func(a, b *index.Instance) int { return strings.Compare(a.SOPInstanceUID, b.SOPInstanceUID) })
		for _, in := range all {
			if !yield(in, nil) {
				return
			}
		}
	}
}

// TestCrashConsistency injects a fault at each step of storing a new
// instance and of replacing one, either as a failure the archive sees or
// as a crash of the process at that point. After each, once restarted:
// every instance acknowledged is retrievable with the SHA-256 its record
// holds, an instance whose store was acknowledged is recorded as that
// store left it, Verify reports orphans at most, and Repair leaves Verify
// with nothing to report.
func TestCrashConsistency(t *testing.T) {
	for _, replace := range []bool{false, true} {
		for _, step := range faultSteps {
			if step == stepDelete && !replace {
				continue // a new instance deletes nothing
			}
			for _, crash := range []bool{false, true} {
				name := fmt.Sprintf("new/%s", step)
				if replace {
					name = fmt.Sprintf("replace/%s", step)
				}
				if crash {
					name += "/crash"
				}
				t.Run(name, func(t *testing.T) { testFault(t, replace, step, crash) })
			}
		}
	}
}

func testFault(t *testing.T, replace bool, step string, crash bool) {
	ctx := t.Context()
	w := newWorld()
	svc := New(Config{Store: faultStore{w}, Index: fakeIndex{w}, AETitle: "PACSD"})
	send := func(number int) (*Result, error) {
		d := patientInstance("1.2.1", "1.2.1.1", "1.2.1.1.1", "Doe^Jane", "P1", "CT", number)
		return svc.Store(ctx, &StoreRequest{
			SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.1.1.1", TransferSyntaxUID: uid.ExplicitVRLittleEndian,
			CallingAE: "CT1", Source: SourceDIMSE, Dataset: bytes.NewReader(d.b.Bytes()),
		})
	}
	var before *index.Instance // the version acknowledged before the fault
	if replace {
		res, err := send(1)
		if err != nil {
			t.Fatal(err)
		}
		before = res.Instance
	}
	w.mu.Lock()
	w.log = nil
	w.mu.Unlock()
	w.arm(step, crash)
	res, err := send(2)
	w.mu.Lock()
	fired, log := w.fired, slices.Clone(w.log)
	w.mu.Unlock()
	if !fired {
		t.Fatalf("the fault at %s never fired (log %q)", step, log)
	}
	t.Logf("store: %v; log %q", err, log)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		t.Errorf("failed store: %v, want ErrUnavailable", err)
	}
	if crash && err == nil && step != stepDelete {
		t.Errorf("a store whose process died at %s was acknowledged", step)
	}
	// The new object is durable before its record is committed, and the
	// version it replaced is deleted only after.
	var newKey string
	order := map[string]int{}
	for i, l := range log {
		op, key, _ := strings.Cut(l, " ")
		if op == "put" {
			newKey = key
		}
		if _, ok := order[l]; !ok {
			order[op] = i
		}
	}
	if c, ok := order["commit"]; ok && (order["put"] > c || newKey == "") {
		t.Errorf("a record was committed before its object was stored: %q", log)
	}
	if d, ok := order["delete"]; ok && before != nil && slices.Contains(log, "delete "+before.Key) {
		if c, ok := order["commit"]; !ok || d < c {
			t.Errorf("the old version was deleted before the new one was recorded: %q", log)
		}
	}

	w.restart()
	rec, rerr := fakeIndex{w}.Instance(ctx, "1.2.1.1.1")
	switch {
	case err == nil && (rerr != nil || rec.Key != res.Instance.Key):
		t.Fatalf("acknowledged store recorded as %+v, %v; want key %s", rec, rerr, res.Instance.Key)
	case err != nil && before != nil && (rerr != nil || rec.Key != before.Key && rec.Key != newKey):
		t.Fatalf("after a failed replace the record is %+v, %v; want the acknowledged %s", rec, rerr, before.Key)
	case err != nil && before != nil && rec.Key == newKey && !(crash && step == stepCommitApplied):
		t.Errorf("a replace reported failed is recorded")
	case rerr != nil && !errors.Is(rerr, index.ErrNotFound):
		t.Fatal(rerr)
	case rerr != nil:
		rec = nil
	}
	if rec != nil {
		checkObject(t, w, rec)
	}
	var problems []Problem
	if _, err := Verify(ctx, faultStore{w}, fakeIndex{w}, func(p Problem) { problems = append(problems, p) }); err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if p.Kind != Orphan {
			t.Errorf("Verify: %v", p)
		}
	}
	if err := Repair(ctx, faultStore{w}, fakeIndex{w}, problems, 0, func(p Problem, r Repaired) { t.Logf("repair %s: %v", p.Key, r) }); err != nil {
		t.Fatal(err)
	}
	problems = problems[:0]
	if _, err := Verify(ctx, faultStore{w}, fakeIndex{w}, func(p Problem) { problems = append(problems, p) }); err != nil || len(problems) != 0 {
		t.Errorf("Verify after Repair: %v, %v", problems, err)
	}
	if rec != nil {
		after, err := fakeIndex{w}.Instance(ctx, "1.2.1.1.1")
		if err != nil || after.Key != rec.Key {
			t.Errorf("Repair changed the record from %+v to %+v (%v)", rec, after, err)
		}
		checkObject(t, w, after)
	}
}

// checkObject checks that the object of rec exists with the size and
// SHA-256 rec holds.
func checkObject(t *testing.T, w *world, rec *index.Instance) {
	t.Helper()
	obj, err := w.objects.Open(t.Context(), rec.Key)
	if err != nil {
		t.Fatalf("object %s of the record: %v", rec.Key, err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil || n != rec.Size || hex.EncodeToString(h.Sum(nil)) != rec.SHA256 {
		t.Errorf("object %s: %d bytes, SHA-256 %x (%v); the record says %d bytes, %s", rec.Key, n, h.Sum(nil), err, rec.Size, rec.SHA256)
	}
}
