package dcmgen

import (
	"errors"
	"fmt"
	"path/filepath"
)

// WriteSeries writes a series of n single-frame instances into dir, named
// after their SOP Instance UIDs with the extension ".dcm", and returns them
// in instance-number order.
//
// Every instance is a copy of tmpl with its own SOP Instance UID and
// Instance Number 1…n; they share tmpl's patient, study and series, whose
// empty UIDs are filled once. If size is positive each file is made as
// large as possible but at most size bytes (see Instance.FitSize), so
// WriteSeries(dir, 300, 512<<10, Instance{}) writes a 300-instance CT series
// of about 512 KiB per file; with size 0, tmpl's Rows and Columns are kept.
// tmpl.Pixels must be nil, because one reader cannot feed n files.
func WriteSeries(dir string, n int, size int64, tmpl Instance) ([]File, error) {
	if tmpl.Pixels != nil {
		return nil, errors.New("dcmgen: WriteSeries generates the pixel data; leave Pixels nil")
	}
	if n < 1 {
		return nil, fmt.Errorf("dcmgen: a series of %d instances", n)
	}
	if size > 0 && tmpl.Columns == 0 {
		tmpl.Columns = 512 // as FitSize would choose
	}
	tmpl.SOPInstanceUID = ""
	tmpl.NumberOfFrames = 1
	if err := tmpl.complete(); err != nil {
		return nil, err
	}
	files := make([]File, 0, n)
	for i := range n {
		in := tmpl
		in.SOPInstanceUID = UID()
		in.InstanceNumber = i + 1
		if size > 0 {
			if err := in.FitSize(size); err != nil {
				return files, err
			}
		}
		f, err := Create(filepath.Join(dir, in.SOPInstanceUID+".dcm"), &in)
		if err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}
