package dcmgen_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// variants covers what dcmgen can write: both transfer syntaxes, 8 and 16
// bits, multi-frame, character sets, sequences, private elements and odd
// lengths that need padding.
func variants() map[string]dcmgen.Instance {
	full := dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Doe^Jane", ID: "PID-1", IssuerOfPatientID: "PACSD", BirthDate: "19700101", Sex: "F"},
		Study: dcmgen.Study{Date: "20240131", Time: "120000", AccessionNumber: "ACC1", StudyID: "S1",
			Description: "Synthetic study", ReferringPhysicianName: "Who^Doctor"},
		Series:         dcmgen.Series{Number: 3, Description: "Axial", BodyPartExamined: "CHEST"},
		InstanceNumber: 7,
	}
	implicit := full
	implicit.Syntax = dcmgen.ImplicitVRLittleEndian
	latin1 := full
	latin1.SpecificCharacterSet = "ISO_IR 100"
	latin1.Patient.Name = "Müller^Hans"
	latin1.Study.Description = "Étude thoracique"
	utf8 := full
	utf8.SpecificCharacterSet = "ISO_IR 192"
	utf8.Patient.Name = "山田^太郎"
	utf8.Series.Description = "Σειρά"
	return map[string]dcmgen.Instance{
		"explicit":    full,
		"implicit":    implicit,
		"latin1":      latin1,
		"utf8":        utf8,
		"zero value":  {},
		"multi-frame": {BitsAllocated: 8, NumberOfFrames: 4, Rows: 33, Columns: 17},
		"multi-frame implicit": {NumberOfFrames: 3, Rows: 20, Columns: 30,
			Syntax: dcmgen.ImplicitVRLittleEndian},
		"sequence and private": {Extra: []dcmgen.Element{
			{Tag: 0x00091001, VR: "LO", Value: "private value"},
			{Tag: 0x00090010, VR: "LO", Value: "PACSD TEST"},
			{Tag: 0x00081111, VR: "SQ", Value: []dcmgen.Item{
				{{Tag: 0x00081155, VR: "UI", Value: "1.2.3.4.5"}, {Tag: 0x00081150, VR: "UI", Value: dcmgen.CTImageStorage}},
				{{Tag: 0x00081150, VR: "UI", Value: dcmgen.CTImageStorage}, {Tag: 0x00081155, VR: "UI", Value: "1.2.3.4.6"}},
			}},
			{Tag: 0x00181030, VR: "LO", Value: "odd"},
			{Tag: 0x00287FE0, VR: "UR", Value: "http://127.0.0.1/x"},
		}},
	}
}

// writeVariants writes every variant into dir and returns them by name,
// with their UIDs filled in.
func writeVariants(t *testing.T, dir string) (map[string]dcmgen.Instance, map[string]dcmgen.File) {
	t.Helper()
	ins := variants()
	files := map[string]dcmgen.File{}
	for name, in := range ins {
		f, err := dcmgen.Create(filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".dcm"), &in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ins[name], files[name] = in, f
	}
	return ins, files
}

func TestDcmtkReads(t *testing.T) {
	testpeer.Need(t, "dcmdump", "dcmftest")
	ins, files := writeVariants(t, t.TempDir())
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			if out, _ := testpeer.RunT(t, "dcmftest", f.Path); !strings.HasPrefix(out, "yes:") {
				t.Errorf("dcmftest does not see a Part-10 file: %s", out)
			}
			// +U8 converts names to UTF-8 for the comparison below, so it
			// also checks that the Specific Character Set is right.
			out, stderr := testpeer.RunT(t, "dcmdump", "+U8", f.Path)
			if stderr != "" || strings.Contains(out, "W: ") || strings.Contains(out, "E: ") {
				t.Errorf("dcmdump complained:\n%s%s", stderr, out)
			}
			if name := ins[name].Patient.Name; name != "" && !strings.Contains(out, "["+name+"]") {
				t.Errorf("dcmdump does not show Patient's Name %q:\n%s", name, out)
			}
			if !strings.Contains(out, f.SOPInstanceUID) {
				t.Errorf("dcmdump does not show SOP Instance UID %s", f.SOPInstanceUID)
			}
		})
	}
}

// dataset returns the bytes of a Part-10 file after its File Meta
// Information, whose length the group length element gives.
func dataset(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 144 || string(b[128:132]) != "DICM" {
		t.Fatalf("%s is not a Part-10 file", path)
	}
	return b[144+binary.LittleEndian.Uint32(b[140:]):]
}

func TestPeersAccept(t *testing.T) {
	testpeer.Need(t, "storescu")
	ins, files := writeVariants(t, t.TempDir())
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	slices.Sort(paths)

	t.Run("storescp", func(t *testing.T) {
		t.Parallel()
		// Bit-preserving mode writes the dataset exactly as it crossed
		// the network, so dcmtk's re-encoding of an Explicit VR file can be
		// compared byte for byte with dcmgen's.
		scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{Args: []string{"+B"}})
		host, port := splitAddr(scp.Addr)
		testpeer.RunT(t, "storescu", append([]string{"-aec", scp.AET, host, port}, paths...)...)
		got, err := scp.Files()
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range files {
			path, ok := got[f.SOPInstanceUID]
			if !ok {
				t.Errorf("%s: not received (got %d files)", name, len(got))
				continue
			}
			if ins[name].Syntax == dcmgen.ExplicitVRLittleEndian && !bytes.Equal(dataset(t, path), dataset(t, f.Path)) {
				t.Errorf("%s: storescp received a different dataset than dcmgen wrote", name)
			}
		}
	})
	t.Run("Orthanc", func(t *testing.T) {
		t.Parallel()
		o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{})
		host, port := splitAddr(o.DICOMAddr)
		testpeer.RunT(t, "storescu", append([]string{"-aec", o.AET, host, port}, paths...)...)
		var stored []struct {
			ID            string
			MainDicomTags map[string]string
		}
		if err := o.GetJSON(t.Context(), "/instances?expand", &stored); err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, s := range stored {
			ids[s.MainDicomTags["SOPInstanceUID"]] = s.ID
		}
		for name, f := range files {
			id, ok := ids[f.SOPInstanceUID]
			if !ok {
				t.Errorf("%s: not stored in Orthanc", name)
				continue
			}
			var tags map[string]any
			if err := o.GetJSON(t.Context(), "/instances/"+id+"/simplified-tags", &tags); err != nil {
				t.Fatal(err)
			}
			// Orthanc decodes the Specific Character Set to UTF-8.
			if want := ins[name].Patient.Name; tags["PatientName"] != want {
				t.Errorf("%s: Orthanc reads Patient's Name %q, want %q", name, tags["PatientName"], want)
			}
		}
	})
}

// TestSeriesToStoreSCP writes the 300-instance CT series of 512 KiB files
// that benchmarks use and sends it to storescp in one association.
func TestSeriesToStoreSCP(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and sends 150 MiB; skipped with -short")
	}
	testpeer.Need(t, "storescu")
	const n, size = 300, 512 << 10
	files, err := dcmgen.WriteSeries(t.TempDir(), n, size, dcmgen.Instance{Patient: dcmgen.Patient{ID: "SERIES300"}})
	if err != nil {
		t.Fatal(err)
	}
	checkSeries(t, files, size)
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{Args: []string{"-pdu", "131072"}})
	host, port := splitAddr(scp.Addr)
	args := []string{"-aec", scp.AET, host, port}
	for _, f := range files {
		args = append(args, f.Path)
	}
	testpeer.RunT(t, "storescu", args...)
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := got[f.SOPInstanceUID]; !ok {
			t.Errorf("%s not received", f.SOPInstanceUID)
		}
	}
	if len(got) != n {
		t.Errorf("storescp holds %d files, want %d", len(got), n)
	}
}

func splitAddr(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
