package dimse

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
)

// memStore is a StoreHandler keeping data sets in memory.
type memStore struct {
	mu   sync.Mutex
	got  map[string][]byte
	ts   map[string]string
	fail error // returned instead of storing, when set
}

func (m *memStore) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	if m.fail != nil {
		return m.fail
	}
	b, err := io.ReadAll(req.Dataset)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.got == nil {
		m.got, m.ts = map[string][]byte{}, map[string]string{}
	}
	m.got[req.SOPInstanceUID] = b
	m.ts[req.SOPInstanceUID] = req.TransferSyntaxUID
	return nil
}

// get returns the data set stored for an instance; the lock orders it with
// Store, since the peer that makes the two wait for each other is another
// process the race detector cannot see.
func (m *memStore) get(sop string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.got[sop]
	return b, ok
}

func (m *memStore) syntax(sop string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ts[sop]
}

type echoOK struct{}

func (echoOK) Echo(context.Context, *Association) error { return nil }

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// pipePair serves one association of s over net.Pipe and dials it with d.
func pipePair(t *testing.T, s *Server, d *Dialer) *Association {
	t.Helper()
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		s.ServeConn(c2)
		close(done)
	}()
	t.Cleanup(func() {
		c1.Close()
		<-done
	})
	a, err := d.DialConn(context.Background(), c1)
	if err != nil {
		t.Fatalf("DialConn: %v", err)
	}
	return a
}

func TestEchoAndStoreOverPipe(t *testing.T) {
	store := &memStore{}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Store: store, Logger: testLogger(t), MaxPDULength: 16384}
	d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Logger: testLogger(t), Proposals: []Proposal{
		{uid.Verification, []string{uid.ImplicitVRLittleEndian}},
		{uid.CTImageStorage, []string{uid.ExplicitVRLittleEndian}},
		{"1.2.3.4.5.6.7", []string{uid.ExplicitVRLittleEndian}},
	}}
	a := pipePair(t, s, d)
	ctx := context.Background()
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if _, ok := a.Context("1.2.3.4.5.6.7", ""); ok {
		t.Error("unknown abstract syntax accepted")
	}
	data := make([]byte, 1<<20+7)
	rand.Read(data)
	st, err := a.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.3", TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
	if err != nil || st != StatusSuccess {
		t.Fatalf("Store = %v, %v", st, err)
	}
	if got, _ := store.get("1.2.3"); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, sent %d", len(got), len(data))
	}
	store.fail = Errorf(StatusOutOfResources, "disk full")
	st, err = a.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.4", TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
	var se *StatusError
	if st != StatusOutOfResources || !errors.As(err, &se) || se.Comment != "disk full" {
		t.Fatalf("Store = %v, %v; want 0xA700 disk full", st, err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("Echo after a failure: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := a.Echo(ctx); err == nil {
		t.Fatal("Echo after release succeeded")
	}
}

func TestRejections(t *testing.T) {
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t),
		AllowCaller: func(ae string, _ net.Addr) bool { return ae != "INTRUDER" }}
	for _, tt := range []struct{ calling, called string }{{"SCU", "OTHER"}, {"INTRUDER", "PACSD"}} {
		c1, c2 := net.Pipe()
		go s.ServeConn(c2)
		d := &Dialer{CallingAE: tt.calling, CalledAE: tt.called, Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
		_, err := d.DialConn(context.Background(), c1)
		if !errors.Is(err, ErrRejected) {
			t.Errorf("%s -> %s: %v, want rejection", tt.calling, tt.called, err)
		}
	}
}

func TestServeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
	a, err := d.Dial(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The association is idle: Shutdown waits for its release until ctx
	// ends, then aborts it.
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
	<-a.Done()
	if !errors.Is(a.Err(), ErrAborted) {
		t.Errorf("association ended with %v", a.Err())
	}
}

// TestIdleTimeout checks that an association which sends nothing is
// aborted after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t), IdleTimeout: time.Minute}
		d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
		a := pipePair(t, s, d)
		if err := a.Echo(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if a.Err() != nil {
			t.Fatalf("aborted early: %v", a.Err())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		<-a.Done()
		if !errors.Is(a.Err(), ErrAborted) {
			t.Errorf("association ended with %v", a.Err())
		}
	})
}

// longMove is a MoveHandler whose sub-operations take a while each, far
// more of them than a shutdown waits for.
type longMove struct{ started chan struct{} }

func (m *longMove) Move(ctx context.Context, a *Association, req *MoveRequest, progress func(SubOperations)) (SubOperations, error) {
	s := SubOperations{Remaining: 10000}
	for range 10000 {
		select {
		case <-req.Stopped():
			return s, nil
		case <-ctx.Done():
			return s, ctx.Err()
		default:
		}
		s.Remaining--
		time.Sleep(10 * time.Millisecond) // a sub-operation in flight
		s.Completed++
		progress(s)
		if s.Completed == 5 {
			close(m.started)
		}
	}
	return s, nil
}

// TestShutdownDeadline: Shutdown with a 200 ms deadline while a long
// C-MOVE runs stops its sub-operations, sends the final response with the
// counts, aborts the association, and returns by the deadline.
func TestShutdownDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &longMove{started: make(chan struct{})}
	s := &Server{AETitle: "PACSD", Move: m, Logger: testLogger(t)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	a, err := qrDialer(nil).Dial(t.Context(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		subs SubOperations
		err  error
	}
	moved := make(chan result, 1)
	go func() {
		subs, err := a.Move(t.Context(), uid.StudyRootQueryRetrieveInformationModelMove, "DEST", ident("STUDY"), nil)
		moved <- result{subs, err}
	}()
	<-m.started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("Shutdown took %v with a 200 ms deadline", took)
	}
	r := <-moved
	var se *StatusError
	if !errors.As(r.err, &se) || se.Status != StatusOutOfResourcesSubOperations {
		t.Fatalf("C-MOVE ended with %+v, %v; want a final response 0xA702", r.subs, r.err)
	}
	if r.subs.Completed < 5 || r.subs.Completed+r.subs.Failed != 10000 {
		t.Errorf("final counts %+v: want the completed ones and the rest failed", r.subs)
	}
	<-a.Done()
	if !errors.Is(a.Err(), ErrAborted) {
		t.Errorf("association ended with %v, want an abort", a.Err())
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
}
