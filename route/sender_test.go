package route_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/route"
)

// statusStore answers each C-STORE with the status set for its instance.
type statusStore struct {
	mu       sync.Mutex
	statuses map[string]dimse.Status
	got      []string
}

func (s *statusStore) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	io.Copy(io.Discard, req.Dataset)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, req.SOPInstanceUID)
	if st := s.statuses[req.SOPInstanceUID]; st != 0 {
		return &dimse.StatusError{Status: st, Comment: "test"}
	}
	return nil
}

type reports struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *reports) shipment(ins []*index.Instance) *route.Shipment {
	r.m = map[string]string{}
	return &route.Shipment{Study: ins[0].StudyInstanceUID, Instances: ins, Report: func(sop, why string) {
		r.mu.Lock()
		r.m[sop] = why
		r.mu.Unlock()
	}}
}

// TestDIMSEStatuses: an instance refused with 0xA9xx or 0xCxxx is
// reported refused, one that failed otherwise is not reported and fails
// the send, not as the destination's fault; the others are sent.
func TestDIMSEStatuses(t *testing.T) {
	arch := newTestArchive(t)
	ins := arch.storeSeries(t, 5, 4<<10)
	store := &statusStore{statuses: map[string]dimse.Status{
		ins[1].SOPInstanceUID: dimse.StatusDataSetMismatch,
		ins[2].SOPInstanceUID: dimse.StatusCannotUnderstand,
		ins[3].SOPInstanceUID: dimse.StatusOutOfResources,
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: "DEST", Store: store}
	go srv.Serve(l)
	defer srv.Close()
	r := &reports{}
	s := r.shipment(ins)
	err = (&route.DIMSE{CallingAE: "PACSD", CalledAE: "DEST", Addr: l.Addr().String(), Datasets: arch}).Send(t.Context(), s)
	if err == nil || errors.Is(err, route.ErrUnreachable) || !strings.Contains(err.Error(), "1 of 5") {
		t.Errorf("Send: %v, want 1 of 5 not stored", err)
	}
	store.mu.Lock()
	if len(store.got) != 5 {
		t.Errorf("%d C-STOREs, want 5", len(store.got))
	}
	store.mu.Unlock()
	want := map[string]string{ins[0].SOPInstanceUID: "", ins[4].SOPInstanceUID: ""}
	for k, v := range want {
		if got, ok := r.m[k]; !ok || got != v {
			t.Errorf("%s: %q %v", k, got, ok)
		}
	}
	for _, i := range []int{1, 2} {
		if why := r.m[ins[i].SOPInstanceUID]; !strings.Contains(why, "0x") {
			t.Errorf("instance %d: %q, want refused with the status", i, why)
		}
	}
	if _, ok := r.m[ins[3].SOPInstanceUID]; ok {
		t.Error("an instance that failed with 0xA700 was reported")
	}

	// Nothing listening: the destination is unreachable.
	addr := l.Addr().String()
	srv.Close()
	if err := (&route.DIMSE{CallingAE: "PACSD", CalledAE: "DEST", Addr: addr, Datasets: arch}).Send(t.Context(), r.shipment(ins)); !errors.Is(err, route.ErrUnreachable) {
		t.Errorf("Send to a closed port: %v, want ErrUnreachable", err)
	}
}

// TestWebResponses: STOW-RS batches respect MaxBatchBytes, carry the
// token, and the answer sorts the instances; server failures and
// refused credentials make the destination unreachable.
// TestWebTooLarge: a destination that answers 413 to a request of more
// than one instance gets them one at a time; an instance it refuses
// alone is reported refused, the others sent.
func TestWebTooLarge(t *testing.T) {
	arch := newTestArchive(t)
	ins := arch.storeSeries(t, 5, 8<<10)
	var mu sync.Mutex
	var batches [][]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		var sops []string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			fm, _, err := dicom.ReadFileMeta(bufio.NewReader(p))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			io.Copy(io.Discard, p)
			sops = append(sops, fm.MediaStorageSOPInstanceUID)
		}
		mu.Lock()
		batches = append(batches, sops)
		mu.Unlock()
		if len(sops) != 1 || sops[0] == ins[2].SOPInstanceUID {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		fmt.Fprintf(w, `{"00081199":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["%s"]}}]}}`, sops[0])
	}))
	defer srv.Close()
	r := &reports{}
	web := &route.Web{Name: "W", URL: srv.URL, Objects: arch, MaxBatchBytes: 4 * ins[0].Size}
	if err := web.Send(t.Context(), r.shipment(ins)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The instances differ a little in size, so how many a halved
	// request holds varies: each request after a refused one carries at
	// most half its bytes, or one instance, and every instance is sent
	// alone once in the end.
	size := map[string]int64{}
	for _, in := range ins {
		size[in.SOPInstanceUID] = in.Size
	}
	bytesOf := func(sops []string) (n int64) {
		for _, sop := range sops {
			n += size[sop]
		}
		return n
	}
	if len(batches) == 0 || len(batches[0]) < 2 {
		t.Fatalf("batches %v: want a first request of several instances", batches)
	}
	alone := map[string]int{}
	for i, b := range batches {
		if len(b) == 1 {
			alone[b[0]]++
		}
		if i > 0 && len(batches[i-1]) > 1 && len(b) > 1 && bytesOf(b) > bytesOf(batches[i-1])/2 {
			t.Errorf("request %d of %d bytes after a refused one of %d: not halved (batches %v)", i, bytesOf(b), bytesOf(batches[i-1]), batches)
		}
	}
	for _, in := range ins {
		if alone[in.SOPInstanceUID] != 1 {
			t.Errorf("%s sent alone %d times, want once (batches %v)", in.SOPInstanceUID, alone[in.SOPInstanceUID], batches)
		}
	}
	for i, in := range ins {
		why, ok := r.m[in.SOPInstanceUID]
		switch {
		case i == 2 && !strings.Contains(why, "413"):
			t.Errorf("instance 2, too large alone: %q, want refused with 413", why)
		case i != 2 && (!ok || why != ""):
			t.Errorf("instance %d: %q %v, want sent", i, why, ok)
		}
	}
}

func TestWebResponses(t *testing.T) {
	arch := newTestArchive(t)
	ins := arch.storeSeries(t, 6, 8<<10)
	var mu sync.Mutex
	var batches []int
	seen := 0 // parts received in earlier batches
	status := http.StatusAccepted
	conflict := false // every instance failed: the first 0xA700, the others 0x0110
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if status >= 500 {
			http.Error(w, "down", status)
			return
		}
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		var failed, ok []string
		n := 0
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			io.Copy(io.Discard, p)
			mu.Lock()
			sop := ins[seen+n].SOPInstanceUID
			mu.Unlock()
			n++
			switch {
			case conflict && sop == ins[0].SOPInstanceUID:
				failed = append(failed, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":["%s"]},"00081197":{"vr":"US","Value":[42752]}}`, sop))
			case conflict:
				failed = append(failed, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":["%s"]},"00081197":{"vr":"US","Value":[272]}}`, sop))
			case sop == ins[1].SOPInstanceUID:
				failed = append(failed, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":["%s"]},"00081197":{"vr":"US","Value":[43264]}}`, sop))
			case sop == ins[4].SOPInstanceUID:
				failed = append(failed, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":["%s"]},"00081197":{"vr":"US","Value":[272]}}`, sop))
			default:
				ok = append(ok, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":["%s"]}}`, sop))
			}
		}
		mu.Lock()
		batches = append(batches, n)
		seen += n
		mu.Unlock()
		w.Header().Set("Content-Type", "application/dicom+json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"00081198":{"vr":"SQ","Value":[%s]},"00081199":{"vr":"SQ","Value":[%s]}}`, strings.Join(failed, ","), strings.Join(ok, ","))
	}))
	defer srv.Close()
	r := &reports{}
	web := &route.Web{Name: "W", URL: srv.URL, Token: "s3cret", Objects: arch, MaxBatchBytes: 2*ins[0].Size + 1}
	err := web.Send(t.Context(), r.shipment(ins))
	if err == nil || errors.Is(err, route.ErrUnreachable) || !strings.Contains(err.Error(), "1 of 6") {
		t.Errorf("Send: %v, want 1 of 6 not stored", err)
	}
	if fmt.Sprint(batches) != "[2 2 2]" {
		t.Errorf("batches %v, want [2 2 2]", batches)
	}
	if why := r.m[ins[1].SOPInstanceUID]; !strings.Contains(why, "0xA900") {
		t.Errorf("refused instance: %q", why)
	}
	if _, ok := r.m[ins[4].SOPInstanceUID]; ok {
		t.Error("an instance failed with 0x0110 was reported")
	}
	for _, i := range []int{0, 2, 3, 5} {
		if why, ok := r.m[ins[i].SOPInstanceUID]; !ok || why != "" {
			t.Errorf("instance %d: %q %v", i, why, ok)
		}
	}

	// 409 Conflict: a FailureReason refuses the instance for good, but
	// for one of resources (0xA7xx).
	mu.Lock()
	batches, status, seen, conflict = nil, http.StatusConflict, 0, true
	mu.Unlock()
	err = web.Send(t.Context(), r.shipment(ins))
	if err == nil || errors.Is(err, route.ErrUnreachable) || !strings.Contains(err.Error(), "1 of 6") {
		t.Errorf("Send answered 409: %v, want 1 of 6 not stored", err)
	}
	if _, ok := r.m[ins[0].SOPInstanceUID]; ok {
		t.Error("an instance failed with 0xA700 in a 409 was reported")
	}
	for _, in := range ins[1:] {
		if why := r.m[in.SOPInstanceUID]; !strings.Contains(why, "409") || !strings.Contains(why, "0x0110") {
			t.Errorf("instance failed with 0x0110 in a 409: %q, want refused", why)
		}
	}
	mu.Lock()
	conflict = false
	mu.Unlock()

	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{{"bad token", "wrong", 0}, {"server error", "s3cret", http.StatusServiceUnavailable}} {
		mu.Lock()
		batches, status, seen = nil, tc.status, 0
		mu.Unlock()
		web := &route.Web{Name: "W", URL: srv.URL, Token: tc.token, Objects: arch}
		err := web.Send(t.Context(), r.shipment(ins))
		if !errors.Is(err, route.ErrUnreachable) {
			t.Errorf("%s: %v, want ErrUnreachable", tc.name, err)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("%s: the token is in the error: %v", tc.name, err)
		}
	}
}

// assocStore records the associations C-STOREs come on.
type assocStore struct {
	mu     sync.Mutex
	assocs map[*dimse.Association]int
}

func (s *assocStore) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	io.Copy(io.Discard, req.Dataset)
	s.mu.Lock()
	s.assocs[a]++
	s.mu.Unlock()
	return nil
}

// TestDIMSEKeepOpen: sends that follow each other share an association
// unless KeepOpen says not to.
func TestDIMSEKeepOpen(t *testing.T) {
	arch := newTestArchive(t)
	ins := arch.storeSeries(t, 3, 4<<10)
	for _, tc := range []struct {
		keep time.Duration
		want int
	}{{0, 1}, {-1, 3}} {
		store := &assocStore{assocs: map[*dimse.Association]int{}}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &dimse.Server{AETitle: "DEST", Store: store}
		go srv.Serve(l)
		d := &route.DIMSE{CallingAE: "PACSD", CalledAE: "DEST", Addr: l.Addr().String(), Datasets: arch, KeepOpen: tc.keep}
		r := &reports{}
		for _, in := range ins {
			if err := d.Send(t.Context(), r.shipment([]*index.Instance{in})); err != nil {
				t.Fatal(err)
			}
		}
		store.mu.Lock()
		if len(store.assocs) != tc.want {
			t.Errorf("KeepOpen %v: %d associations for 3 sends, want %d", tc.keep, len(store.assocs), tc.want)
		}
		store.mu.Unlock()
		srv.Close()
	}
}

// abortSecond is a destination that aborts an association when a second
// instance arrives on it, as one that closes idle associations may do as
// pacsd reuses one.
type abortSecond struct{ assocStore }

func (s *abortSecond) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	s.mu.Lock()
	n := s.assocs[a]
	s.mu.Unlock()
	if n == 1 {
		a.Abort()
		return errors.New("aborted")
	}
	return s.assocStore.Store(ctx, a, req)
}

// TestDIMSEIdleEnded: an idle association that the destination ends as
// it is reused is not a failed attempt; the instance goes on a new one.
func TestDIMSEIdleEnded(t *testing.T) {
	arch := newTestArchive(t)
	ins := arch.storeSeries(t, 2, 4<<10)
	store := &abortSecond{assocStore{assocs: map[*dimse.Association]int{}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: "DEST", Store: store}
	go srv.Serve(l)
	defer srv.Close()
	d := &route.DIMSE{CallingAE: "PACSD", CalledAE: "DEST", Addr: l.Addr().String(), Datasets: arch, KeepOpen: time.Minute}
	r := &reports{}
	for _, in := range ins {
		if err := d.Send(t.Context(), r.shipment([]*index.Instance{in})); err != nil {
			t.Fatalf("Send of %s: %v", in.SOPInstanceUID, err)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.assocs) != 2 {
		t.Errorf("%d associations stored to, want 2", len(store.assocs))
	}
}

// TestDIMSEManyClasses: a study of more SOP classes than one association
// has presentation contexts for is sent whole, on one association after
// another.
func TestDIMSEManyClasses(t *testing.T) {
	arch := newTestArchive(t)
	dir := t.TempDir()
	classes := uid.StorageClasses()[:130]
	study := dcmgen.Study{UID: "1.2.826.0.1.3680043.10.543.11.1"}
	var files []dcmgen.File
	for i, class := range classes {
		f, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%d.dcm", i)), &dcmgen.Instance{Study: study, SOPClassUID: class, Rows: 4, Columns: 4})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	ins := arch.storeFiles(t, files)
	store := &assocStore{assocs: map[*dimse.Association]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: "DEST", Store: store}
	go srv.Serve(l)
	defer srv.Close()
	r := &reports{}
	d := &route.DIMSE{CallingAE: "PACSD", CalledAE: "DEST", Addr: l.Addr().String(), Datasets: arch, KeepOpen: -1}
	if err := d.Send(t.Context(), r.shipment(ins)); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if why, ok := r.m[in.SOPInstanceUID]; !ok || why != "" {
			t.Errorf("%s (%s): reported %v %q, want sent", in.SOPInstanceUID, uid.Name(in.SOPClassUID), ok, why)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	n := 0
	for _, c := range store.assocs {
		n += c
	}
	if n != len(ins) || len(store.assocs) != 2 {
		t.Errorf("%d C-STOREs on %d associations, want %d on 2", n, len(store.assocs), len(ins))
	}
}
