package scp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// holdBack is how much of a converted data set is kept back before its
// C-STORE starts. A conversion that fails within it (in the header or
// at the first frame, where codecs find what they cannot encode) fails
// its sub-operation alone; one that fails later, once data set bytes
// have gone out, can end only with the association aborted.
const holdBack = 1 << 20

// codecs returns the codec registry the provider converts with.
func (s *QR) codecs() *codec.Registry {
	if s.Codecs != nil {
		return s.Codecs
	}
	return codec.New(codec.Options{})
}

// accepted lists the transfer syntaxes a peer accepted for a SOP class,
// in the order of its presentation contexts.
func accepted(peer storer, class string) []string {
	var out []string
	for _, pc := range peer.Contexts() {
		if pc.Accepted() && pc.AbstractSyntax == class && !slices.Contains(out, pc.TransferSyntax) {
			out = append(out, pc.TransferSyntax)
		}
	}
	return out
}

// outgoing is an instance opened to be sent: its data set in
// TransferSyntax, and the SOP Instance UID it goes by.
type outgoing struct {
	TransferSyntax string
	SOPInstanceUID string
	Dataset        io.ReadCloser
}

// open opens an archived instance in a syntax the peer accepted for its
// class: as stored when accepted, else converted as the codec registry
// chooses (an uncompressed syntax, else a lossless one, and a lossy one
// only when the peer accepts nothing else: the copy is then a new
// instance, with the Lossy Image Compression attributes set, PS3.5 8.2).
// When the pixels cannot be encoded in the chosen syntax (ErrUnsupported),
// the next one the peer accepted is tried.
func (s *QR) open(ctx context.Context, in *index.Instance, syntaxes []string) (*outgoing, error) {
	reg := s.codecs()
	candidates := slices.Clone(syntaxes)
	var failed error
	for {
		choice, ok := reg.Choose(in.TransferSyntaxUID, candidates)
		if !ok {
			if failed != nil {
				return nil, failed
			}
			if len(syntaxes) == 0 {
				return nil, fmt.Errorf("the peer accepted no presentation context for %s", uid.Name(in.SOPClassUID))
			}
			return nil, fmt.Errorf("the peer accepted %s for %s, none of which %s converts to",
				names(syntaxes), uid.Name(in.SOPClassUID), uid.Name(in.TransferSyntaxUID))
		}
		ts := choice.TransferSyntax
		if ts == in.TransferSyntaxUID {
			_, data, err := s.Objects.OpenDataset(ctx, in, ts)
			if err != nil {
				return nil, err
			}
			return &outgoing{TransferSyntax: ts, SOPInstanceUID: in.SOPInstanceUID, Dataset: data}, nil
		}
		o := &outgoing{TransferSyntax: ts, SOPInstanceUID: in.SOPInstanceUID}
		var opts codec.TranscodeOptions
		if choice.NewInstance {
			o.SOPInstanceUID = codec.LossyInstanceUID(in.SOPInstanceUID, ts)
			opts.SOPInstanceUID = o.SOPInstanceUID
		}
		data, err := s.convert(ctx, reg, in, ts, opts)
		if err == nil {
			o.Dataset = data
			if choice.NewInstance {
				s.log().Info("sending a lossy copy as a new instance: the peer accepts no syntax that keeps the pixels",
					"sop_instance_uid", in.SOPInstanceUID, "copy", o.SOPInstanceUID, "transfer_syntax", uid.Name(ts))
			}
			return o, nil
		}
		if !errors.Is(err, codec.ErrUnsupported) {
			return nil, err
		}
		failed = err
		candidates = slices.DeleteFunc(candidates, func(c string) bool { return c == ts })
	}
}

func names(syntaxes []string) string {
	var b []byte
	for i, ts := range syntaxes {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, uid.Name(ts)...)
	}
	return string(b)
}

// convert opens an instance as stored and converts it to ts as it is
// read. It returns once the conversion has finished or has produced
// holdBack bytes, so that what fails early is an error here.
func (s *QR) convert(ctx context.Context, reg *codec.Registry, in *index.Instance, ts string, opts codec.TranscodeOptions) (io.ReadCloser, error) {
	if dicom.Transcodable(ts) && !dicom.Transcodable(in.TransferSyntaxUID) && opts.SOPInstanceUID == "" {
		// An instance the archive compressed itself comes back as
		// received; any other is decoded below.
		if _, data, err := s.Objects.OpenDataset(ctx, in, ts); err == nil || !errors.Is(err, dicom.ErrUnsupported) {
			return data, err
		}
	}
	_, stored, err := s.Objects.OpenDataset(ctx, in, in.TransferSyntaxUID)
	if err != nil {
		return nil, err
	}
	conv := reg.TranscodeReader(ctx, stored, in.TransferSyntaxUID, ts, opts)
	// The head is sized for a decompression that quadruples the stored
	// bytes, up to holdBack, so that it is not copied as it grows; a
	// larger output grows it as usual.
	var head bytes.Buffer
	head.Grow(int(min(holdBack, 4*max(in.Size, 0)+64<<10)))
	if _, err := io.CopyN(&head, conv, holdBack); err != nil && err != io.EOF {
		conv.Close()
		return nil, fmt.Errorf("%s: %w", in.SOPInstanceUID, err)
	}
	return &converted{Reader: io.MultiReader(&head, conv), Closer: conv}, nil
}

// converted is a data set being converted, its first bytes held back;
// Close stops the conversion.
type converted struct {
	io.Reader
	io.Closer
}
