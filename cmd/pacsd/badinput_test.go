package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// dataset returns the data set (no File Meta Information) of a generated
// CT instance with the given UIDs.
func dataset(t *testing.T, study, series, sop string) []byte {
	t.Helper()
	var b bytes.Buffer
	in := &dcmgen.Instance{
		Patient:        dcmgen.Patient{Name: "Bad^Input", ID: "BAD"},
		Study:          dcmgen.Study{UID: study},
		Series:         dcmgen.Series{UID: series, Modality: "CT"},
		SOPInstanceUID: sop,
		Rows:           16, Columns: 16,
	}
	if _, err := dcmgen.WriteFile(&b, in); err != nil {
		t.Fatal(err)
	}
	_, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()[n:]
}

// dial associates with p proposing CT Image Storage, Verification and an
// abstract syntax nobody supports, over a connection the test can also
// write raw bytes to.
func dial(t *testing.T, p *instance) (*dimse.Association, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", p.dimseAddr)
	if err != nil {
		t.Fatal(err)
	}
	d := &dimse.Dialer{CallingAE: "BADACTOR", CalledAE: "PACSD", Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
		{AbstractSyntax: uid.CTImageStorage, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		{AbstractSyntax: "1.2.826.0.1.3680043.9.9999.1", TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
	}}
	a, err := d.DialConn(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Abort() })
	return a, conn
}

// TestBadInput sends pacsd what a broken or hostile peer might: each gets
// the right answer (reject, abort or failure status), nothing is stored
// for any of it, and pacsd answers dcmtk's echoscu afterwards.
func TestBadInput(t *testing.T) {
	testpeer.Need(t, "echoscu")
	data := t.TempDir()
	p := startPacsd(t, data)
	ctx := context.Background()

	alive := func(t *testing.T) {
		t.Helper()
		if out, err := p.dcmtk("echoscu"); err != nil {
			t.Fatalf("pacsd no longer answers C-ECHO: %v\n%s", err, out)
		}
	}
	// closed waits for pacsd to close a raw connection, after an A-ABORT
	// if it sends one, and returns what it sent.
	closed := func(t *testing.T, conn net.Conn) []byte {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(conn)
		if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("pacsd did not close the connection: %v", err)
		}
		return b
	}

	t.Run("random bytes", func(t *testing.T) {
		for _, first := range []byte{0x99, 0x01, 0x04} {
			conn, err := net.Dial("tcp", p.dimseAddr)
			if err != nil {
				t.Fatal(err)
			}
			junk := make([]byte, 4096)
			rand.Read(junk)
			junk[0] = first
			conn.Write(junk)
			conn.(*net.TCPConn).CloseWrite()
			got := closed(t, conn)
			if first == 0x99 && (len(got) != 10 || got[0] != 0x07) {
				t.Errorf("unknown PDU type: got % x, want an A-ABORT", got)
			}
			conn.Close()
		}
		alive(t)
	})

	t.Run("truncated P-DATA", func(t *testing.T) {
		a, conn := dial(t, p)
		// A P-DATA-TF announcing 1000 bytes, of which 10 arrive.
		hdr := []byte{0x04, 0, 0, 0, 0x03, 0xE8, 0, 0, 0x03, 0xE4, 3, 0x00, 1, 2, 3, 4}
		conn.Write(hdr)
		conn.(*net.TCPConn).CloseWrite()
		select {
		case <-a.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("association still up")
		}
		alive(t)
	})

	t.Run("oversized PDU length", func(t *testing.T) {
		a, conn := dial(t, p)
		conn.Write([]byte{0x04, 0, 0xFF, 0xFF, 0xFF, 0xF0})
		select {
		case <-a.Done():
			if err := a.Err(); !errors.Is(err, dimse.ErrAborted) || !strings.Contains(err.Error(), "peer") {
				t.Errorf("association ended with %v, want an A-ABORT from pacsd", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("association still up")
		}
		alive(t)
	})

	t.Run("data set that is not DICOM", func(t *testing.T) {
		a, _ := dial(t, p)
		junk := make([]byte, 10000)
		rand.Read(junk)
		copy(junk, "MZ\x90\x00") // a Windows executable, say
		st, err := a.Store(ctx, &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.3.4", TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(junk)})
		if st != dimse.StatusCannotUnderstand {
			t.Errorf("Store = %v, %v; want 0xC000", st, err)
		}
		// The association survives a refused instance.
		if err := a.Echo(ctx); err != nil {
			t.Errorf("Echo after the failure: %v", err)
		}
		alive(t)
	})

	t.Run("abstract syntax not supported", func(t *testing.T) {
		a, _ := dial(t, p)
		for _, pc := range a.Contexts() {
			switch pc.AbstractSyntax {
			case "1.2.826.0.1.3680043.9.9999.1":
				if pc.Accepted() || pc.Result != 3 {
					t.Errorf("unknown abstract syntax: result %d, want 3 (abstract syntax not supported)", pc.Result)
				}
			default:
				if !pc.Accepted() {
					t.Errorf("%s rejected with the unknown one", pc.AbstractSyntax)
				}
			}
		}
		if err := a.Echo(ctx); err != nil {
			t.Errorf("Echo: %v", err)
		}
	})

	t.Run("UIDs that would be paths", func(t *testing.T) {
		a, _ := dial(t, p)
		for _, c := range []struct{ study, series, sop string }{
			{"../../escape", "1.2.3", "1.2.3.4"},
			{"1.2.3", "1.2.3/../../x", "1.2.3.4"},
			{"1.2.3", "1.2.3.5", "..%2f..%2fx"},
			{"1.2.3", "1..2", "1.2.3.4"},
		} {
			st, err := a.Store(ctx, &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: c.sop,
				TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(dataset(t, c.study, c.series, c.sop))})
			if st != dimse.StatusCannotUnderstand {
				t.Errorf("%+v: Store = %v, %v; want 0xC000", c, st, err)
			}
		}
		alive(t)
	})

	t.Run("data set contradicting its command", func(t *testing.T) {
		a, _ := dial(t, p)
		st, err := a.Store(ctx, &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.3.4.5",
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(dataset(t, "1.2.3", "1.2.3.5", "1.2.3.4.6"))})
		if st != dimse.StatusDataSetMismatch {
			t.Errorf("Store = %v, %v; want 0xA900", st, err)
		}
	})

	p.stop()
	a := openArchive(t, data)
	c, err := a.db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Instances != 0 {
		t.Errorf("%d instances indexed from bad input", c.Instances)
	}
	filepath.WalkDir(filepath.Join(data, "objects"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("object stored from bad input: %s", path)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(data, "escape")); err == nil {
		t.Error("a UID escaped the storage root")
	}
}
