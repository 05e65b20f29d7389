package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// testChangeFeed records, replaces and deletes instances and reads back
// the feed: one entry each, in the order they were made, with their UIDs.
func testChangeFeed(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	if last, err := db.LastChange(ctx); err != nil || last != 0 {
		t.Fatalf("LastChange of an empty index = %d, %v; want 0", last, err)
	}
	h := with(t, patientHeader(t, "P", "", "Doe"), tag.Modality, "CT")
	put(t, db, instance("1.1", "1.10", "1.100", base, h))
	put(t, db, instance("1.2", "1.10", "1.100", base, h))
	put(t, db, instance("1.1", "1.10", "1.100", base.Add(time.Second), h))
	if err := db.Delete(ctx, "1.2"); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, "1.2"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	want := []index.FeedEntry{
		{Seq: 1, Kind: index.Created, SOPInstanceUID: "1.1"},
		{Seq: 2, Kind: index.Created, SOPInstanceUID: "1.2"},
		{Seq: 3, Kind: index.Replaced, SOPInstanceUID: "1.1"},
		{Seq: 4, Kind: index.Deleted, SOPInstanceUID: "1.2"},
	}
	got, err := db.Changes(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		w := want[i]
		if e.Seq != w.Seq || e.Kind != w.Kind || e.SOPInstanceUID != w.SOPInstanceUID ||
			e.SeriesInstanceUID != "1.10" || e.StudyInstanceUID != "1.100" {
			t.Errorf("entry %d = %+v, want %+v in series 1.10, study 1.100", i, e, w)
		}
		if e.Time.IsZero() || e.Time.Location() != time.UTC {
			t.Errorf("entry %d time %v, want a UTC time", i, e.Time)
		}
	}
	if page, err := db.Changes(ctx, 1, 2); err != nil || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 {
		t.Errorf("Changes(1, 2) = %+v, %v; want entries 2 and 3", page, err)
	}
	if page, err := db.Changes(ctx, 4, 10); err != nil || len(page) != 0 {
		t.Errorf("Changes after the last = %+v, %v; want none", page, err)
	}
	if last, err := db.LastChange(ctx); err != nil || last != 4 {
		t.Errorf("LastChange = %d, %v; want 4", last, err)
	}
}

// testChangeFeedWait checks that WaitChange returns at once when the feed
// has what it asks for, wakes when a put adds it, and ends with its
// context.
func testChangeFeedWait(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	h := patientHeader(t, "P", "", "Doe")
	put(t, db, instance("1.1", "1.10", "1.100", base, h))
	if err := db.WaitChange(ctx, 0); err != nil {
		t.Fatalf("WaitChange(0): %v", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- db.WaitChange(ctx, 1) }()
	select {
	case err := <-woke:
		t.Fatalf("WaitChange(1) returned before a change: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	put(t, db, instance("1.2", "1.10", "1.100", base, h))
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("WaitChange(1): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitChange(1) still waits after a put")
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := db.WaitChange(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitChange past its deadline: %v", err)
	}
}

func testChangeFeedConcurrent(t *testing.T, db *sqlindex.DB) {
	ChangeFeedWriters(t, db)
}

// ChangeFeedWriters puts instances from 8 writers at once, spread over
// nodes (handles on one database), while a reader follows the feed on
// the first: every batch it reads must continue where the last ended,
// and the feed must end with one entry per put, each instance created
// once and replaced once.
func ChangeFeedWriters(t *testing.T, nodes ...*sqlindex.DB) {
	const writers, each = 8, 25
	ctx := t.Context()
	h := with(t, patientHeader(t, "P", "", "Doe"), tag.Modality, "CT")
	done := make(chan struct{})
	seen := map[string][]index.ChangeKind{}
	var last int64
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			batch, err := nodes[0].Changes(ctx, last, 37)
			if err != nil {
				t.Errorf("Changes after %d: %v", last, err)
				return
			}
			for _, e := range batch {
				if e.Seq != last+1 {
					t.Errorf("entry %d follows %d", e.Seq, last)
					return
				}
				last = e.Seq
				seen[e.SOPInstanceUID] = append(seen[e.SOPInstanceUID], e.Kind)
			}
			if len(batch) == 0 {
				select {
				case <-done:
					if n, err := nodes[0].LastChange(ctx); err != nil || n == last {
						return
					}
				case <-time.After(time.Millisecond):
				}
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		db := nodes[w%len(nodes)]
		wg.Go(func() {
			for round := range 2 {
				for i := range each {
					sop := fmt.Sprintf("1.%d.%d", w, i)
					in := instance(sop, fmt.Sprintf("1.10.%d", w), "1.100", base.Add(time.Duration(round)*time.Second), h)
					if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); err != nil {
						t.Errorf("put %s: %v", sop, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(done)
	reader.Wait()
	if want := int64(2 * writers * each); last != want {
		t.Errorf("the reader read %d entries, want %d", last, want)
	}
	for w := range writers {
		for i := range each {
			sop := fmt.Sprintf("1.%d.%d", w, i)
			if k := seen[sop]; len(k) != 2 || k[0] != index.Created || k[1] != index.Replaced {
				t.Errorf("%s: entries %v, want created then replaced", sop, k)
			}
		}
	}
}
