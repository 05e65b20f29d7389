package recompresstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/recompress"
)

// Index is the index under test: the state of compression, and the
// records it is about.
type Index interface {
	recompress.Index
	Original(ctx context.Context, key string) (*index.Original, error)
}

// Handle is a handle on the index under test: Put records instances.
type Handle struct {
	Index
	Put func(ctx context.Context, req *index.PutRequest) (*index.Change, error)
}

// Opener opens n handles on a new, empty index, with clock now, as n
// nodes would.
type Opener func(t *testing.T, now func() time.Time, n int) []Handle

// clock is a clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var epoch = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

func record(n int, ts string, received time.Time, version string) *index.Instance {
	sop := fmt.Sprintf("1.2.7.1.1.%d", n)
	return &index.Instance{SOPInstanceUID: sop, SOPClassUID: uid.CTImageStorage, SeriesInstanceUID: "1.2.7.1.1", StudyInstanceUID: "1.2.7.1",
		Key: "1.2.7.1/1.2.7.1.1/" + sop + "_" + version + ".dcm", Size: 1000, SHA256: "aa", TransferSyntaxUID: ts, ReceivedAt: received}
}

func put(t *testing.T, x Handle, in *index.Instance, o *index.Original) {
	t.Helper()
	if _, err := x.Put(t.Context(), &index.PutRequest{Instance: in, Original: o}); err != nil {
		t.Fatal(err)
	}
}

func sops(ts []index.CompressTask) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.SOPInstanceUID)
	}
	return out
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	t.Run("ClaimDueOldestFirst", func(t *testing.T) {
		c := &clock{t: epoch}
		x := open(t, c.now, 1)[0]
		ctx := t.Context()
		put(t, x, record(1, uid.ExplicitVRLittleEndian, epoch.Add(-2*time.Hour), "a"), nil)
		put(t, x, record(2, uid.ImplicitVRLittleEndian, epoch.Add(-3*time.Hour), "a"), nil)
		put(t, x, record(3, uid.JPEGLSLossless, epoch.Add(-4*time.Hour), "a"), nil)
		put(t, x, record(4, uid.ExplicitVRLittleEndian, epoch.Add(-time.Minute), "a"), nil)
		put(t, x, record(5, uid.ExplicitVRBigEndian, epoch.Add(-4*time.Hour), "a"), nil)
		got, err := x.Claim(ctx, "n1", epoch.Add(-time.Hour), 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"1.2.7.1.1.2", "1.2.7.1.1.1"}; !slices.Equal(sops(got), want) {
			t.Fatalf("claimed %q, want %q (uncompressed little endian, older than the cutoff, oldest first)", sops(got), want)
		}
		if again, err := x.Claim(ctx, "n2", epoch.Add(-time.Hour), 10, time.Minute); err != nil || len(again) != 0 {
			t.Errorf("claimed again while leased: %q, %v", sops(again), err)
		}
		c.add(2 * time.Minute)
		again, err := x.Claim(ctx, "n2", epoch.Add(-time.Hour), 10, time.Minute)
		if err != nil || len(again) != 2 {
			t.Errorf("after the lease ran out another node claimed %q, %v; want both", sops(again), err)
		}
		// A renewed claim outlives its first lease; a claim lost
		// cannot be renewed.
		if err := x.Renew(ctx, "n2", again[0], time.Hour); err != nil {
			t.Errorf("Renew: %v", err)
		}
		if err := x.Renew(ctx, "n1", got[0], time.Hour); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("Renew of a claim another node took: %v", err)
		}
		c.add(30 * time.Minute)
		if more, _ := x.Claim(ctx, "n3", epoch.Add(-time.Hour), 10, time.Minute); len(more) != 1 || more[0] == again[0] {
			t.Errorf("after the lease of one of two claims ran out, claimed %q; want the other, not the renewed %s", sops(more), again[0].SOPInstanceUID)
		}
		c.add(-30 * time.Minute)
		// The first owner's claims are gone: its Done changes nothing.
		if err := x.Done(ctx, "n1", got[0]); err != nil {
			t.Fatal(err)
		}
		if more, _ := x.Claim(ctx, "n3", epoch.Add(-time.Hour), 10, time.Minute); len(more) != 0 {
			t.Errorf("a stale owner's Done released %q", sops(more))
		}
	})
	t.Run("SkipAndRelease", func(t *testing.T) {
		c := &clock{t: epoch}
		x := open(t, c.now, 1)[0]
		ctx := t.Context()
		a, b := record(1, uid.ExplicitVRLittleEndian, epoch.Add(-2*time.Hour), "a"), record(2, uid.ExplicitVRLittleEndian, epoch.Add(-2*time.Hour), "a")
		put(t, x, a, nil)
		put(t, x, b, nil)
		got, err := x.Claim(ctx, "n1", epoch, 10, time.Hour)
		if err != nil || len(got) != 2 {
			t.Fatalf("claimed %q, %v", sops(got), err)
		}
		if err := x.Skip(ctx, "n1", got[0], "12 bits allocated"); err != nil {
			t.Fatal(err)
		}
		if err := x.Release(ctx, "n1", got[1], epoch.Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if s, err := x.Stats(ctx); err != nil || s.Skipped != 1 {
			t.Errorf("stats %+v, %v; want 1 skipped", s, err)
		}
		c.add(5 * time.Minute)
		if more, _ := x.Claim(ctx, "n2", epoch, 10, time.Hour); len(more) != 0 {
			t.Errorf("claimed %q before the retry time, or one skipped", sops(more))
		}
		c.add(10 * time.Minute)
		more, err := x.Claim(ctx, "n2", epoch, 10, time.Hour)
		if err != nil || !slices.Equal(sops(more), []string{got[1].SOPInstanceUID}) {
			t.Errorf("after the retry time claimed %q, %v; want %s", sops(more), err, got[1].SOPInstanceUID)
		}
		// A new version of a skipped instance is due again.
		skipped := *a
		if got[0].SOPInstanceUID == b.SOPInstanceUID {
			skipped = *b
		}
		skipped.Key = skipped.Key[:len(skipped.Key)-len("a.dcm")] + "b.dcm"
		put(t, x, &skipped, nil)
		if again, err := x.Claim(ctx, "n3", epoch, 10, time.Hour); err != nil || !slices.Equal(sops(again), []string{skipped.SOPInstanceUID}) {
			t.Errorf("new version of a skipped instance: claimed %q, %v", sops(again), err)
		}
	})
	t.Run("Original", func(t *testing.T) {
		c := &clock{t: epoch}
		x := open(t, c.now, 1)[0]
		ctx := t.Context()
		in := record(1, uid.ExplicitVRLittleEndian, epoch.Add(-2*time.Hour), "a")
		put(t, x, in, nil)
		got, err := x.Claim(ctx, "n1", epoch, 10, time.Hour)
		if err != nil || len(got) != 1 {
			t.Fatalf("claimed %q, %v", sops(got), err)
		}
		comp := *in
		comp.Key, comp.Size, comp.SHA256, comp.TransferSyntaxUID = in.Key[:len(in.Key)-len("a.dcm")]+"b.dcm", 400, "bb", uid.HTJ2KLossless
		o := &index.Original{Key: comp.Key, SHA256: in.SHA256, TransferSyntaxUID: in.TransferSyntaxUID, Size: in.Size}
		put(t, x, &comp, o)
		if err := x.Done(ctx, "n1", got[0]); err != nil {
			t.Fatal(err)
		}
		if r, err := x.Original(ctx, comp.Key); err != nil || r.SHA256 != "aa" || r.Size != 1000 || r.TransferSyntaxUID != uid.ExplicitVRLittleEndian {
			t.Errorf("original %+v, %v", r, err)
		}
		s, err := x.Stats(ctx)
		if err != nil || s.Instances != 1 || s.OriginalBytes != 1000 || s.StoredBytes != 400 || s.Saved() != 600 {
			t.Errorf("stats %+v, %v; want 1 instance, 600 bytes saved", s, err)
		}
		if more, _ := x.Claim(ctx, "n1", epoch, 10, time.Hour); len(more) != 0 {
			t.Errorf("claimed a compressed instance: %q", sops(more))
		}
		// A new version stored uncompressed describes no original.
		again := *in
		again.Key = in.Key[:len(in.Key)-len("a.dcm")] + "c.dcm"
		put(t, x, &again, nil)
		if _, err := x.Original(ctx, comp.Key); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("original of a replaced version: %v", err)
		}
		if s, err := x.Stats(ctx); err != nil || s.Instances != 0 {
			t.Errorf("stats %+v, %v after the instance was replaced", s, err)
		}
	})
	t.Run("TwoNodes", func(t *testing.T) {
		c := &clock{t: epoch}
		nodes := open(t, c.now, 2)
		for i := range 40 {
			put(t, nodes[0], record(i, uid.ExplicitVRLittleEndian, epoch.Add(-time.Hour), "a"), nil)
		}
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		for n, x := range nodes {
			owner := fmt.Sprintf("node%d", n)
			wg.Go(func() {
				for {
					got, err := x.Claim(t.Context(), owner, epoch, 3, time.Hour)
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, g := range got {
						if other, ok := seen[g.SOPInstanceUID]; ok {
							t.Errorf("%s claimed by %s and %s", g.SOPInstanceUID, other, owner)
						}
						seen[g.SOPInstanceUID] = owner
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != 40 {
			t.Errorf("%d instances claimed, want 40", len(seen))
		}
	})
}
