package uid

import (
	"errors"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	good := []string{"1.2.840.10008.1.2", "2.25.329800735698586629295641978511506172918", "1", "1.2.03.4", strings.Repeat("1", 64)}
	for _, s := range good {
		if err := Valid(s); err != nil {
			t.Errorf("Valid(%q) = %v", s, err)
		}
	}
	bad := []string{"", "..", "../etc", "1..2", ".1.2", "1.2.", "1.2/3", "1.2\x00", "1.2 ", "1.a", strings.Repeat("1", 65), "1.2.3\\4"}
	for _, s := range bad {
		if err := Valid(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Valid(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestTrim(t *testing.T) {
	if got := Trim("1.2.3\x00"); got != "1.2.3" {
		t.Errorf("Trim = %q", got)
	}
}

func TestStorageClasses(t *testing.T) {
	classes := StorageClasses()
	if len(classes) < 180 {
		t.Fatalf("only %d storage classes", len(classes))
	}
	for _, want := range []string{CTImageStorage, MRImageStorage, EnhancedCTImageStorage, UltrasoundImageStorageRetired,
		SecondaryCaptureImageStorage, EncapsulatedPDFStorage, RTPlanStorage, BasicTextSRStorage,
		VLWholeSlideMicroscopyImageStorage, PhotoacousticImageStorage, TwelveLeadECGWaveformStorage} {
		if !IsStorage(want) {
			t.Errorf("%s (%s) is not a storage class", Name(want), want)
		}
	}
	for _, not := range []string{Verification, StorageCommitmentPushModel, MediaStorageDirectoryStorage, HangingProtocolStorage,
		StudyRootQueryRetrieveInformationModelFind, ImplicitVRLittleEndian} {
		if IsStorage(not) {
			t.Errorf("%s (%s) is taken for a storage class", Name(not), not)
		}
	}
}

func TestTransferSyntaxes(t *testing.T) {
	tests := []struct {
		uid                                   string
		explicit, big, deflated, encapsulated bool
	}{
		{ImplicitVRLittleEndian, false, false, false, false},
		{ExplicitVRLittleEndian, true, false, false, false},
		{ExplicitVRBigEndian, true, true, false, false},
		{DeflatedExplicitVRLittleEndian, true, false, true, false},
		{JPEGBaseline8Bit, true, false, false, true},
		{JPEGLSLossless, true, false, false, true},
		{JPEG2000Lossless, true, false, false, true},
		{HTJ2KLossless, true, false, false, true},
		{RLELossless, true, false, false, true},
		{MPEG4HP41, true, false, false, true},
		{HEVCMP51, true, false, false, true},
		{JPIPReferenced, true, false, false, false},
		{JPIPReferencedDeflate, true, false, true, false},
	}
	storable := map[string]bool{}
	for _, u := range StorageSyntaxes() {
		storable[u] = true
	}
	for _, tt := range tests {
		ts, ok := LookupTransferSyntax(tt.uid)
		if !ok {
			t.Errorf("%s not found", tt.uid)
			continue
		}
		if ts.ExplicitVR != tt.explicit || ts.BigEndian != tt.big || ts.Deflated != tt.deflated || ts.Encapsulated != tt.encapsulated {
			t.Errorf("%s = %+v", tt.uid, ts)
		}
		if !storable[tt.uid] {
			t.Errorf("%s (%s) not among the storage syntaxes", ts.Name, tt.uid)
		}
	}
	if _, ok := LookupTransferSyntax(CTImageStorage); ok {
		t.Error("a SOP class is taken for a transfer syntax")
	}
	if storable[XMLEncoding] || storable[Papyrus3ImplicitVRLittleEndian] {
		t.Error("non-storage syntaxes offered for storage")
	}
}
