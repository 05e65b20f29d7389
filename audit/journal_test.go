package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openT(t *testing.T, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	return j
}

func storeOf(i int, patient, studyUID, caller string) *Message {
	return InstancesTransferred(t0.Add(time.Duration(i)*time.Minute), ActionCreate, Success,
		Participant{UserID: caller, NetworkAccessPoint: "10.0.0.7"}, pacsd,
		Patient{ID: patient}, Study{UID: studyUID, SOPClasses: map[string]int{"1.2.840.10008.5.1.4.1.1.2": 1}})
}

// writeJournal logs n stores and closes the journal.
func writeJournal(t *testing.T, dir string, n int, opts Options) Head {
	t.Helper()
	j, err := Open(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		j.Log(storeOf(i, fmt.Sprintf("P%d", i%3), fmt.Sprintf("1.2.3.%d", i%5), []string{"CT01", "MR01"}[i%2]))
	}
	if err := j.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return j.Head()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestJournalVerify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, file string)
		useHead bool
		want    string // in the error; "" for none
	}{
		{"intact", func(*testing.T, string) {}, true, ""},
		{"middle line removed", func(t *testing.T, f string) {
			l := readLines(t, f)
			writeLines(t, f, slices.Delete(l, 3, 4))
		}, false, "record 5 follows record 3"},
		{"record edited", func(t *testing.T, f string) {
			l := readLines(t, f)
			l[2] = strings.Replace(l[2], "CT01", "XX01", 1)
			writeLines(t, f, l)
		}, false, "line 4 (record 4): the hash of the previous record"},
		{"record added", func(t *testing.T, f string) {
			l := readLines(t, f)
			writeLines(t, f, slices.Insert(l, 2, l[1]))
		}, false, "record 2 follows record 2"},
		{"first line removed", func(t *testing.T, f string) {
			writeLines(t, f, readLines(t, f)[1:])
		}, false, "record 2 follows record 0"},
		{"garbage line", func(t *testing.T, f string) {
			l := readLines(t, f)
			writeLines(t, f, slices.Insert(l, 5, "hello\n"))
		}, false, "not a record"},
		{"tail removed, no head", func(t *testing.T, f string) {
			l := readLines(t, f)
			writeLines(t, f, l[:len(l)-3])
		}, false, ""},
		{"tail removed, head known", func(t *testing.T, f string) {
			l := readLines(t, f)
			writeLines(t, f, l[:len(l)-3])
		}, true, "records were removed from the end"},
		{"last record edited, head known", func(t *testing.T, f string) {
			l := readLines(t, f)
			l[len(l)-2] = strings.Replace(l[len(l)-2], "P0", "P9", 1)
			writeLines(t, f, l)
		}, true, "it was edited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			heads := FileHead{Path: filepath.Join(t.TempDir(), "head")}
			head := writeJournal(t, dir, 10, Options{Heads: heads})
			if head.Seq != 10 {
				t.Fatalf("head %v", head)
			}
			stored, err := heads.LoadHead(t.Context())
			if err != nil || stored != head {
				t.Fatalf("stored head %v, %v; journal head %v", stored, err, head)
			}
			tc.tamper(t, filepath.Join(dir, fileName(1)))
			var hp *Head
			if tc.useHead {
				hp = &head
			}
			rep, err := Verify(t.Context(), dir, hp)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "intact" && (rep.Records != 10 || rep.Head != head || rep.Files != 1) {
					t.Errorf("report %+v", rep)
				}
				return
			}
			if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrBroken mentioning %q", err, tc.want)
			}
		})
	}
}

func TestJournalRotatesAndContinues(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, 20, Options{MaxFileSize: 2000})
	writeJournal(t, dir, 3, Options{MaxFileSize: 2000})
	head := writeJournal(t, dir, 2, Options{MaxFileSize: 2000})
	names, _ := journalFiles(dir)
	if len(names) < 3 {
		t.Fatalf("files %v", names)
	}
	rep, err := Verify(t.Context(), dir, &head)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 25 || rep.Files != len(names) {
		t.Errorf("report %+v", rep)
	}
	// A removed file in the middle breaks the chain.
	os.Remove(filepath.Join(dir, names[1]))
	if _, err := Verify(t.Context(), dir, nil); !errors.Is(err, ErrBroken) {
		t.Errorf("after removing %s: %v", names[1], err)
	}
}

func TestJournalTornTailAndMissingRecords(t *testing.T) {
	dir := t.TempDir()
	heads := FileHead{Path: filepath.Join(t.TempDir(), "head")}
	writeJournal(t, dir, 4, Options{Heads: heads})
	f := filepath.Join(dir, fileName(1))

	// A crash in the middle of a write leaves half a line.
	af, _ := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
	af.WriteString(`{"seq":5,"time":"20`)
	af.Close()
	if _, err := Verify(t.Context(), dir, nil); err != nil {
		t.Fatalf("a torn last line is not a break while it may be being written: %v", err)
	}
	head := writeJournal(t, dir, 1, Options{Heads: heads})
	if head.Seq != 5 {
		t.Fatalf("head after reopening %v", head)
	}
	if _, err := Verify(t.Context(), dir, &head); err != nil {
		t.Fatal(err)
	}

	// Records removed from the end while pacsd was stopped: Open says
	// so in the journal.
	l := readLines(t, f)
	writeLines(t, f, l[:len(l)-3])
	head = writeJournal(t, dir, 0, Options{Heads: heads})
	var alerts []Record
	for r, err := range Search(t.Context(), dir, Filter{Event: EventSecurityAlert.Code}) {
		if err != nil {
			t.Fatal(err)
		}
		alerts = append(alerts, r)
	}
	if len(alerts) != 1 || !strings.Contains(alerts[0].XML, "records were removed") || alerts[0].Seq != 4 {
		t.Fatalf("alerts %+v", alerts)
	}
}

func TestSearch(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, 30, Options{})
	for _, tc := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 30},
		{Filter{Patient: "P1"}, 10},
		{Filter{Study: "1.2.3.4"}, 6},
		{Filter{User: "MR01"}, 15},
		{Filter{User: "PACSD"}, 30},
		{Filter{Patient: "P1", User: "CT01"}, 5},
		{Filter{Since: t0.Add(25 * time.Minute)}, 5},
		{Filter{Patient: "P7"}, 0},
		{Filter{Event: EventQuery.Code}, 0},
	} {
		t.Run(fmt.Sprintf("%+v", tc.f), func(t *testing.T) {
			n := 0
			var last uint64
			for r, err := range Search(t.Context(), dir, tc.f) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Seq <= last || !strings.HasPrefix(r.XML, "<AuditMessage>") {
					t.Fatalf("record %+v", r)
				}
				last = r.Seq
				n++
			}
			if n != tc.want {
				t.Errorf("%d records, want %d", n, tc.want)
			}
		})
	}
}

// slowHeads blocks SaveHead until released, so the queue fills.
type slowHeads struct {
	release chan struct{}
}

func (s *slowHeads) SaveHead(ctx context.Context, h Head) error {
	<-s.release
	return nil
}
func (s *slowHeads) LoadHead(context.Context) (Head, error) { return Head{}, nil }

func TestJournalLostMessagesAreRecorded(t *testing.T) {
	dir := t.TempDir()
	heads := &slowHeads{release: make(chan struct{})}
	// Without lingering, the writer is stuck in SaveHead after its first
	// message, and the queue of two overflows at once.
	j := openT(t, dir, Options{Heads: heads, QueueSize: 2, QueueWait: time.Millisecond, Linger: -1})
	start := time.Now()
	for i := range 50 {
		j.Log(storeOf(i, "P", "1.2", "CT01"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Log blocked %v with a stuck journal", d)
	}
	close(heads.release)
	if err := j.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Every message is either in the journal or counted in an alert:
	// one alert for each run of losses (a busy machine may make two).
	var stores, alerts, lost int
	var texts []string
	lostText := regexp.MustCompile(`(\d+) audit messages? lost`)
	for r, err := range Search(t.Context(), dir, Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		switch r.Event {
		case EventInstancesTransferred.Code:
			stores++
		case EventSecurityAlert.Code:
			alerts++
			texts = append(texts, r.XML)
			m := lostText.FindStringSubmatch(r.XML)
			if m == nil {
				t.Errorf("an alert that counts no loss: %s", r.XML)
				continue
			}
			n, _ := strconv.Atoi(m[1])
			lost += n
		}
	}
	if alerts == 0 || stores == 50 || stores+lost != 50 {
		t.Errorf("%d stores, %d alerts counting %d lost; want the 50 messages accounted for: %s", stores, alerts, lost, texts)
	}
	if _, err := Verify(t.Context(), dir, nil); err != nil {
		t.Error(err)
	}
}

func TestJournalConcurrentLogAndSearch(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{MaxFileSize: 8 << 10})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				j.Log(storeOf(i, fmt.Sprintf("W%d", w), "1.2", "CT01"))
			}
		})
	}
	// Reading while the journal writes sees whole records only.
	for range 5 {
		for _, err := range Search(t.Context(), dir, Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if err := j.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(t.Context(), dir, nil)
	if err != nil || rep.Records != 400 || j.Head() != rep.Head {
		t.Fatalf("report %+v, head %v, %v", rep, j.Head(), err)
	}
	n := 0
	for range Search(t.Context(), dir, Filter{Patient: "W2"}) {
		n++
	}
	if n != 100 {
		t.Errorf("%d records of W2", n)
	}
	b, _ := os.ReadFile(filepath.Join(dir, fileName(1)))
	if bytes.Contains(b, []byte("\n\n")) {
		t.Error("empty line in the journal")
	}
}

func TestParseHead(t *testing.T) {
	h := Head{Seq: 42}
	h.Hash[0] = 0xab
	got, err := ParseHead(h.String())
	if err != nil || got != h {
		t.Fatalf("ParseHead(%q) = %v, %v", h.String(), got, err)
	}
	for _, bad := range []string{"", "42", "x:00", "42:zz"} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) succeeded", bad)
		}
	}
}

func BenchmarkLog(b *testing.B) {
	j, err := Open(context.Background(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close(context.Background())
	m := storeOf(0, "P", "1.2", "CT01")
	b.ResetTimer()
	for b.Loop() {
		c := *m
		j.Log(&c)
	}
	j.Sync(context.Background())
}

// countingHeads counts the heads saved, one per synced batch.
type countingHeads struct {
	mu    sync.Mutex
	saves int
}

func (c *countingHeads) SaveHead(context.Context, Head) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saves++
	return nil
}
func (c *countingHeads) LoadHead(context.Context) (Head, error) { return Head{}, nil }

// TestJournalLingers checks that messages logged one by one, as single
// C-STOREs log them, share syncs, and that Sync does not wait for the
// lingering to end.
func TestJournalLingers(t *testing.T) {
	heads := &countingHeads{}
	j := openT(t, t.TempDir(), Options{Heads: heads, Linger: time.Hour})
	for i := range 20 {
		j.Log(storeOf(i, "P", "1.2", "CT01"))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := j.Sync(ctx); err != nil {
		t.Fatalf("Sync waited for the linger: %v", err)
	}
	heads.mu.Lock()
	saves := heads.saves
	heads.mu.Unlock()
	if saves != 1 {
		t.Errorf("20 messages logged together took %d syncs, want 1", saves)
	}
	if h := j.Head(); h.Seq != 20 {
		t.Errorf("head after Sync at %d, want 20", h.Seq)
	}
}
