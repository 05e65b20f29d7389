package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// storedDataset returns the data set bytes pacsd archived for an instance.
func storedDataset(t *testing.T, a *audit, sop string) []byte {
	t.Helper()
	_, ds, _ := a.object(t, sop)
	return ds
}

// checkReceived checks that a directory of received Part-10 files holds
// exactly the instances sops, each data set byte for byte as archived.
func checkReceived(t *testing.T, a *audit, files map[string]string, sops []string) {
	t.Helper()
	if len(files) != len(sops) {
		t.Errorf("%d instances received, %d expected", len(files), len(sops))
	}
	for _, sop := range sops {
		path, ok := files[sop]
		if !ok {
			t.Errorf("%s not received", sop)
			continue
		}
		_, got := part10(t, path)
		if !bytes.Equal(got, storedDataset(t, a, sop)) {
			t.Errorf("%s: received data set differs from the archived one", sop)
		}
	}
}

// dirFiles maps SOP Instance UIDs to the Part-10 files in dir.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		m, _ := part10(t, p)
		out[m.MediaStorageSOPInstanceUID] = p
	}
	return out
}

func TestMoveAndGet(t *testing.T) {
	testpeer.Need(t, "movescu", "getscu", "storescu", "storescp")
	dir := t.TempDir()
	studies := writeCorpus(t, dir)
	A, C := studies[0], studies[2]

	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "STORESCP", Dir: t.TempDir(), Args: []string{"+B"}})
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	moveSCUPort, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startPacsd(t, data, "--dimse-addr", "127.0.0.1:"+strconv.Itoa(port),
		"--remote-ae", fmt.Sprintf("STORESCP=%s", scp.Addr),
		"--remote-ae", fmt.Sprintf("PACSD=127.0.0.1:%d", port),
		"--remote-ae", fmt.Sprintf("MOVESCU=127.0.0.1:%d", moveSCUPort))
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	ctx := context.Background()
	a := openArchive(t, data)

	var allA []string
	for _, s := range A.sops {
		allA = append(allA, s...)
	}

	t.Run("movescu to storescp", func(t *testing.T) {
		_, stderr, err := testpeer.Run(ctx, "movescu", "-S", "-aet", "DCMTK", "-aec", "PACSD", "-aem", "STORESCP",
			"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+A.uid, p.host(), p.port())
		if err != nil {
			t.Fatalf("movescu: %v\n%s", err, stderr)
		}
		files, err := scp.Files()
		if err != nil {
			t.Fatal(err)
		}
		checkReceived(t, a, files, allA)
	})

	t.Run("movescu to itself", func(t *testing.T) {
		out := t.TempDir()
		_, stderr, err := testpeer.Run(ctx, "movescu", "-P", "-aet", "MOVESCU", "-aec", "PACSD", "-aem", "MOVESCU",
			"+P", strconv.Itoa(moveSCUPort), "-od", out,
			"-k", "QueryRetrieveLevel=SERIES", "-k", "PatientID=PID002", "-k", "StudyInstanceUID="+C.uid,
			"-k", "SeriesInstanceUID="+C.seriesUID[0], p.host(), p.port())
		if err != nil {
			t.Fatalf("movescu: %v\n%s", err, stderr)
		}
		// movescu writes what it receives in its own encoding; the
		// instance must be there whole.
		got := dirFiles(t, out)
		if _, ok := got[C.sops[0][0]]; !ok || len(got) != 1 {
			t.Fatalf("received %v, want %s", got, C.sops[0][0])
		}
	})

	t.Run("movescu back to pacsd", func(t *testing.T) {
		_, stderr, err := testpeer.Run(ctx, "movescu", "-S", "-aet", "DCMTK", "-aec", "PACSD", "-aem", "PACSD",
			"-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID="+A.uid, "-k", "SeriesInstanceUID="+A.seriesUID[1],
			"-k", `SOPInstanceUID=`+A.sops[1][0]+`\`+A.sops[1][1], p.host(), p.port())
		if err != nil {
			t.Fatalf("movescu: %v\n%s", err, stderr)
		}
		// The instances came back into the archive as themselves.
		for _, sop := range A.sops[1] {
			a.object(t, sop)
		}
	})

	t.Run("getscu", func(t *testing.T) {
		out := t.TempDir()
		_, stderr, err := testpeer.Run(ctx, "getscu", "-S", "+B", "-aet", "DCMTK", "-aec", "PACSD", "-od", out,
			"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+C.uid, p.host(), p.port())
		if err != nil {
			t.Fatalf("getscu: %v\n%s", err, stderr)
		}
		var want []string
		for _, s := range C.sops {
			want = append(want, s...)
		}
		checkReceived(t, a, dirFiles(t, out), want)
	})
}

// TestQueryRetrieveRefusals sends what a confused or broken peer might:
// each gets the failure status it deserves, and pacsd keeps serving.
func TestQueryRetrieveRefusals(t *testing.T) {
	testpeer.Need(t, "storescu", "echoscu")
	dir := t.TempDir()
	studies := writeCorpus(t, dir)
	A := studies[0]

	// A destination that aborts the association at the second instance.
	var mu sync.Mutex
	received := 0
	dest := &dimse.Server{AETitle: "FLAKY", Store: storeFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
		io.Copy(io.Discard, req.Dataset)
		mu.Lock()
		defer mu.Unlock()
		received++
		if received == 2 {
			a.Abort()
			return errors.New("aborted")
		}
		return nil
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go dest.Serve(l)
	t.Cleanup(func() { dest.Close() })

	p := startPacsd(t, t.TempDir(), "--remote-ae", "FLAKY="+l.Addr().String())
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	d := &dimse.Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
	}}
	ctx := context.Background()
	as, err := d.Dial(ctx, p.dimseAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Release(ctx)
	ident := func(kv ...string) *dicom.Dataset {
		ds := &dicom.Dataset{}
		for i := 0; i < len(kv); i += 2 {
			tg, _ := tag.Parse(kv[i])
			info, _ := tag.Lookup(tg)
			e := dicom.Element{Tag: tg, VR: info.VR}
			if kv[i+1] != "" {
				e.Values = []string{kv[i+1]}
			}
			ds.Elements = append(ds.Elements, e)
		}
		return ds
	}
	status := func(err error) dimse.Status {
		var se *dimse.StatusError
		if errors.As(err, &se) {
			return se.Status
		}
		return 0
	}
	for _, c := range []struct {
		name string
		id   *dicom.Dataset
	}{
		{"unknown level", ident("QueryRetrieveLevel", "FRAME", "StudyInstanceUID", "")},
		{"series without its study", ident("QueryRetrieveLevel", "SERIES", "SeriesInstanceUID", "")},
		{"patient level in study root", ident("QueryRetrieveLevel", "PATIENT", "PatientID", "PID001")},
	} {
		t.Run(c.name, func(t *testing.T) {
			var last error
			n := 0
			for _, err := range as.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, c.id) {
				if err != nil {
					last = err
					break
				}
				n++
			}
			if st := status(last); !st.IsFailure() || n != 0 {
				t.Errorf("%d matches, final %v; want a failure status with a reason", n, last)
			}
			t.Logf("answer: %v", last)
		})
	}

	t.Run("unknown move destination", func(t *testing.T) {
		_, err := as.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "NOWHERE", ident("QueryRetrieveLevel", "STUDY", "StudyInstanceUID", A.uid), nil)
		if status(err) != dimse.StatusMoveDestinationUnknown {
			t.Errorf("Move = %v, want 0xA801", err)
		}
	})

	t.Run("destination aborts mid-move", func(t *testing.T) {
		subs, err := as.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "FLAKY", ident("QueryRetrieveLevel", "STUDY", "StudyInstanceUID", A.uid), nil)
		st := status(err)
		if err == nil {
			st = dimse.StatusSuccess
		}
		if subs.Failed == 0 || subs.Completed+subs.Failed != A.instanceCount() || len(subs.FailedInstances) != subs.Failed {
			t.Errorf("counts %+v (status %v), want %d sub-operations with the failed ones listed", subs, st, A.instanceCount())
		}
		if st.IsSuccess() {
			t.Errorf("final status %v after failed sub-operations", st)
		}
	})

	// Still serving.
	if err := as.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := p.dcmtk("echoscu"); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
}

type storeFunc func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error

func (f storeFunc) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	return f(ctx, a, req)
}
