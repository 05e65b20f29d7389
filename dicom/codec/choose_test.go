package codec

import (
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

func TestChoose(t *testing.T) {
	reg := New(Options{})
	tests := []struct {
		name     string
		stored   string
		accepted []string
		want     Choice
		ok       bool
	}{
		{"stored accepted", uid.JPEGLossless, []string{uid.ExplicitVRLittleEndian, uid.JPEGLossless}, Choice{TransferSyntax: uid.JPEGLossless}, true},
		{"decompress", uid.JPEGLSLossless, []string{uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian}, Choice{TransferSyntax: uid.ExplicitVRLittleEndian}, true},
		{"implicit only", uid.JPEG2000, []string{uid.ImplicitVRLittleEndian}, Choice{TransferSyntax: uid.ImplicitVRLittleEndian}, true},
		{"lossless before lossy", uid.ExplicitVRLittleEndian, []string{uid.JPEGBaseline8Bit, uid.JPEGLSLossless}, Choice{TransferSyntax: uid.JPEGLSLossless}, true},
		{"peer order among lossless", uid.ImplicitVRLittleEndian, []string{uid.HTJ2KLossless, uid.JPEGLossless}, Choice{TransferSyntax: uid.HTJ2KLossless}, true},
		{"lossy only", uid.ExplicitVRLittleEndian, []string{uid.JPEGBaseline8Bit}, Choice{TransferSyntax: uid.JPEGBaseline8Bit, NewInstance: true}, true},
		{"lossy to other lossy", uid.JPEGBaseline8Bit, []string{uid.JPEG2000}, Choice{TransferSyntax: uid.JPEG2000, NewInstance: true}, true},
		{"no codec for stored", uid.MPEG2MPML, []string{uid.ExplicitVRLittleEndian}, Choice{}, false},
		{"nothing reachable", uid.ExplicitVRLittleEndian, []string{uid.MPEG2MPML}, Choice{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := reg.Choose(tt.stored, tt.accepted)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Choose = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
