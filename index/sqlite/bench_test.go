package sqlite

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// benchHeader is a header of the size a CT image carries, as far as the
// index reads it.
func benchHeader(i int) *dicom.Dataset {
	el := func(t tag.Tag, v ...string) dicom.Element {
		info, _ := tag.Lookup(t)
		return dicom.Element{Tag: t, VR: info.VR, Values: v}
	}
	return &dicom.Dataset{Elements: []dicom.Element{
		el(tag.ImageType, "ORIGINAL", "PRIMARY", "AXIAL"),
		el(tag.StudyDate, "20240501"), el(tag.SeriesDate, "20240501"), el(tag.ContentDate, "20240501"),
		el(tag.StudyTime, "101112"), el(tag.SeriesTime, "101500"), el(tag.ContentTime, "101501"),
		el(tag.AccessionNumber, "A123456"), el(tag.Modality, "CT"), el(tag.Manufacturer, "ACME"),
		el(tag.InstitutionName, "General Hospital"), el(tag.ReferringPhysicianName, "Ref^Rita"),
		el(tag.StationName, "CT01"), el(tag.StudyDescription, "CT thorax"), el(tag.SeriesDescription, "Axial 1mm"),
		el(tag.InstitutionalDepartmentName, "Radiology"), el(tag.OperatorsName, "Op^Otto"),
		el(tag.ManufacturerModelName, "Scanner 9000"),
		el(tag.PatientName, "Doe^Jane"), el(tag.PatientID, "PID-1"), el(tag.PatientBirthDate, "19700101"),
		el(tag.PatientSex, "F"), el(tag.PatientAge, "054Y"), el(tag.PatientWeight, "70"),
		el(tag.BodyPartExamined, "CHEST"), el(tag.ProtocolName, "THORAX"),
		el(tag.StudyID, "1"), el(tag.SeriesNumber, "2"), el(tag.InstanceNumber, fmt.Sprint(i)),
		el(tag.Rows, "512"), el(tag.Columns, "512"), el(tag.BitsAllocated, "16"),
		el(tag.PhotometricInterpretation, "MONOCHROME2"),
		{Tag: tag.RequestAttributesSequence, VR: "SQ", Items: []*dicom.Dataset{{Elements: []dicom.Element{
			el(tag.RequestedProcedureID, "RP1"), el(tag.ScheduledProcedureStepID, "SPS1"),
		}}}},
	}}
}

// BenchmarkPut measures ingest into a database file with synchronous=FULL:
// every Put is a committed, synced transaction. Instances go 500 to a
// series and 5 series to a study.
func BenchmarkPut(b *testing.B) {
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db := open(b, filepath.Join(b.TempDir(), "index.db"))
			var n atomic.Int64
			next := func() *index.Instance {
				i := int(n.Add(1))
				study := fmt.Sprintf("1.2.%d", i/2500)
				series := fmt.Sprintf("%s.%d", study, i/500)
				sop := fmt.Sprintf("%s.%d", series, i)
				return &index.Instance{
					SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					SeriesInstanceUID: series, StudyInstanceUID: study,
					Key: study + "/" + series + "/" + sop + ".dcm", Size: 526000,
					SHA256:            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
					TransferSyntaxUID: "1.2.840.10008.1.2.1", CallingAE: "CT01", CalledAE: "PACSD",
					ReceivedAt: time.Now(), Header: benchHeader(i),
				}
			}
			b.ResetTimer()
			start := time.Now()
			if writers == 1 {
				for b.Loop() {
					if _, err := db.Put(b.Context(), next()); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((writers + 1) / 2)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := db.Put(b.Context(), next()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "instances/s")
		})
	}
}
