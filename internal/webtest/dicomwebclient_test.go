package webtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// ref names a study, series or instance for dicomweb-client, whose
// options have these names.
type ref struct {
	Study  string `json:"studyInstanceUID"`
	Series string `json:"seriesInstanceUID,omitempty"`
	SOP    string `json:"sopInstanceUID,omitempty"`
}

func refOf(s *sample) ref { return ref{s.study, s.series, s.sop} }

// clientPlan is what scripts/dicomweb-client.mjs does.
type clientPlan struct {
	URL         string `json:"url"`
	StudySearch struct {
		PatientName  string   `json:"patientName"`
		Limit        int      `json:"limit"`
		IncludeField []string `json:"includefield"`
	} `json:"studySearch"`
	Series       ref `json:"series"`
	Instances    ref `json:"instances"`
	Retrieve     ref `json:"retrieve"`
	Metadata     ref `json:"metadata"`
	NativeFrames ref `json:"nativeFrames"`
	JPEGFrames   ref `json:"jpegFrames"`
	BulkData     struct {
		ref
		Tag string `json:"tag"`
	} `json:"bulkData"`
	Store struct {
		Path string `json:"path"`
		SOP  string `json:"sopInstanceUID"`
	} `json:"store"`
}

// part10Result describes a PS3.10 file that dicomweb-client retrieved.
type part10Result struct {
	Length        int
	DatasetSHA256 string
	ContentType   string
}

type frameResult struct {
	Length            int
	SHA256            string
	ContentType       string
	TransferSyntaxUID string
}

// TestDicomwebClient runs dicomweb-client, the DICOMweb library of the
// OHIF viewer, under node against pacsd: searches at the three levels
// (with a wildcard, paging and included fields), retrieval of an instance,
// metadata, frames native and JPEG, bulk data by the URI that the metadata
// gives, and STOW-RS. The files were stored over DIMSE with dcmsend; what
// comes back is compared with what dcmtk reads in them.
func TestDicomwebClient(t *testing.T) {
	needNodeModules(t)
	c := loadCorpus(t)
	p := startPacsd(t)
	p.store(t, c.files()...)
	sent := sentDatasets(t, []string{c.byID[ctSmall].path})

	ct, jpeg, stow := c.byID[ctSmall], c.byID[jpegRGB], c.byID[j2kStowed]
	doeStudies := studies(c.doe)
	// A study of several series (Doe^Archibald's CR) and a series of
	// several instances (his CT).
	var manySeries, manyInstances *sample
	for _, ss := range doeStudies {
		series := map[string]int{}
		for _, s := range ss {
			series[s.series]++
		}
		for _, s := range ss {
			if len(series) >= 3 && manySeries == nil {
				manySeries = s
			}
			if series[s.series] >= 3 && manyInstances == nil {
				manyInstances = s
			}
		}
	}
	if manySeries == nil || manyInstances == nil {
		t.Fatal("no Doe study with three series or series with three instances")
	}

	var plan clientPlan
	plan.URL = p.root()
	plan.StudySearch.PatientName = "Doe*"
	plan.StudySearch.Limit = 2
	plan.StudySearch.IncludeField = []string{"00101010", "00081030"} // Patient's Age, Study Description
	plan.Series = ref{Study: manySeries.study}
	plan.Instances = ref{Study: manyInstances.study, Series: manyInstances.series}
	plan.Retrieve = refOf(ct)
	plan.Metadata = ref{Study: ct.study, Series: ct.series}
	plan.NativeFrames = refOf(ct)
	plan.JPEGFrames = refOf(jpeg)
	plan.BulkData.ref = refOf(ct)
	plan.BulkData.Tag = "7FE00010"
	plan.Store.Path = stow.path
	plan.Store.SOP = stow.sop

	var res map[string]json.RawMessage
	runNode(t, 2*time.Minute, "dicomweb-client.mjs", plan, &res)

	t.Run("searchForStudies", func(t *testing.T) {
		var pages [][]struct {
			StudyInstanceUID, PatientName, RetrieveURL string
			Fields                                     map[string]*string
		}
		step(t, res, "studyPages", &pages)
		// Six studies two by two, then an empty page (204 No Content).
		var sizes []int
		seen := map[string]bool{}
		for _, page := range pages {
			sizes = append(sizes, len(page))
			for _, st := range page {
				if seen[st.StudyInstanceUID] {
					t.Errorf("study %s on two pages", st.StudyInstanceUID)
				}
				seen[st.StudyInstanceUID] = true
				want := doeStudies[st.StudyInstanceUID]
				if want == nil {
					t.Errorf("found study %s (%s), not one of the Doe patients'", st.StudyInstanceUID, st.PatientName)
					continue
				}
				w := want[0]
				if st.PatientName != w.patientName {
					t.Errorf("study %s: PatientName %q, want %q", st.StudyInstanceUID, st.PatientName, w.patientName)
				}
				if url := p.root() + "/studies/" + w.study; st.RetrieveURL != url {
					t.Errorf("study %s: RetrieveURL %q, want %q", st.StudyInstanceUID, st.RetrieveURL, url)
				}
				for _, f := range []tag.Tag{tag.PatientAge, tag.StudyDescription} {
					got, want := st.Fields[f.Hex()], w.attrs[uint32(f)]
					if got == nil && want != "" || got != nil && *got != want {
						t.Errorf("study %s: included field %s = %v, want %q", st.StudyInstanceUID, f.Hex(), deref(got), want)
					}
				}
			}
		}
		if want := []int{2, 2, 2, 0}; !slices.Equal(sizes, want) {
			t.Errorf("pages of %v studies, want %v", sizes, want)
		}
		if got, want := slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(doeStudies)); !slices.Equal(got, want) {
			t.Errorf("found studies %v, want %v", got, want)
		}
	})

	t.Run("searchForSeries", func(t *testing.T) {
		var series []struct {
			SeriesInstanceUID, Modality string
			Instances                   int
		}
		step(t, res, "series", &series)
		want := map[string]int{}
		for _, s := range doeStudies[manySeries.study] {
			want[s.series]++
		}
		got := map[string]int{}
		for _, se := range series {
			got[se.SeriesInstanceUID] = se.Instances
			if m := manySeries.attrs[uint32(tag.Modality)]; se.Modality != m {
				t.Errorf("series %s: Modality %q, want %q", se.SeriesInstanceUID, se.Modality, m)
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("series and their instance counts %v, want %v", got, want)
		}
	})

	t.Run("searchForInstances", func(t *testing.T) {
		var instances []struct{ SOPInstanceUID, SOPClassUID string }
		step(t, res, "instances", &instances)
		want := map[string]string{}
		for _, s := range doeStudies[manyInstances.study] {
			if s.series == manyInstances.series {
				want[s.sop] = s.sopClass
			}
		}
		got := map[string]string{}
		for _, in := range instances {
			got[in.SOPInstanceUID] = in.SOPClassUID
		}
		if !maps.Equal(got, want) {
			t.Errorf("instances %v, want %v", got, want)
		}
	})

	t.Run("retrieveInstance", func(t *testing.T) {
		var got part10Result
		step(t, res, "retrieveInstance", &got)
		if got.DatasetSHA256 != sent[ct.sop] || got.ContentType != "application/dicom" {
			t.Errorf("retrieved %+v, want application/dicom with the data set that dcmsend sent of %s (SHA-256 %s)", got, ct.path, sent[ct.sop])
		}
	})

	var bulkURIs map[string]string
	t.Run("retrieveSeriesMetadata", func(t *testing.T) {
		var md []struct {
			SOPInstanceUID string
			Rows           int
			BulkDataURIs   map[string]string
		}
		step(t, res, "seriesMetadata", &md)
		if len(md) != 1 || md[0].SOPInstanceUID != ct.sop || md[0].Rows != 128 {
			t.Fatalf("metadata %+v, want the one instance %s of 128 rows", md, ct.sop)
		}
		bulkURIs = md[0].BulkDataURIs
		if bulkURIs["7FE00010"] == "" {
			t.Errorf("no BulkDataURI for Pixel Data in the metadata: %v", bulkURIs)
		}
	})

	t.Run("retrieveInstanceFrames native", func(t *testing.T) {
		var frames []frameResult
		step(t, res, "nativeFrames", &frames)
		pixels := pixelItems(t, ct.path)[0]
		want := frameResult{len(pixels), sha256Hex(pixels), "application/octet-stream", "1.2.840.10008.1.2.1"}
		if len(frames) != 1 || frames[0] != want {
			t.Errorf("frames %+v, want [%+v]", frames, want)
		}
	})

	t.Run("retrieveInstanceFrames JPEG baseline", func(t *testing.T) {
		var frames []frameResult
		step(t, res, "jpegFrames", &frames)
		items := pixelItems(t, jpeg.path)
		if len(items) != 2 {
			t.Fatalf("%s has %d pixel data items, want the offset table and one frame", jpeg.path, len(items))
		}
		want := frameResult{len(items[1]), sha256Hex(items[1]), "image/jpeg", "1.2.840.10008.1.2.4.50"}
		if len(frames) != 1 || frames[0] != want {
			t.Errorf("frames %+v, want [%+v]", frames, want)
		}
	})

	// The native CT's frame asked for as JPEG-LS and JPEG 2000: what the
	// client receives is what pacsd's codecs make of the frame.
	for _, c := range []struct{ step, typ, syntax string }{
		{"jlsFrames", "image/jls", uid.JPEGLSLossless},
		{"jp2Frames", "image/jp2", uid.JPEG2000Lossless},
	} {
		t.Run("retrieveInstanceFrames "+c.typ, func(t *testing.T) {
			var frames []frameResult
			step(t, res, c.step, &frames)
			pixels := pixelItems(t, ct.path)[0]
			im := codec.Image{Rows: 128, Columns: 128, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, PhotometricInterpretation: "MONOCHROME2"}
			enc, _, err := codec.New(codec.Options{}).TranscodeFrame(nil, pixels, uid.ExplicitVRLittleEndian, c.syntax, im)
			if err != nil {
				t.Fatal(err)
			}
			want := frameResult{len(enc), sha256Hex(enc), c.typ, c.syntax}
			if len(frames) != 1 || frames[0] != want {
				t.Errorf("frames %+v, want [%+v]", frames, want)
			}
		})
	}

	t.Run("retrieveBulkData", func(t *testing.T) {
		var got struct {
			URI   string
			Parts []struct {
				Length int
				SHA256 string
			}
		}
		step(t, res, "bulkData", &got)
		if bulkURIs != nil && got.URI != bulkURIs["7FE00010"] {
			t.Errorf("instance metadata gives BulkDataURI %s, series metadata %s", got.URI, bulkURIs["7FE00010"])
		}
		pixels := pixelItems(t, ct.path)[0]
		if len(got.Parts) != 1 || got.Parts[0].Length != len(pixels) || got.Parts[0].SHA256 != sha256Hex(pixels) {
			t.Errorf("bulk data %+v, want one part of the %d bytes of Pixel Data", got.Parts, len(pixels))
		}
	})

	t.Run("storeInstances", func(t *testing.T) {
		var got struct {
			Matches []struct {
				StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, PatientName string
			}
			Retrieved *part10Result
		}
		step(t, res, "store", &got)
		if len(got.Matches) != 1 {
			t.Fatalf("search for the stored instance found %+v", got.Matches)
		}
		m := got.Matches[0]
		if m.StudyInstanceUID != stow.study || m.SeriesInstanceUID != stow.series || m.SOPInstanceUID != stow.sop || m.PatientName != stow.patientName {
			t.Errorf("found %+v, want study %s series %s instance %s of %q", m, stow.study, stow.series, stow.sop, stow.patientName)
		}
		// Retrieved in the default syntax: the data set as pacsd's
		// codecs convert it to Explicit VR Little Endian.
		b, err := os.ReadFile(stow.path)
		if err != nil {
			t.Fatal(err)
		}
		meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		var explicit bytes.Buffer
		if _, err := codec.New(codec.Options{}).Transcode(t.Context(), &explicit, bytes.NewReader(b[n:]), meta.TransferSyntaxUID, uid.ExplicitVRLittleEndian, codec.TranscodeOptions{}); err != nil {
			t.Fatal(err)
		}
		if want := sha256Hex(explicit.Bytes()); got.Retrieved == nil || got.Retrieved.DatasetSHA256 != want {
			t.Errorf("retrieved after STOW-RS: %+v, want the data set of %s in Explicit VR Little Endian (SHA-256 %s)", got.Retrieved, stow.path, want)
		}
	})
}

// step decodes the result of one step of a node script, failing the test
// with the step's error if it failed.
func step(t *testing.T, res map[string]json.RawMessage, name string, v any) {
	t.Helper()
	raw, ok := res[name]
	if !ok {
		t.Fatalf("no result for %s", name)
	}
	var failed struct{ Error *string }
	if json.Unmarshal(raw, &failed) == nil && failed.Error != nil {
		t.Fatalf("%s failed: %s", name, *failed.Error)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, raw)
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
