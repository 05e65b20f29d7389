package scp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// memObjects is an archive of data sets in memory, opened as stored.
type memObjects map[string][]byte // data set by SOP Instance UID

func (m memObjects) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	if ts != in.TransferSyntaxUID {
		// As the archive does for what it did not compress itself.
		return dicom.FileMeta{}, nil, fmt.Errorf("asked to convert: %w", dicom.ErrUnsupported)
	}
	return dicom.FileMeta{TransferSyntaxUID: ts}, io.NopCloser(bytes.NewReader(m[in.SOPInstanceUID])), nil
}

// instance makes a CT data set of bits allocated bits and stores it in
// objs in syntax ts.
func instance(t *testing.T, objs memObjects, bits int, ts string) *index.Instance {
	t.Helper()
	var f bytes.Buffer
	in := &dcmgen.Instance{Rows: 32, Columns: 24, BitsAllocated: bits}
	if _, err := dcmgen.WriteFile(&f, in); err != nil {
		t.Fatal(err)
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(f.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	var ds bytes.Buffer
	if _, err := codec.New(codec.Options{}).Transcode(context.Background(), &ds, bytes.NewReader(f.Bytes()[n:]), meta.TransferSyntaxUID, ts, codec.TranscodeOptions{}); err != nil {
		t.Fatal(err)
	}
	objs[meta.MediaStorageSOPInstanceUID] = ds.Bytes()
	return &index.Instance{SOPInstanceUID: meta.MediaStorageSOPInstanceUID, SOPClassUID: meta.MediaStorageSOPClassUID, TransferSyntaxUID: ts}
}

func TestOpenConverts(t *testing.T) {
	objs := memObjects{}
	s := &QR{Objects: objs}
	jpegLS := instance(t, objs, 16, uid.JPEGLSLossless)
	native12 := instance(t, objs, 16, uid.ExplicitVRLittleEndian)
	native8 := instance(t, objs, 8, uid.ExplicitVRLittleEndian)
	tests := []struct {
		name     string
		in       *index.Instance
		accepted []string
		want     string // transfer syntax sent; "" for an error
		lossy    bool
	}{
		{"as stored", jpegLS, []string{uid.ImplicitVRLittleEndian, uid.JPEGLSLossless}, uid.JPEGLSLossless, false},
		{"decompressed", jpegLS, []string{uid.JPEGBaseline8Bit, uid.ImplicitVRLittleEndian}, uid.ImplicitVRLittleEndian, false},
		{"lossless before lossy", native12, []string{uid.JPEG2000, uid.RLELossless}, uid.RLELossless, false},
		{"lossy when nothing else", native8, []string{uid.JPEGBaseline8Bit}, uid.JPEGBaseline8Bit, true},
		// 12 bits do not fit JPEG Baseline: the next syntax is tried.
		{"next lossy syntax", native12, []string{uid.JPEGBaseline8Bit, uid.JPEG2000}, uid.JPEG2000, true},
		{"nothing convertible", native12, []string{uid.JPEGBaseline8Bit}, "", false},
		{"nothing accepted", native12, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.open(context.Background(), tt.in, tt.accepted)
			if tt.want == "" {
				if err == nil {
					out.Dataset.Close()
					t.Fatalf("sent in %s, want an error", uid.Name(out.TransferSyntax))
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer out.Dataset.Close()
			if out.TransferSyntax != tt.want {
				t.Fatalf("sent in %s, want %s", uid.Name(out.TransferSyntax), uid.Name(tt.want))
			}
			data, err := io.ReadAll(out.Dataset)
			if err != nil {
				t.Fatal(err)
			}
			syntax, _ := uid.LookupTransferSyntax(out.TransferSyntax)
			ds, err := dicom.Parse(data, syntax)
			if err != nil {
				t.Fatal(err)
			}
			sop := ds.First(tag.SOPInstanceUID)
			if sop != out.SOPInstanceUID {
				t.Errorf("data set's SOP Instance UID %s, request's %s", sop, out.SOPInstanceUID)
			}
			if tt.lossy {
				if sop == tt.in.SOPInstanceUID || sop != codec.LossyInstanceUID(tt.in.SOPInstanceUID, tt.want) {
					t.Errorf("lossy copy has SOP Instance UID %s", sop)
				}
				if ds.First(tag.LossyImageCompression) != "01" || ds.First(tag.LossyImageCompressionMethod) == "" ||
					!strings.Contains(ds.String(tag.LossyImageCompressionRatio), ".") {
					t.Errorf("Lossy Image Compression %q, ratio %q, method %q", ds.First(tag.LossyImageCompression),
						ds.String(tag.LossyImageCompressionRatio), ds.String(tag.LossyImageCompressionMethod))
				}
			} else if sop != tt.in.SOPInstanceUID {
				t.Errorf("SOP Instance UID changed to %s", sop)
			}
		})
	}
}

// trackedObjects is memObjects counting what is opened and closed.
type trackedObjects struct {
	memObjects
	mu             sync.Mutex
	opened, closed int
}

func (o *trackedObjects) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	fm, r, err := o.memObjects.OpenDataset(ctx, in, ts)
	if err != nil {
		return fm, nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opened++
	return fm, &trackedReader{ReadCloser: r, o: o}, nil
}

type trackedReader struct {
	io.ReadCloser
	o *trackedObjects
}

func (r *trackedReader) Close() error {
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	r.o.closed++
	return r.ReadCloser.Close()
}

// listIndex is an Index of a list of instances.
type listIndex []*index.Instance

func (l listIndex) Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error] {
	return nil
}
func (l listIndex) UnsupportedKeys(q *index.Query) ([]tag.Tag, error) {
	return nil, nil
}
func (l listIndex) CountInstances(ctx context.Context, q *index.Query) (int, error) {
	return len(l), nil
}
func (l listIndex) FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error] {
	return func(yield func(*index.Instance, error) bool) {
		for _, in := range l {
			if !yield(in, nil) {
				return
			}
		}
	}
}

// recordingPeer is a storer that accepts Implicit VR Little Endian for
// CT and records what it receives; it closes stop after the n-th.
type recordingPeer struct {
	got  []string
	n    int
	stop chan struct{}
}

func (r *recordingPeer) Store(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
	if _, err := io.Copy(io.Discard, req.Dataset); err != nil {
		return 0, err
	}
	r.got = append(r.got, req.SOPInstanceUID)
	if len(r.got) == r.n {
		close(r.stop)
	}
	return dimse.StatusSuccess, nil
}

func (r *recordingPeer) Contexts() []dimse.PresentationContext {
	return []dimse.PresentationContext{{ID: 1, AbstractSyntax: uid.CTImageStorage, TransferSyntax: uid.ImplicitVRLittleEndian}}
}

func (r *recordingPeer) Done() <-chan struct{} { return nil }

// TestSendAhead: instances are opened and converted ahead of their turn
// but sent in the index's order; a stop (C-CANCEL) after some of them
// sends no more, and everything opened ahead is closed.
func TestSendAhead(t *testing.T) {
	objs := &trackedObjects{memObjects: memObjects{}}
	var list listIndex
	for i := range 12 {
		ts := uid.JPEGLSLossless
		if i%3 == 0 {
			ts = uid.ExplicitVRLittleEndian
		}
		list = append(list, instance(t, objs.memObjects, 16, ts))
	}
	for _, stopAt := range []int{len(list), 5} {
		t.Run(fmt.Sprintf("stop after %d", stopAt), func(t *testing.T) {
			objs.opened, objs.closed = 0, 0
			s := &QR{Objects: objs, Index: list}
			peer := &recordingPeer{n: stopAt, stop: make(chan struct{})}
			subs := s.send(context.Background(), peer.stop, peer, &index.Query{}, len(list), "", 0, func(dimse.SubOperations) {})
			if subs.Completed != stopAt || subs.Failed != 0 || len(peer.got) != stopAt {
				t.Fatalf("counts %+v, %d received; want %d completed", subs, len(peer.got), stopAt)
			}
			for i, sop := range peer.got {
				if sop != list[i].SOPInstanceUID {
					t.Fatalf("sent %s at %d, want %s", sop, i, list[i].SOPInstanceUID)
				}
			}
			if objs.opened != objs.closed {
				t.Errorf("%d opened, %d closed", objs.opened, objs.closed)
			}
		})
	}
}
