package scp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// memObjects is an archive of data sets in memory, opened as stored.
type memObjects map[string][]byte // data set by SOP Instance UID

func (m memObjects) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	if ts != in.TransferSyntaxUID {
		return dicom.FileMeta{}, nil, errors.New("asked to convert")
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
