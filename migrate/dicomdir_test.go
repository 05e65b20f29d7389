package migrate

import "testing"

func TestFileIDWithin(t *testing.T) {
	for _, tt := range []struct {
		ref  string
		want bool
	}{
		{"DICOM/ST000001/SE000001/IM000001", true},
		{"IM1", true},
		{"../../etc/passwd", false},
		{"DICOM/../../OTHER", false},
		{"/ABSOLUTE", false},
		{"DICOM//IM1", false},
		{`DICOM\..\IM1`, false},
		{"C:/IM1", false},
		{"./IM1", false},
	} {
		t.Run(tt.ref, func(t *testing.T) {
			if got := fileIDWithin(tt.ref); got != tt.want {
				t.Errorf("fileIDWithin(%q) = %v, want %v", tt.ref, got, tt.want)
			}
		})
	}
}
