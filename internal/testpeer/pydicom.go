package testpeer

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// PydicomFiles returns the DICOM test files that the Debian package
// python3-pydicom ships, sorted by path. They are real-world and
// deliberately awkward files (big endian, compressed transfer syntaxes,
// files without File Meta Information, private sequences) that pydicom's
// own tests use; a few are malformed on purpose (MR_truncated.dcm,
// rtplan_truncated.dcm, badVR.dcm), so a test that expects every file to be
// stored must filter them by name.
//
// It keeps the regular files under the package's test_files directory
// that start with a DICOM preamble or, lacking one, with a plausible first
// data element; it leaves out DICOMDIR files, whose Media Storage SOP
// Class is not a storable object, and the JSON, text, gzip and dump files
// beside them. A missing package is an ErrNotInstalled error.
func PydicomFiles() ([]string, error) {
	files, err := packageFiles(context.Background(), "python3-pydicom")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		if !strings.Contains(f, "/test_files/") {
			continue
		}
		base := filepath.Base(f)
		switch strings.ToLower(filepath.Ext(base)) {
		case ".json", ".txt", ".gz", ".dump", ".py":
			continue
		}
		if strings.HasPrefix(base, "DICOMDIR") || base == "README" {
			continue
		}
		if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if ok, err := isDICOM(f); err != nil {
			return nil, err
		} else if ok {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, notInstalledError("the test files of python3-pydicom")
	}
	slices.Sort(out)
	return out, nil
}

// PydicomFilesT returns PydicomFiles for tb, skipping or failing tb as Need
// does if python3-pydicom is not installed.
func PydicomFilesT(tb testing.TB) []string {
	tb.Helper()
	files, err := PydicomFiles()
	check(tb, err)
	return files
}

// mediaStorageDirectory is the SOP class of a DICOMDIR (PS3.10 §8.6).
const mediaStorageDirectory = "1.2.840.10008.1.3.10"

// isDICOM reports whether the file at path looks like a DICOM file, from
// its first kilobyte.
func isDICOM(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 1024)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return false, err
	}
	head = head[:n]
	if len(head) >= 132 && string(head[128:132]) == "DICM" {
		return !bytes.Contains(head, []byte(mediaStorageDirectory)), nil
	}
	return plausibleDataset(head), nil
}

// plausibleDataset reports whether b starts with a data element of an early
// group in Explicit VR Little or Big Endian or Implicit VR Little Endian:
// a dataset written without preamble and File Meta Information, which
// readers accept and tests should exercise.
func plausibleDataset(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	earlyGroup := func(g uint16) bool { return g >= 0x0002 && g <= 0x0010 && g%2 == 0 }
	vr := b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z'
	le, be := binary.LittleEndian.Uint16(b), binary.BigEndian.Uint16(b)
	switch {
	case earlyGroup(le) && vr, earlyGroup(be) && vr:
		return true
	case earlyGroup(le):
		// Implicit VR: a 32-bit length that fits in a small file's head
		// is a good sign; text files fail the group test before this.
		return binary.LittleEndian.Uint32(b[4:]) < 1<<16
	}
	return false
}

// PydicomPython returns a python3 on PATH that imports pydicom: the first
// python3 on a developer's PATH is often a virtual environment's or
// pyenv's, without the modules of Debian's python3-pydicom. A missing
// pydicom skips t, or fails it under CI=true, as Need does.
func PydicomPython(t testing.TB) string {
	t.Helper()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "python3")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := exec.CommandContext(ctx, p, "-c", "import pydicom").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no python3 on PATH imports pydicom, and under CI=true a missing peer fails the test: install python3-pydicom (scripts/install-test-deps)")
	}
	t.Skip("no python3 on PATH imports pydicom; run `make test`, which installs python3-pydicom")
	return ""
}
