package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// The benchmarks every backend runs: BenchFind on the archive that
// FillBenchArchive makes, BenchPut on an empty database.

// The archive BenchFind queries: 2,000 studies of 50 instances in two
// series each (100,000 instances), of 1,000 patients, over 2024.
const (
	benchStudies   = 2000
	benchSeries    = 2
	benchInstances = 25 // per series

	// BenchArchiveInstances is how many instances FillBenchArchive puts.
	BenchArchiveInstances = benchStudies * benchSeries * benchInstances
)

var benchFamilies = []string{"Adams", "Baker", "Clark", "Davis", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones",
	"King", "Lopez", "Müller", "Nakamura", "Olsen", "Petrov", "Quinn", "Rossi", "Smith", "Tanaka"}

// BenchHeader is a header of the size a CT image carries, as far as the
// index reads it; i is its Instance Number.
func BenchHeader(i int) *dicom.Dataset {
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

// BenchPut measures ingest into the empty databases open returns, with
// one writer and with 8: every Put is a committed transaction, as durable
// as the database is set to make it. Instances go 500 to a series and 5
// series to a study, and the 8 writers put instances of the same series
// side by side, as an archive receiving one study on several
// associations does.
func BenchPut(b *testing.B, open func(b *testing.B) *sqlindex.DB) {
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db := open(b)
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
					ReceivedAt: time.Now(), Header: BenchHeader(i),
				}
			}
			b.ResetTimer()
			start := time.Now()
			if writers == 1 {
				for b.Loop() {
					if _, err := db.Put(b.Context(), &index.PutRequest{Instance: next()}); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((writers + 1) / 2)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := db.Put(b.Context(), &index.PutRequest{Instance: next()}); err != nil {
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

// FillBenchArchive puts the archive BenchFind queries into db, an empty
// index, with writers putting studies side by side.
func FillBenchArchive(ctx context.Context, db *sqlindex.DB, writers int) error {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for s := w; s < benchStudies; s += writers {
				if errs[w] = putBenchStudy(ctx, db, s, start); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return cmp.Or(errs...)
}

func putBenchStudy(ctx context.Context, db *sqlindex.DB, s int, start time.Time) error {
	h := benchStudyHeader(s)
	for se := range benchSeries {
		for i := range benchInstances {
			study := fmt.Sprintf("1.2.826.0.1.%d", s)
			series := fmt.Sprintf("%s.%d", study, se+1)
			sop := fmt.Sprintf("%s.%d", series, i+1)
			hi := withElements(h, dicom.Element{Tag: tag.Modality, VR: "CS", Values: []string{[]string{"CT", "SR"}[se]}},
				dicom.Element{Tag: tag.InstanceNumber, VR: "IS", Values: []string{fmt.Sprint(i + 1)}},
				dicom.Element{Tag: tag.SeriesNumber, VR: "IS", Values: []string{fmt.Sprint(se + 1)}})
			_, err := db.Put(ctx, &index.PutRequest{Instance: &index.Instance{
				SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
				SeriesInstanceUID: series, StudyInstanceUID: study,
				Key: study + "/" + series + "/" + sop + ".dcm", Size: 526000, SHA256: strings.Repeat("ab", 32),
				TransferSyntaxUID: "1.2.840.10008.1.2.1", CallingAE: "CT01", CalledAE: "PACSD",
				ReceivedAt: start.Add(time.Duration(s) * time.Minute), Header: hi,
			}})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func benchStudyHeader(s int) *dicom.Dataset {
	p := s / 2
	family := benchFamilies[p%len(benchFamilies)]
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, s%366)
	return withElements(BenchHeader(s),
		dicom.Element{Tag: tag.PatientID, VR: "LO", Values: []string{fmt.Sprintf("PID-%05d", p)}},
		dicom.Element{Tag: tag.PatientName, VR: "PN", Values: []string{fmt.Sprintf("%s^Given%d", family, p)}},
		dicom.Element{Tag: tag.StudyDate, VR: "DA", Values: []string{date.Format("20060102")}},
		dicom.Element{Tag: tag.StudyTime, VR: "TM", Values: []string{fmt.Sprintf("%02d%02d%02d", 8+s%10, s%60, s%60)}},
		dicom.Element{Tag: tag.AccessionNumber, VR: "SH", Values: []string{fmt.Sprintf("ACC%06d", s)}},
		dicom.Element{Tag: tag.StudyID, VR: "SH", Values: []string{fmt.Sprint(s)}})
}

// withElements returns h with the elements given added or replaced.
func withElements(h *dicom.Dataset, es ...dicom.Element) *dicom.Dataset {
	out := &dicom.Dataset{}
	for _, e := range h.Elements {
		if !slices.ContainsFunc(es, func(x dicom.Element) bool { return x.Tag == e.Tag }) {
			out.Elements = append(out.Elements, e)
		}
	}
	out.Elements = append(out.Elements, es...)
	slices.SortFunc(out.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return out
}

// BenchFind measures the queries of C-FIND at the STUDY level, of QIDO-RS
// for studies, series and instances, and of retrieval, on db holding the
// archive of FillBenchArchive. Each runs to its last match; the benchmark
// reports the latency percentiles of each, and how many matches it had.
func BenchFind(b *testing.B, db *sqlindex.DB) {
	el := func(t tag.Tag, v ...string) dicom.Element {
		info, _ := tag.Lookup(t)
		return dicom.Element{Tag: t, VR: info.VR, Values: v}
	}
	// The return keys dcmtk's and most viewers' study queries ask for.
	studyKeys := func(match ...dicom.Element) *dicom.Dataset {
		return withElements(&dicom.Dataset{Elements: []dicom.Element{
			el(tag.PatientName), el(tag.PatientID), el(tag.PatientBirthDate), el(tag.PatientSex),
			el(tag.StudyDate), el(tag.StudyTime), el(tag.AccessionNumber), el(tag.StudyID), el(tag.StudyDescription),
			el(tag.ReferringPhysicianName), el(tag.ModalitiesInStudy), el(tag.NumberOfStudyRelatedSeries),
			el(tag.NumberOfStudyRelatedInstances), el(tag.StudyInstanceUID),
		}}, match...)
	}
	seriesKeys := func(match ...dicom.Element) *dicom.Dataset {
		return withElements(&dicom.Dataset{Elements: []dicom.Element{
			el(tag.Modality), el(tag.SeriesNumber), el(tag.SeriesDescription), el(tag.SeriesDate), el(tag.SeriesTime),
			el(tag.NumberOfSeriesRelatedInstances), el(tag.SeriesInstanceUID), el(tag.PerformedProcedureStepStartDate),
		}}, match...)
	}
	instanceKeys := func(match ...dicom.Element) *dicom.Dataset {
		return withElements(&dicom.Dataset{Elements: []dicom.Element{
			el(tag.SOPClassUID), el(tag.SOPInstanceUID), el(tag.InstanceNumber), el(tag.Rows), el(tag.Columns),
			el(tag.NumberOfFrames), el(tag.BitsAllocated),
		}}, match...)
	}
	study, series := "1.2.826.0.1.1234", "1.2.826.0.1.1234.2"
	cases := []struct {
		name string
		q    index.Query
		// what runs: Find, FindInstances or CountInstances
		run string
	}{
		{"cfind-study/PatientID", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.PatientID, "PID-00617"))}, "find"},
		{"cfind-study/PatientName=A*", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.PatientName, "A*"))}, "find"},
		{"cfind-study/PatientName=Müller^Given42*", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.PatientName, "Müller^Given42*"))}, "find"},
		{"cfind-study/AccessionNumber", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.AccessionNumber, "ACC001234"))}, "find"},
		{"cfind-study/StudyDate=month", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.StudyDate, "20240301-20240331"))}, "find"},
		{"cfind-study/StudyDate+StudyTime", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: studyKeys(el(tag.StudyDate, "20240301-20240331"), el(tag.StudyTime, "0800-1200"))}, "find"},
		{"cfind-study/all", index.Query{Level: index.StudyLevel, Hierarchical: true, Identifier: studyKeys()}, "find"},
		{"qido-studies/PatientName=A*", index.Query{Level: index.StudyLevel, Identifier: studyKeys(el(tag.PatientName, "A*"))}, "find"},
		{"qido-studies/fuzzy=tan", index.Query{Level: index.StudyLevel, FuzzyNames: true, Identifier: studyKeys(el(tag.PatientName, "tan"))}, "find"},
		{"qido-studies/ModalitiesInStudy=SR&limit=100", index.Query{Level: index.StudyLevel, Limit: 100,
			Identifier: studyKeys(el(tag.ModalitiesInStudy, "SR"))}, "find"},
		{"qido-studies/StudyInstanceUID", index.Query{Level: index.StudyLevel, Identifier: studyKeys(el(tag.StudyInstanceUID, study))}, "find"},
		{"qido-series/{study}", index.Query{Level: index.SeriesLevel, Identifier: seriesKeys(el(tag.StudyInstanceUID, study))}, "find"},
		{"qido-series/Modality=CT&limit=100", index.Query{Level: index.SeriesLevel, Limit: 100, Identifier: seriesKeys(el(tag.Modality, "CT"))}, "find"},
		{"qido-instances/{study}/{series}", index.Query{Level: index.ImageLevel,
			Identifier: instanceKeys(el(tag.StudyInstanceUID, study), el(tag.SeriesInstanceUID, series))}, "find"},
		{"qido-instances/{study}", index.Query{Level: index.ImageLevel, Identifier: instanceKeys(el(tag.StudyInstanceUID, study))}, "find"},
		{"retrieve-study/FindInstances", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: &dicom.Dataset{Elements: []dicom.Element{el(tag.StudyInstanceUID, study)}}}, "instances"},
		{"retrieve-study/CountInstances", index.Query{Level: index.StudyLevel, Hierarchical: true,
			Identifier: &dicom.Dataset{Elements: []dicom.Element{el(tag.StudyInstanceUID, study)}}}, "count"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			var lat []time.Duration
			matches := 0
			for b.Loop() {
				start := time.Now()
				n := 0
				var err error
				switch c.run {
				case "find":
					for _, err := range db.Find(ctx, &c.q) {
						if err != nil {
							b.Fatal(err)
						}
						n++
					}
				case "instances":
					for _, err := range db.FindInstances(ctx, &c.q) {
						if err != nil {
							b.Fatal(err)
						}
						n++
					}
				case "count":
					if n, err = db.CountInstances(ctx, &c.q); err != nil {
						b.Fatal(err)
					}
				}
				lat = append(lat, time.Since(start))
				matches = n
			}
			slices.Sort(lat)
			pct := func(p int) float64 {
				return float64(lat[min(len(lat)-1, len(lat)*p/100)].Microseconds()) / 1000
			}
			b.ReportMetric(pct(50), "p50-ms")
			b.ReportMetric(pct(99), "p99-ms")
			b.ReportMetric(float64(matches), "matches")
		})
	}
}

// BenchCorrect measures a correction of the Patient's Name of a study of
// 1,000 instances, until a QIDO-RS-like search finds the study by the
// new name: what a person waits for after correcting.
func BenchCorrect(b *testing.B, open func(b *testing.B) *sqlindex.DB) {
	db := open(b)
	ctx := b.Context()
	const study, n = "1.2.999", 1000
	for i := range n {
		series := fmt.Sprintf("%s.%d", study, i/250)
		sop := fmt.Sprintf("%s.%d", series, i)
		in := &index.Instance{
			SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			SeriesInstanceUID: series, StudyInstanceUID: study,
			Key: sop + ".dcm", Size: 526000, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			TransferSyntaxUID: "1.2.840.10008.1.2.1", ReceivedAt: time.Now(), Header: BenchHeader(7),
		}
		in.Header = withElements(in.Header, dicom.Element{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}})
		if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("CORRECTED^NAME%d", i)
		_, err := db.Correct(ctx, &index.Correction{Study: study, Reason: "bench",
			After: &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{name}}}}})
		if err != nil {
			b.Fatal(err)
		}
		q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.PatientName, VR: "PN", Values: []string{name}}, {Tag: tag.StudyInstanceUID, VR: "UI"}}}}
		found := 0
		for _, err := range db.Find(ctx, q) {
			if err != nil {
				b.Fatal(err)
			}
			found++
		}
		if found != 1 {
			b.Fatalf("the corrected study found %d times", found)
		}
	}
}
