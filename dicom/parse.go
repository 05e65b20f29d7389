package dicom

import (
	"bytes"
	"io"

	"github.com/pacsd/pacsd/dicom/uid"
)

// Parse reads a whole data set held in memory, such as a C-FIND identifier,
// encoded in ts, and returns its elements. Binary values of more than
// Limits.Inline bytes are located, not held.
func Parse(data []byte, ts uid.TransferSyntax) (*Dataset, error) {
	s := NewScanner(bytes.NewReader(data), ts, Limits{})
	defer s.Close()
	if _, err := s.Identify(); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, s.Rest()); err != nil {
		return nil, err
	}
	h := s.Header()
	if h.Err != nil {
		return h.Dataset, h.Err
	}
	return h.Dataset, nil
}
