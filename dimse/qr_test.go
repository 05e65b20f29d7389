package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
)

// qrServer is a fake Query/Retrieve SCP: Find yields n matches (forever
// when n < 0), Move reports progress, Get stores data sets back.
type qrServer struct {
	n         int
	cancelled chan struct{}
	get       [][]byte
}

func (q *qrServer) Find(ctx context.Context, a *Association, req *FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		if req.Identifier.First(tag.QueryRetrieveLevel) == "BAD" {
			yield(nil, Errorf(StatusDataSetMismatch, "unknown level"))
			return
		}
		for i := 0; q.n < 0 || i < q.n; i++ {
			if ctx.Err() != nil {
				if errors.Is(context.Cause(ctx), ErrCancelled) {
					close(q.cancelled)
				}
				return
			}
			ds := &dicom.Dataset{Elements: []dicom.Element{
				{Tag: tag.PatientName, VR: "PN", Values: []string{fmt.Sprintf("Müller^%d", i)}},
				{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{fmt.Sprintf("1.2.3.%d", i)}},
			}}
			if !yield(ds, nil) {
				return
			}
		}
	}
}

func (q *qrServer) Move(ctx context.Context, a *Association, req *MoveRequest, progress func(SubOperations)) (SubOperations, error) {
	if req.Destination != "DEST" {
		return SubOperations{}, Errorf(StatusMoveDestinationUnknown, "unknown destination %s", req.Destination)
	}
	s := SubOperations{Remaining: 3}
	for i := 0; i < 3; i++ {
		s.Remaining--
		if i == 1 {
			s.Failed++
			s.FailedInstances = append(s.FailedInstances, "1.2.3.1")
		} else {
			s.Completed++
		}
		progress(s)
	}
	return s, nil
}

func (q *qrServer) Get(ctx context.Context, a *Association, req *GetRequest, progress func(SubOperations)) (SubOperations, error) {
	s := SubOperations{Remaining: len(q.get)}
	for i, data := range q.get {
		s.Remaining--
		st, err := a.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: fmt.Sprintf("9.9.%d", i),
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
		if err != nil || !st.IsSuccess() {
			s.Failed++
		} else {
			s.Completed++
		}
		progress(s)
	}
	return s, nil
}

func qrDialer(store StoreHandler) *Dialer {
	ts := []string{uid.ExplicitVRLittleEndian}
	return &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Store: store, Proposals: []Proposal{
		{uid.Verification, ts},
		{uid.StudyRootQueryRetrieveInformationModelFind, ts},
		{uid.StudyRootQueryRetrieveInformationModelMove, ts},
		{uid.StudyRootQueryRetrieveInformationModelGet, ts},
		{uid.CTImageStorage, ts},
	}}
}

func ident(level string) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{level}},
		{Tag: tag.PatientName, VR: "PN"},
		{Tag: tag.StudyInstanceUID, VR: "UI"},
	}}
}

func TestFindOverPipe(t *testing.T) {
	q := &qrServer{n: 3}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Find: q, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	var got []string
	for m, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("STUDY")) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.First(tag.PatientName))
	}
	if fmt.Sprint(got) != "[Müller^0 Müller^1 Müller^2]" {
		t.Errorf("matches %q", got)
	}
	var final error
	for _, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("BAD")) {
		final = err
	}
	var se *StatusError
	if !errors.As(final, &se) || se.Status != StatusDataSetMismatch || se.Comment != "unknown level" {
		t.Errorf("bad level: %v", final)
	}
}

func TestFindCancel(t *testing.T) {
	q := &qrServer{n: -1, cancelled: make(chan struct{})}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Find: q, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	n := 0
	for _, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("STUDY")) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 5 {
			break // sends C-CANCEL
		}
	}
	<-q.cancelled
	// The association carries on after the cancelled operation.
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("Echo after C-CANCEL: %v", err)
	}
}

func TestMoveOverPipe(t *testing.T) {
	s := &Server{AETitle: "PACSD", Move: &qrServer{}, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	var seen []SubOperations
	subs, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "DEST", ident("STUDY"), func(s SubOperations) { seen = append(seen, s) })
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusSubOperationsWarning || subs.Completed != 2 || subs.Failed != 1 || fmt.Sprint(subs.FailedInstances) != "[1.2.3.1]" {
		t.Fatalf("Move = %+v, %v", subs, err)
	}
	if len(seen) == 0 {
		t.Error("no pending responses")
	}
	if _, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "ELSEWHERE", ident("STUDY"), nil); !errors.As(err, &se) || se.Status != StatusMoveDestinationUnknown {
		t.Errorf("unknown destination: %v", err)
	}
}

// collect is a StoreHandler keeping what it receives.
type collect struct {
	mu  sync.Mutex
	got [][]byte
}

func (c *collect) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	b, err := io.ReadAll(req.Dataset)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, b)
	return nil
}

func TestGetOverPipe(t *testing.T) {
	q := &qrServer{get: [][]byte{bytes.Repeat([]byte{1}, 100000), bytes.Repeat([]byte{2}, 10)}}
	s := &Server{AETitle: "PACSD", Get: q, Logger: testLogger(t)}
	c := &collect{}
	a := pipePair(t, s, qrDialer(c))
	subs, err := a.Get(context.Background(), uid.StudyRootQueryRetrieveInformationModelGet, ident("STUDY"), nil)
	if err != nil || subs.Completed != 2 {
		t.Fatalf("Get = %+v, %v", subs, err)
	}
	if len(c.got) != 2 || !bytes.Equal(c.got[0], q.get[0]) || !bytes.Equal(c.got[1], q.get[1]) {
		t.Errorf("received %d data sets", len(c.got))
	}
}

// getCanceller is a C-GET SCU's StoreHandler that cancels the C-GET when
// the n-th C-STORE sub-operation arrives, while that one is in flight:
// its response goes out after the C-CANCEL.
type getCanceller struct {
	collect
	n      int
	cancel context.CancelFunc
	scp    *stoppingGet
}

func (g *getCanceller) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	g.mu.Lock()
	if len(g.got)+1 == g.n {
		g.cancel()
		// The C-CANCEL reaches the SCP before this response does.
		<-<-g.scp.stopped
	}
	g.mu.Unlock()
	return g.collect.Store(ctx, a, req)
}

// stoppingGet is a GetHandler as scp's: one C-STORE sub-operation per
// data set, none started once the request is stopped. It hands its
// request's Stopped channel to the test.
type stoppingGet struct {
	data    [][]byte
	stopped chan (<-chan struct{})
}

func (q *stoppingGet) Get(ctx context.Context, a *Association, req *GetRequest, progress func(SubOperations)) (SubOperations, error) {
	q.stopped <- req.Stopped()
	s := SubOperations{Remaining: len(q.data)}
	for i, data := range q.data {
		select {
		case <-req.Stopped():
			return s, nil
		default:
		}
		s.Remaining--
		st, err := a.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: fmt.Sprintf("9.9.%d", i),
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
		if err != nil || !st.IsSuccess() {
			s.Failed++
			s.FailedInstances = append(s.FailedInstances, fmt.Sprintf("9.9.%d", i))
		} else {
			s.Completed++
		}
		progress(s)
	}
	return s, nil
}

// TestGetCancel: a C-CANCEL during a C-GET used to cancel the handler's
// context, which aborted the association while a C-STORE sub-operation
// waited for its response. Now the sub-operation in flight is answered
// and counted, the final C-GET-RSP says Cancel with the counts (PS3.4
// C.4.3.3.1), and the association carries on.
func TestGetCancel(t *testing.T) {
	data := make([][]byte, 10)
	for i := range data {
		data[i] = bytes.Repeat([]byte{byte(i)}, 5000)
	}
	q := &stoppingGet{data: data, stopped: make(chan (<-chan struct{}), 1)}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Get: q, Logger: testLogger(t)}
	ctx, cancel := context.WithCancel(t.Context())
	c := &getCanceller{n: 3, cancel: cancel, scp: q}
	a := pipePair(t, s, qrDialer(c))
	subs, err := a.Get(ctx, uid.StudyRootQueryRetrieveInformationModelGet, ident("STUDY"), nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusCancel {
		t.Fatalf("Get = %+v, %v; want status Cancel", subs, err)
	}
	if subs.Completed != 3 || subs.Failed != 0 || subs.Remaining != 7 {
		t.Errorf("final counts %+v; want 3 completed, 0 failed, 7 remaining", subs)
	}
	if n := len(c.got); n != 3 {
		t.Errorf("SCU received %d instances, want 3", n)
	}
	if err := a.Echo(t.Context()); err != nil {
		t.Fatalf("Echo after the cancelled C-GET: %v", err)
	}
}

// inFlightMove is a MoveHandler whose sub-operations each wait for a
// signal, so that a test can cancel while one is in flight.
type inFlightMove struct {
	total   int
	started chan int      // receives the number of each sub-operation as it starts
	proceed chan struct{} // lets the one in flight complete
	ctxErr  chan error    // the handler's ctx error when the sub-operation in flight ends
	stopped chan (<-chan struct{})
}

func (m *inFlightMove) Move(ctx context.Context, a *Association, req *MoveRequest, progress func(SubOperations)) (SubOperations, error) {
	m.stopped <- req.Stopped()
	s := SubOperations{Remaining: m.total}
	for i := range m.total {
		select {
		case <-req.Stopped():
			return s, nil
		default:
		}
		s.Remaining--
		m.started <- i + 1
		<-m.proceed
		m.ctxErr <- ctx.Err()
		s.Completed++
		progress(s)
	}
	return s, nil
}

// TestMoveCancelCountsInFlight: a C-CANCEL during a C-MOVE used to cut the
// sub-operation in flight short and count it failed although the
// destination had it. Now the handler's context lives on, the
// sub-operation completes and counts as completed.
func TestMoveCancelCountsInFlight(t *testing.T) {
	m := &inFlightMove{total: 10, started: make(chan int), proceed: make(chan struct{}), ctxErr: make(chan error, 10), stopped: make(chan (<-chan struct{}), 1)}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Move: m, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		subs SubOperations
		err  error
	}
	done := make(chan result, 1)
	go func() {
		subs, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "DEST", ident("STUDY"), nil)
		done <- result{subs, err}
	}()
	stopped := <-m.stopped
	for range 3 {
		<-m.started
		m.proceed <- struct{}{}
	}
	<-m.started // the fourth is in flight
	cancel()    // C-CANCEL
	<-stopped
	m.proceed <- struct{}{}
	r := <-done
	var se *StatusError
	if !errors.As(r.err, &se) || se.Status != StatusCancel {
		t.Fatalf("Move = %+v, %v; want status Cancel", r.subs, r.err)
	}
	if r.subs.Completed != 4 || r.subs.Failed != 0 || r.subs.Remaining != 6 {
		t.Errorf("final counts %+v; want 4 completed, 0 failed, 6 remaining", r.subs)
	}
	for range 4 {
		if err := <-m.ctxErr; err != nil {
			t.Errorf("handler's context ended during a sub-operation: %v", err)
		}
	}
	if err := a.Echo(t.Context()); err != nil {
		t.Fatalf("Echo after the cancelled C-MOVE: %v", err)
	}
}

// failingFind is a FindHandler whose query fails once its context ends,
// as a database query cut short does.
type failingFind struct{ started chan struct{} }

func (f *failingFind) Find(ctx context.Context, a *Association, req *FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		close(f.started)
		<-ctx.Done()
		yield(nil, fmt.Errorf("query: %w", ctx.Err()))
	}
}

// TestFindCancelStatus: a C-CANCEL that cut a query short used to be
// answered with the query's error (0xC001); the final response says
// Cancel.
func TestFindCancelStatus(t *testing.T) {
	f := &failingFind{started: make(chan struct{})}
	s := &Server{AETitle: "PACSD", Find: f, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	rs, err := a.request(t.Context(), cmdset.CFindRQ, uid.StudyRootQueryRetrieveInformationModelFind, "", ident("STUDY"))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.close()
	<-f.started
	if err := rs.sendCancel(); err != nil {
		t.Fatal(err)
	}
	r, err := rs.next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st := responseStatus(r.cmd); st != StatusCancel {
		t.Errorf("final status %v, want Cancel", st)
	}
}

// TestGetStorageContexts: the storage contexts of a C-GET SCU are
// answered so that every instance can be delivered. A context proposing
// a compressed syntax before the uncompressed ones (getscu +xs) gets an
// uncompressed one, into which any stored syntax converts, unless another
// context of its class already takes one; contexts of classes the SCU
// only sends keep the proposer's first choice.
func TestGetStorageContexts(t *testing.T) {
	jpeg, explicit, implicit := uid.JPEGLossless, uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian
	tests := []struct {
		name      string
		proposals []Proposal
		noGet     bool // the Dialer asks for no SCP role
		want      []string
	}{
		{"compressed first in one context", []Proposal{{uid.CTImageStorage, []string{jpeg, explicit, implicit}}}, false,
			[]string{explicit}},
		{"implicit only", []Proposal{{uid.CTImageStorage, []string{implicit}}}, false,
			[]string{implicit}},
		{"a context per syntax", []Proposal{{uid.CTImageStorage, []string{jpeg}}, {uid.CTImageStorage, []string{implicit}}}, false,
			[]string{jpeg, implicit}},
		{"uncompressed context later", []Proposal{{uid.CTImageStorage, []string{jpeg, explicit}}, {uid.CTImageStorage, []string{implicit, explicit}}}, false,
			[]string{jpeg, implicit}},
		{"two mixed contexts", []Proposal{{uid.CTImageStorage, []string{jpeg, explicit}}, {uid.CTImageStorage, []string{uid.JPEGLSLossless, implicit}}}, false,
			[]string{explicit, uid.JPEGLSLossless}},
		{"compressed only", []Proposal{{uid.MRImageStorage, []string{uid.JPEG2000Lossless}}}, false,
			[]string{uid.JPEG2000Lossless}},
		{"storage without the SCP role", []Proposal{{uid.CTImageStorage, []string{jpeg, explicit}}}, true,
			[]string{jpeg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{AETitle: "PACSD", Get: &qrServer{}, Store: &memStore{}, Logger: testLogger(t)}
			d := qrDialer(&collect{})
			if tt.noGet {
				d.Store = nil
			}
			d.Proposals = append([]Proposal{{uid.StudyRootQueryRetrieveInformationModelGet, []string{explicit}}}, tt.proposals...)
			a := pipePair(t, s, d)
			var got []string
			for _, pc := range a.Contexts() {
				if uid.IsStorage(pc.AbstractSyntax) {
					got = append(got, pc.TransferSyntax)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("accepted %v, want %v", got, tt.want)
			}
		})
	}
}
