package route_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/storage/file"
)

// testArchive is a real archive over files and SQLite, for the senders
// to read from.
type testArchive struct {
	*archive.Service
	db *sqlindex.DB
	// datasets holds each stored instance's data set bytes, without File
	// Meta Information, by SOP Instance UID.
	datasets map[string][]byte
}

func newTestArchive(t *testing.T) *testArchive {
	t.Helper()
	return newForwardingArchive(t, nil)
}

// newForwardingArchive returns a test archive that queues what it stores
// as fwd says, in the instance's transaction, in the index's outbox.
func newForwardingArchive(t *testing.T, fwd archive.Forwarder) *testArchive {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	os.MkdirAll(filepath.Join(dir, "objects"), 0o755)
	st, err := file.New(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	svc := archive.New(archive.Config{Store: st, Index: db, AETitle: "PACSD", Forwarder: fwd})
	return &testArchive{Service: svc, db: db, datasets: map[string][]byte{}}
}

// storeSeries archives a series of n instances of about size bytes and
// returns their records.
func (a *testArchive) storeSeries(t *testing.T, n int, size int64) []*index.Instance {
	t.Helper()
	files, err := dcmgen.WriteSeries(t.TempDir(), n, size, dcmgen.Instance{})
	if err != nil {
		t.Fatal(err)
	}
	return a.storeFiles(t, files)
}

// storeFiles archives files and returns their records.
func (a *testArchive) storeFiles(t *testing.T, files []dcmgen.File) []*index.Instance {
	t.Helper()
	var out []*index.Instance
	for _, f := range files {
		meta, ds := readPart10(t, f.Path)
		res, err := a.Store(t.Context(), &archive.StoreRequest{TransferSyntaxUID: meta.TransferSyntaxUID, CallingAE: "CT01", CalledAE: "PACSD", Dataset: bytes.NewReader(ds)})
		if err != nil {
			t.Fatal(err)
		}
		a.datasets[res.Instance.SOPInstanceUID] = ds
		out = append(out, res.Instance)
	}
	return out
}

func readPart10(t *testing.T, path string) (dicom.FileMeta, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return meta, b[n:]
}

// checkReceived compares what storescp received with what was stored:
// every instance, the data set bytes identical.
func (a *testArchive) checkReceived(t *testing.T, scp *testpeer.StoreSCP, ins []*index.Instance) {
	t.Helper()
	files, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		path, ok := files[in.SOPInstanceUID]
		if !ok {
			t.Errorf("%s did not arrive at %s", in.SOPInstanceUID, scp.AET)
			continue
		}
		if _, ds := readPart10(t, path); !bytes.Equal(ds, a.datasets[in.SOPInstanceUID]) {
			t.Errorf("%s arrived changed at %s", in.SOPInstanceUID, scp.AET)
		}
	}
}

// receptions counts the instances storescp wrote, each time it wrote one.
func receptions(t *testing.T, scp *testpeer.StoreSCP) int {
	b, err := os.ReadFile(scp.Process().Log())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "Received Store Request")
}

// lateProxy is a destination that is down, nothing listening on its
// port, until up forwards its port to addr.
type lateProxy struct {
	addr string
	l    net.Listener
	wg   sync.WaitGroup
}

func newLateProxy(t *testing.T) *lateProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lateProxy{addr: l.Addr().String()}
	l.Close()
	t.Cleanup(func() {
		if p.l != nil {
			p.l.Close()
		}
		p.wg.Wait()
	})
	return p
}

func (p *lateProxy) up(t *testing.T, to string) {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.l = l
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() {
				defer c.Close()
				d, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer d.Close()
				go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, d)
			})
		}
	})
}

// toAll is an archive.Forwarder that sends every instance at once to
// each of its destinations.
type toAll struct {
	to   []string
	wake func(...string)
}

func (f *toAll) Forward(in *index.Instance, callingAE, calledAE, source string) []index.Forward {
	var out []index.Forward
	for _, d := range f.to {
		out = append(out, index.Forward{Destination: d, Due: time.Now(), Priority: int(route.Normal)})
	}
	return out
}

func (f *toAll) Queued(fs []index.Forward) {
	for _, fw := range fs {
		f.wake(fw.Destination)
	}
}

// TestForwardToStoreSCP stores 100 instances forwarded, through the
// index's outbox, to three storescp destinations: one up, one down until
// 10 s later, one that refuses connections throughout. The first gets
// everything at once, the second everything once it is up; each
// instance arrives once, its data set bytes unchanged.
func TestForwardToStoreSCP(t *testing.T) {
	testpeer.Need(t, "storescp")
	fwd := &toAll{to: []string{"UP", "LATE", "DEAD"}}
	arch := newForwardingArchive(t, fwd)
	up := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "UP", Args: []string{"+B"}})
	late := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "LATE", Args: []string{"+B"}})
	lateAddr := newLateProxy(t)
	dead := newLateProxy(t) // never up

	q := arch.db.Outbox()
	sender := func(ae, addr string) *route.DIMSE {
		return &route.DIMSE{CallingAE: "PACSD", CalledAE: ae, Addr: addr, Datasets: arch}
	}
	r := route.NewRouter(route.Config{Queue: q, Instances: arch.db, Owner: "n1", Destinations: []route.Destination{
		{Name: "UP", Sender: sender("UP", up.Addr)},
		{Name: "LATE", Sender: sender("LATE", lateAddr.addr), Backoff: time.Second},
		{Name: "DEAD", Sender: sender("DEAD", dead.addr)},
	}})
	fwd.wake = r.Wake
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	start := time.Now()
	ins := arch.storeSeries(t, 100, 16<<10)
	stored := time.Now()
	waitFor(t, 10*time.Second, func() bool { return receptions(t, up) >= len(ins) })
	if d := time.Since(stored); d > 3*time.Second {
		t.Errorf("the working destination got everything %s after the last store (%s after the first), with the others down", d, time.Since(start))
	}
	time.Sleep(10*time.Second - time.Since(start))
	if n := receptions(t, late); n != 0 {
		t.Fatalf("LATE received %d while down", n)
	}
	lateAddr.up(t, late.Addr)
	waitFor(t, 30*time.Second, func() bool { return receptions(t, late) >= len(ins) })
	time.Sleep(500 * time.Millisecond) // anything more would arrive now
	arch.checkReceived(t, up, ins)
	arch.checkReceived(t, late, ins)
	for _, scp := range []*testpeer.StoreSCP{up, late} {
		if n := receptions(t, scp); n != len(ins) {
			t.Errorf("%s received %d instances, want %d exactly", scp.AET, n, len(ins))
		}
	}
	stats, _ := q.Stats(ctx)
	for _, s := range stats {
		switch s.Destination {
		case "DEAD":
			if s.Pending+s.InFlight != 1 || !strings.Contains(s.LastError, "connection refused") {
				t.Errorf("DEAD: %+v", s)
			}
		default:
			if s.Done24h != 1 || s.Pending+s.InFlight+s.Failed != 0 {
				t.Errorf("%s: %+v", s.Destination, s)
			}
		}
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not so within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOrthanc sends one study to Orthanc over DIMSE with Storage
// Commitment, which Orthanc reports on an association of its own to
// pacsd's DIMSE server, and another by STOW-RS to its DICOMweb plugin,
// verified by a QIDO-RS count; then compares what Orthanc keeps with
// what was stored, byte for byte.
func TestOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc")
	arch := newTestArchive(t)
	commitments := &route.Commitments{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: "PACSD", CommitResult: commitments}
	go srv.Serve(l)
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{DICOMweb: true,
		Modalities: map[string]testpeer.Modality{"pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: port}}})

	viaDIMSE := arch.storeSeries(t, 5, 64<<10)
	viaWeb := arch.storeSeries(t, 5, 64<<10)
	for _, tc := range []struct {
		name   string
		sender route.Sender
		ins    []*index.Instance
	}{
		{"DIMSE", &route.DIMSE{CallingAE: "PACSD", CalledAE: o.AET, Addr: o.DICOMAddr, Datasets: arch, Commit: true, Commitments: commitments, CommitTimeout: 30 * time.Second}, viaDIMSE},
		{"STOW-RS", &route.Web{Name: "ORTHANC_WEB", URL: o.DICOMwebURL, Objects: arch, Verify: true, MaxBatchBytes: 200 << 10}, viaWeb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reported := map[string]string{}
			var mu sync.Mutex
			s := &route.Shipment{Study: tc.ins[0].StudyInstanceUID, Priority: route.Normal, Instances: tc.ins, Report: func(sop, refused string) {
				mu.Lock()
				reported[sop] = refused
				mu.Unlock()
			}}
			if err := tc.sender.Send(t.Context(), s); err != nil {
				t.Fatalf("Send: %v\n%s", err, o.Process().LogTail(20))
			}
			for _, in := range tc.ins {
				why, ok := reported[in.SOPInstanceUID]
				if !ok || why != "" {
					t.Errorf("%s reported %v %q", in.SOPInstanceUID, ok, why)
				}
				var found []string
				if err := o.PostJSON(t.Context(), "/tools/find", map[string]any{"Level": "Instance", "Query": map[string]string{"SOPInstanceUID": in.SOPInstanceUID}}, &found); err != nil || len(found) != 1 {
					t.Fatalf("find %s in Orthanc: %v %v", in.SOPInstanceUID, found, err)
				}
				b := orthancFile(t, o, found[0])
				meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
				if err != nil {
					t.Fatal(err)
				}
				if meta.TransferSyntaxUID != in.TransferSyntaxUID || !bytes.Equal(b[n:], arch.datasets[in.SOPInstanceUID]) {
					t.Errorf("%s kept changed by Orthanc", in.SOPInstanceUID)
				}
			}
		})
	}
}

func orthancFile(t *testing.T, o *testpeer.Orthanc, id string) []byte {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/instances/%s/file", o.URL, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET file: %s %v", resp.Status, err)
	}
	return b
}
