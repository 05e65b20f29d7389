package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
)

// routeObjects is what the router reads of the archive.
type routeObjects interface {
	route.Datasets
	route.Objects
}

// codecObjects opens the data sets the router sends in any syntax the
// codec registry converts them to, so that a destination that accepts
// only uncompressed syntaxes receives a JPEG-LS study decompressed, as a
// C-MOVE to it would. The archive itself converts between uncompressed
// syntaxes only. The router proposes no lossy syntax, so no conversion
// here loses pixels.
type codecObjects struct {
	routeObjects
	codecs *codec.Registry
}

// OpenDataset implements route.Datasets.
func (o codecObjects) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	from := in.TransferSyntaxUID
	if ts == from || dicom.Transcodable(from) && dicom.Transcodable(ts) {
		return o.routeObjects.OpenDataset(ctx, in, ts)
	}
	fm, stored, err := o.routeObjects.OpenDataset(ctx, in, from)
	if err != nil {
		return fm, nil, err
	}
	fm.TransferSyntaxUID = ts
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stored.Close()
		_, err := o.codecs.Transcode(ctx, pw, stored, from, ts, codec.TranscodeOptions{})
		if err != nil {
			err = fmt.Errorf("converting %s from %s to %s: %w", in.SOPInstanceUID, uid.Name(from), uid.Name(ts), err)
		}
		pw.CloseWithError(err)
	}()
	return fm, &pipedDataset{pr: pr, done: done}, nil
}

// pipedDataset is the reading end of a conversion; Close ends the
// conversion and waits for it, so that nothing outlives the send.
type pipedDataset struct {
	pr   *io.PipeReader
	done chan struct{}
}

func (p *pipedDataset) Read(b []byte) (int, error) { return p.pr.Read(b) }

func (p *pipedDataset) Close() error {
	p.pr.Close()
	<-p.done
	return nil
}
