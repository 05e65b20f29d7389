package main

import (
	"context"
	"errors"
	"io"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
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
	if dicom.Transcodable(ts) {
		// An instance the archive compressed itself goes as received.
		if fm, data, err := o.routeObjects.OpenDataset(ctx, in, ts); err == nil || !errors.Is(err, dicom.ErrUnsupported) {
			return fm, data, err
		}
	}
	fm, stored, err := o.routeObjects.OpenDataset(ctx, in, from)
	if err != nil {
		return fm, nil, err
	}
	fm.TransferSyntaxUID = ts
	return fm, o.codecs.TranscodeReader(ctx, stored, from, ts, codec.TranscodeOptions{}), nil
}
