package codec

import (
	"fmt"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
)

// TranscodeFrame converts one frame, src, of an image described by im,
// from transfer syntax from to transfer syntax to, and appends it to dst.
// A frame of an uncompressed syntax is native: little endian, as Explicit
// VR Little Endian holds it (the caller swaps big endian frames and
// inflates deflated ones). It returns the description of the frame it
// wrote, whose photometric interpretation and planar configuration may
// differ from im's as Codec says.
//
// Memory is what the frame takes decoded and encoded; whether the
// conversion loses information is for the caller to decide beforehand
// (Lookup and Codec.Lossy tell).
func (r *Registry) TranscodeFrame(dst, src []byte, from, to string, im Image) ([]byte, Image, error) {
	native := dicom.Transcodable
	if from == to || native(from) && native(to) {
		return append(dst, src...), im, nil
	}
	var dec, enc Codec
	var ok bool
	if !native(from) {
		if dec, ok = r.Lookup(from); !ok {
			return nil, im, fmt.Errorf("%w: decoding %s", ErrUnsupported, uid.Name(from))
		}
	}
	if !native(to) {
		if enc, ok = r.Lookup(to); !ok {
			return nil, im, fmt.Errorf("%w: encoding %s", ErrUnsupported, uid.Name(to))
		}
	}
	if enc == nil {
		return dec.Decode(dst, src, im)
	}
	if dec == nil {
		return enc.Encode(dst, src, im)
	}
	frame, out, err := dec.Decode(nil, src, im)
	if err != nil {
		return nil, im, err
	}
	return enc.Encode(dst, frame, out)
}
