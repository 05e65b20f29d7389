package recompress

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// fakeIndex keeps instances and claims in memory.
type fakeIndex struct {
	mu        sync.Mutex
	instances map[string]*index.Instance
	claimed   map[string]string // SOP Instance UID -> owner
	skipped   map[string]string // SOP Instance UID -> reason
	released  map[string]time.Time
	done      []string
	renewed   int
}

func newFakeIndex(ins ...*index.Instance) *fakeIndex {
	x := &fakeIndex{instances: map[string]*index.Instance{}, claimed: map[string]string{}, skipped: map[string]string{}, released: map[string]time.Time{}}
	for _, in := range ins {
		x.instances[in.SOPInstanceUID] = in
	}
	return x
}

func (x *fakeIndex) Instance(ctx context.Context, sop string) (*index.Instance, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	in, ok := x.instances[sop]
	if !ok {
		return nil, index.ErrNotFound
	}
	cp := *in
	return &cp, nil
}

func (x *fakeIndex) Claim(ctx context.Context, owner string, cutoff time.Time, limit int, lease time.Duration) ([]index.CompressTask, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []index.CompressTask
	for sop, in := range x.instances {
		_, claimed := x.claimed[sop]
		_, skipped := x.skipped[sop]
		_, released := x.released[sop]
		if claimed || skipped || released || in.TransferSyntaxUID != uid.ExplicitVRLittleEndian || !in.ReceivedAt.Before(cutoff) || len(out) == limit {
			continue
		}
		x.claimed[sop] = owner
		out = append(out, index.CompressTask{SOPInstanceUID: sop, Key: in.Key})
	}
	return out, nil
}

func (x *fakeIndex) end(owner string, t index.CompressTask) error {
	if x.claimed[t.SOPInstanceUID] != owner {
		return fmt.Errorf("%s not claimed by %s", t.SOPInstanceUID, owner)
	}
	delete(x.claimed, t.SOPInstanceUID)
	return nil
}

func (x *fakeIndex) Renew(ctx context.Context, owner string, t index.CompressTask, lease time.Duration) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.claimed[t.SOPInstanceUID] != owner {
		return index.ErrNotFound
	}
	x.renewed++
	return nil
}

func (x *fakeIndex) Done(ctx context.Context, owner string, t index.CompressTask) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.done = append(x.done, t.SOPInstanceUID)
	return x.end(owner, t)
}

func (x *fakeIndex) Skip(ctx context.Context, owner string, t index.CompressTask, reason string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.skipped[t.SOPInstanceUID] = reason
	return x.end(owner, t)
}

func (x *fakeIndex) Release(ctx context.Context, owner string, t index.CompressTask, retry time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.released[t.SOPInstanceUID] = retry
	return x.end(owner, t)
}

func (x *fakeIndex) Stats(ctx context.Context) (index.CompressionStats, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var s index.CompressionStats
	for _, in := range x.instances {
		if in.TransferSyntaxUID == uid.HTJ2KLossless {
			s.Instances++
			s.OriginalBytes += 1000
			s.StoredBytes += in.Size
		}
	}
	s.Skipped = int64(len(x.skipped))
	return s, nil
}

// fakeArchive compresses by what the instance's Source says: "skip",
// "changed", "fail" or anything else to halve it.
type fakeArchive struct{ x *fakeIndex }

func (a fakeArchive) Compress(ctx context.Context, in *index.Instance, ts string) (*archive.Compression, error) {
	switch in.Source {
	case "skip":
		return nil, fmt.Errorf("%w: 32 bits allocated", archive.ErrSkipped)
	case "changed":
		return nil, archive.ErrChanged
	case "fail":
		return nil, fmt.Errorf("%w: bucket down", archive.ErrUnavailable)
	}
	out := *in
	out.Key, out.Size, out.TransferSyntaxUID = in.Key+".c", in.Size/2, ts
	a.x.mu.Lock()
	a.x.instances[in.SOPInstanceUID] = &out
	a.x.mu.Unlock()
	return &archive.Compression{Instance: &out, Original: index.Original{Key: out.Key, SHA256: in.SHA256, TransferSyntaxUID: in.TransferSyntaxUID, Size: in.Size}}, nil
}

type fakeObserver struct {
	mu                   sync.Mutex
	outcomes             map[string]int
	orig, stored         int64
	totalInstances, save int64
}

func (o *fakeObserver) ObserveCompression(outcome string, orig, stored int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[outcome]++
	o.orig += orig
	o.stored += stored
}

func (o *fakeObserver) SetCompressionTotals(instances, saved int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.totalInstances, o.save = instances, saved
}

func TestPass(t *testing.T) {
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	old := now.Add(-48 * time.Hour)
	mk := func(n int, source string, received time.Time) *index.Instance {
		return &index.Instance{SOPInstanceUID: fmt.Sprintf("1.2.%d", n), Key: fmt.Sprintf("k%d", n), Size: 1000,
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Source: source, ReceivedAt: received}
	}
	x := newFakeIndex(mk(1, "dimse", old), mk(2, "dimse", old), mk(3, "skip", old), mk(4, "changed", old), mk(5, "fail", old),
		mk(6, "dimse", now.Add(-time.Hour)))
	obs := &fakeObserver{outcomes: map[string]int{}}
	var logs bytes.Buffer
	c, err := New(Config{Archive: fakeArchive{x}, Index: x, After: 24 * time.Hour, Syntax: uid.HTJ2KLossless, Owner: "n1",
		Concurrency: 2, Rate: 1 << 40, Observer: obs, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p.Compressed != 2 || p.Skipped != 1 || p.Failed != 1 || p.OriginalBytes != 2000 || p.StoredBytes != 1000 || p.Saved() != 1000 {
		t.Errorf("pass %+v", p)
	}
	if x.instances["1.2.6"].TransferSyntaxUID != uid.ExplicitVRLittleEndian {
		t.Errorf("an instance younger than --compress-after was compressed")
	}
	if r := x.skipped["1.2.3"]; !strings.Contains(r, "32 bits allocated") {
		t.Errorf("skip reason %q", r)
	}
	if _, ok := x.released["1.2.5"]; !ok {
		t.Errorf("the instance that failed was not released for a retry")
	}
	if len(x.claimed) != 0 {
		t.Errorf("claims left: %v", x.claimed)
	}
	if obs.outcomes[OutcomeCompressed] != 2 || obs.outcomes[OutcomeSkipped] != 1 || obs.outcomes[OutcomeFailed] != 1 || obs.orig != 2000 || obs.stored != 1000 {
		t.Errorf("observed %+v", obs)
	}
	if obs.totalInstances != 2 || obs.save != 1000 {
		t.Errorf("totals %d instances, %d saved", obs.totalInstances, obs.save)
	}
	if !strings.Contains(logs.String(), "archive compression pass") || !strings.Contains(logs.String(), "saved_bytes=1000") {
		t.Errorf("no log line of the pass:\n%s", logs.String())
	}
}

func TestNewRefuses(t *testing.T) {
	x := newFakeIndex()
	for _, cfg := range []Config{
		{Archive: fakeArchive{x}, Index: x, After: time.Hour, Syntax: uid.JPEGBaseline8Bit, Owner: "n"},
		{Archive: fakeArchive{x}, Index: x, After: 0, Syntax: uid.HTJ2KLossless, Owner: "n"},
		{Archive: fakeArchive{x}, Index: x, After: time.Hour, Syntax: uid.HTJ2KLossless},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestParseSyntax(t *testing.T) {
	for name, want := range map[string]string{"htj2k-lossless": uid.HTJ2KLossless, "jpegls-lossless": uid.JPEGLSLossless, "j2k-lossless": uid.JPEG2000Lossless} {
		if got, err := ParseSyntax(name); err != nil || got != want {
			t.Errorf("ParseSyntax(%q) = %s, %v", name, got, err)
		}
	}
	if _, err := ParseSyntax("jpeg-lossy"); err == nil {
		t.Error("ParseSyntax accepted jpeg-lossy")
	}
}

// TestPacer checks that compression is held to its rate.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(1000, time.Now)
		start := time.Now()
		for range 5 {
			p.wait(t.Context(), 500)
		}
		if d := time.Since(start); d != 2500*time.Millisecond {
			t.Errorf("5×500 bytes at 1000 bytes/s took %v, want 2.5s", d)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		before := time.Now()
		p.wait(ctx, 1<<30)
		if time.Since(before) != 0 {
			t.Error("wait did not end with its context")
		}
	})
}

// slowArchive takes a while, as a large multi-frame image does.
type slowArchive struct {
	fakeArchive
	d time.Duration
}

func (a slowArchive) Compress(ctx context.Context, in *index.Instance, ts string) (*archive.Compression, error) {
	time.Sleep(a.d)
	return a.fakeArchive.Compress(ctx, in, ts)
}

// TestRenew checks that a compression longer than its lease keeps its
// claim.
func TestRenew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		x := newFakeIndex(&index.Instance{SOPInstanceUID: "1.2.1", Key: "k", Size: 1000, TransferSyntaxUID: uid.ExplicitVRLittleEndian, ReceivedAt: now.Add(-48 * time.Hour)})
		c, err := New(Config{Archive: slowArchive{fakeArchive{x}, 10 * time.Minute}, Index: x, After: time.Hour, Syntax: uid.HTJ2KLossless,
			Owner: "n1", Lease: time.Minute, Rate: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := c.Pass(t.Context()); err != nil || p.Compressed != 1 {
			t.Fatalf("pass %+v, %v", p, err)
		}
		if x.renewed < 25 {
			t.Errorf("a 10-minute compression under a 1-minute lease renewed it %d times", x.renewed)
		}
	})
}
