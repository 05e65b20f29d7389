package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// The archive BenchmarkFind queries: 2,000 studies of 50 instances in
// two series each (100,000 instances), of 1,000 patients, over 2024.
const (
	benchStudies   = 2000
	benchSeries    = 2
	benchInstances = 25 // per series
)

var benchFamilies = []string{"Adams", "Baker", "Clark", "Davis", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones",
	"King", "Lopez", "Müller", "Nakamura", "Olsen", "Petrov", "Quinn", "Rossi", "Smith", "Tanaka"}

// benchArchive builds the archive once per test binary, in a directory
// of its own that TestMain removes. It writes with synchronous=OFF, as
// the durability of a throw-away file does not matter, and queries then
// run on it as Open opens it.
var benchArchive = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pacsd-index-bench-")
	if err != nil {
		return "", err
	}
	benchDirs = append(benchDirs, dir)
	path := filepath.Join(dir, "index.db")
	raw, err := sql.Open("sqlite3", strings.Replace(dsn(path), "_synchronous=FULL", "_synchronous=OFF", 1))
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	if err := wal(ctx, raw); err != nil {
		return "", err
	}
	db, err := index.New(ctx, raw, index.SQLite)
	if err != nil {
		return "", err
	}
	defer db.Close()
	start := time.Now()
	for s := range benchStudies {
		h := benchStudyHeader(s)
		for se := range benchSeries {
			for i := range benchInstances {
				study := fmt.Sprintf("1.2.826.0.1.%d", s)
				series := fmt.Sprintf("%s.%d", study, se+1)
				sop := fmt.Sprintf("%s.%d", series, i+1)
				hi := with(h, dicom.Element{Tag: tag.Modality, VR: "CS", Values: []string{[]string{"CT", "SR"}[se]}},
					dicom.Element{Tag: tag.InstanceNumber, VR: "IS", Values: []string{fmt.Sprint(i + 1)}},
					dicom.Element{Tag: tag.SeriesNumber, VR: "IS", Values: []string{fmt.Sprint(se + 1)}})
				_, err := db.Put(ctx, &index.Instance{
					SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					SeriesInstanceUID: series, StudyInstanceUID: study,
					Key: study + "/" + series + "/" + sop + ".dcm", Size: 526000, SHA256: strings.Repeat("ab", 32),
					TransferSyntaxUID: "1.2.840.10008.1.2.1", CallingAE: "CT01", CalledAE: "PACSD",
					ReceivedAt: start.Add(time.Duration(s) * time.Minute), Header: hi,
				})
				if err != nil {
					return "", err
				}
			}
		}
	}
	benchBuild = time.Since(start)
	return path, nil
})

var (
	benchDirs  []string
	benchBuild time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func benchStudyHeader(s int) *dicom.Dataset {
	p := s / 2
	family := benchFamilies[p%len(benchFamilies)]
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, s%366)
	h := benchHeader(s)
	return with(h,
		dicom.Element{Tag: tag.PatientID, VR: "LO", Values: []string{fmt.Sprintf("PID-%05d", p)}},
		dicom.Element{Tag: tag.PatientName, VR: "PN", Values: []string{fmt.Sprintf("%s^Given%d", family, p)}},
		dicom.Element{Tag: tag.StudyDate, VR: "DA", Values: []string{date.Format("20060102")}},
		dicom.Element{Tag: tag.StudyTime, VR: "TM", Values: []string{fmt.Sprintf("%02d%02d%02d", 8+s%10, s%60, s%60)}},
		dicom.Element{Tag: tag.AccessionNumber, VR: "SH", Values: []string{fmt.Sprintf("ACC%06d", s)}},
		dicom.Element{Tag: tag.StudyID, VR: "SH", Values: []string{fmt.Sprint(s)}})
}

// with returns h with the elements given added or replaced.
func with(h *dicom.Dataset, es ...dicom.Element) *dicom.Dataset {
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

// BenchmarkFind measures the queries of C-FIND at the STUDY level, of
// QIDO-RS for studies, series and instances, and of retrieval, on an
// archive of 100,000 instances (see benchArchive). Each runs to its last
// match; the benchmark reports the latency percentiles of each, and how
// many matches it had.
func BenchmarkFind(b *testing.B) {
	path, err := benchArchive()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("archive of %d instances built in %v", benchStudies*benchSeries*benchInstances, benchBuild.Round(time.Millisecond))
	db := open(b, path)
	el := func(t tag.Tag, v ...string) dicom.Element {
		info, _ := tag.Lookup(t)
		return dicom.Element{Tag: t, VR: info.VR, Values: v}
	}
	// The return keys dcmtk's and most viewers' study queries ask for.
	studyKeys := func(match ...dicom.Element) *dicom.Dataset {
		return with(&dicom.Dataset{Elements: []dicom.Element{
			el(tag.PatientName), el(tag.PatientID), el(tag.PatientBirthDate), el(tag.PatientSex),
			el(tag.StudyDate), el(tag.StudyTime), el(tag.AccessionNumber), el(tag.StudyID), el(tag.StudyDescription),
			el(tag.ReferringPhysicianName), el(tag.ModalitiesInStudy), el(tag.NumberOfStudyRelatedSeries),
			el(tag.NumberOfStudyRelatedInstances), el(tag.StudyInstanceUID),
		}}, match...)
	}
	seriesKeys := func(match ...dicom.Element) *dicom.Dataset {
		return with(&dicom.Dataset{Elements: []dicom.Element{
			el(tag.Modality), el(tag.SeriesNumber), el(tag.SeriesDescription), el(tag.SeriesDate), el(tag.SeriesTime),
			el(tag.NumberOfSeriesRelatedInstances), el(tag.SeriesInstanceUID), el(tag.PerformedProcedureStepStartDate),
		}}, match...)
	}
	instanceKeys := func(match ...dicom.Element) *dicom.Dataset {
		return with(&dicom.Dataset{Elements: []dicom.Element{
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
