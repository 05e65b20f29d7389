// Command dictgen writes the DICOM data dictionary and UID tables of the
// packages dicom/tag and dicom/uid from the dictionaries that pydicom ships
// (Debian package python3-pydicom), plus supplement.txt for entries the
// standard gained after that pydicom release.
//
// Run it with go generate in dicom/tag or dicom/uid; it finds pydicom's
// dictionaries with dpkg unless -pydicom names their directory.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// pydicom writes each entry as a Python tuple of quoted strings on one line.
var (
	tagLine = regexp.MustCompile(`^\s*0x([0-9A-Fa-f]{8}):\s*\((.*)\),?`)
	// Repeating groups: curves (50xx) and overlays (60xx) are kept under
	// their first group; the other repeaters are retired curiosities.
	repeaterLine = regexp.MustCompile(`^\s*'([56]0)xx([0-9A-Fa-f]{4})':\s*\((.*)\),?`)
	uidLine      = regexp.MustCompile(`^\s*'([0-9.]+)':\s*\((.*)\),?`)
	quoted       = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"`)
)

func main() {
	pydicom := flag.String("pydicom", "", "directory holding pydicom's _dicom_dict.py and _uid_dict.py (default: found with dpkg)")
	supplement := flag.String("supplement", "", "supplement file (default: supplement.txt beside this generator)")
	tagOut := flag.String("tags", "", "write the tag table to this file")
	uidOut := flag.String("uids", "", "write the UID tables to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("dictgen: ")

	dir := *pydicom
	if dir == "" {
		var err error
		if dir, err = findPydicom(); err != nil {
			log.Fatal(err)
		}
	}
	version := pydicomVersion(dir)
	if *tagOut != "" {
		tags, err := readTags(filepath.Join(dir, "_dicom_dict.py"))
		if err != nil {
			log.Fatal(err)
		}
		write(*tagOut, genTags(tags, version))
	}
	if *uidOut != "" {
		uids, err := readUIDs(filepath.Join(dir, "_uid_dict.py"))
		if err != nil {
			log.Fatal(err)
		}
		sup := *supplement
		if sup == "" {
			sup = filepath.Join(sourceDir(), "supplement.txt")
		}
		extra, err := readUIDs(sup)
		if err != nil {
			log.Fatal(err)
		}
		for _, u := range extra {
			if slices.ContainsFunc(uids, func(v uidEntry) bool { return v.UID == u.UID }) {
				continue // pydicom has caught up; its entry wins
			}
			u.Supplement = true
			uids = append(uids, u)
		}
		write(*uidOut, genUIDs(uids, version))
	}
}

// findPydicom asks dpkg where python3-pydicom put its dictionaries, so no
// path of one machine is written into the project.
func findPydicom() (string, error) {
	out, err := exec.Command("dpkg", "-L", "python3-pydicom").Output()
	if err != nil {
		return "", fmt.Errorf("python3-pydicom not found with dpkg (install it, or pass -pydicom DIR): %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, "/pydicom/_dicom_dict.py") {
			return filepath.Dir(line), nil
		}
	}
	return "", fmt.Errorf("python3-pydicom installs no _dicom_dict.py")
}

func pydicomVersion(dir string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "python3-pydicom").Output()
	if err == nil && len(out) > 0 {
		return "pydicom " + string(out)
	}
	return "pydicom (" + filepath.Base(dir) + ")"
}

// sourceDir is the generator's own directory; go generate runs it with the
// working directory of the package being generated, hence the lookup.
func sourceDir() string {
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/pacsd/pacsd/dicom/internal/dictgen").Output()
	if err != nil {
		log.Fatalf("locate generator: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func fields(tuple string) []string {
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(tuple, -1) {
		s := m[1] + m[2]
		s = strings.ReplaceAll(s, `\'`, `'`)
		s = strings.ReplaceAll(s, `\"`, `"`)
		out = append(out, s)
	}
	return out
}

type tagEntry struct {
	Tag                   uint32
	VR, VM, Name, Keyword string
	Retired               bool
}

func readTags(path string) ([]tagEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var tags []tagEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := tagLine.FindStringSubmatch(sc.Text())
		if r := repeaterLine.FindStringSubmatch(sc.Text()); r != nil {
			m = []string{r[0], r[1] + "00" + r[2], r[3]}
		}
		if m == nil {
			continue
		}
		v := fields(m[2])
		if len(v) != 5 {
			return nil, fmt.Errorf("%s: unexpected entry %q", path, sc.Text())
		}
		if v[4] == "" {
			continue // retired entries without a keyword cannot be named
		}
		t, _ := strconv.ParseUint(m[1], 16, 32)
		tags = append(tags, tagEntry{uint32(t), v[0], v[1], v[2], v[4], v[3] == "Retired"})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(tags) < 1000 {
		return nil, fmt.Errorf("%s: only %d tags; not a pydicom dictionary?", path, len(tags))
	}
	slices.SortFunc(tags, func(a, b tagEntry) int { return int(int64(a.Tag) - int64(b.Tag)) })
	return tags, nil
}

type uidEntry struct {
	UID, Name, Type, Info, Keyword string
	Retired, Supplement            bool
}

func readUIDs(path string) ([]uidEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var uids []uidEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := uidLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v := fields(m[2])
		if len(v) != 5 {
			return nil, fmt.Errorf("%s: unexpected entry %q", path, sc.Text())
		}
		if v[4] == "" {
			continue
		}
		uids = append(uids, uidEntry{UID: m[1], Name: v[0], Type: v[1], Info: v[2], Retired: v[3] == "Retired", Keyword: v[4]})
	}
	return uids, sc.Err()
}

func genTags(tags []tagEntry, version string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by dictgen from the %s data dictionary. DO NOT EDIT.\n\npackage tag\n\n", version)
	b.WriteString("// Tags of the DICOM data dictionary (PS3.6 §6), named by keyword.\nconst (\n")
	for _, t := range tags {
		if t.Retired {
			fmt.Fprintf(&b, "\t%s Tag = 0x%08X // %s (retired)\n", t.Keyword, t.Tag, t.Name)
		} else {
			fmt.Fprintf(&b, "\t%s Tag = 0x%08X // %s\n", t.Keyword, t.Tag, t.Name)
		}
	}
	b.WriteString(")\n\n// dictionary is sorted by tag for binary search.\nvar dictionary = [...]Info{\n")
	for _, t := range tags {
		fmt.Fprintf(&b, "\t{%s, %q, %q, %q, %q, %v},\n", t.Keyword, t.VR, t.VM, t.Keyword, t.Name, t.Retired)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// Storage SOP classes whose instances are not about a patient (PS3.3 Annex
// GG "non-patient objects") are left out of the archive's table: they carry
// no Patient, Study or Series identity to file them under.
var nonPatient = map[string]bool{
	"1.2.840.10008.1.3.10":          true, // Media Storage Directory Storage (media only)
	"1.2.840.10008.5.1.4.38.1":      true, // Hanging Protocol Storage
	"1.2.840.10008.5.1.4.39.1":      true, // Color Palette Storage
	"1.2.840.10008.5.1.4.43.1":      true, // Generic Implant Template Storage
	"1.2.840.10008.5.1.4.44.1":      true, // Implant Assembly Template Storage
	"1.2.840.10008.5.1.4.45.1":      true, // Implant Template Group Storage
	"1.2.840.10008.5.1.4.1.1.200.1": true, // CT Defined Procedure Protocol Storage
	"1.2.840.10008.5.1.4.1.1.200.3": true, // Protocol Approval Storage
	"1.2.840.10008.5.1.4.1.1.200.7": true, // XA Defined Procedure Protocol Storage
	"1.2.840.10008.5.1.4.1.1.201.1": true, // Inventory Storage
}

func isStorage(u uidEntry) bool {
	if u.Type != "SOP Class" || !strings.Contains(u.Name, "Storage") || nonPatient[u.UID] {
		return false
	}
	return !strings.Contains(u.Name, "Storage Commitment")
}

// Transfer syntaxes that never carry a stored data set over DIMSE: MIME and
// XML encodings, real-time video and audio, and Papyrus 3.
var notForStorage = map[string]bool{
	"1.2.840.10008.1.2.6.1": true,
	"1.2.840.10008.1.2.6.2": true,
	"1.2.840.10008.1.2.7.1": true,
	"1.2.840.10008.1.2.7.2": true,
	"1.2.840.10008.1.2.7.3": true,
	"1.2.840.10008.1.20":    true,
}

func genUIDs(uids []uidEntry, version string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by dictgen from the %s UID dictionary and supplement.txt. DO NOT EDIT.\n\npackage uid\n\n", version)
	b.WriteString("// UIDs of the DICOM UID registry (PS3.6 Annex A), named by keyword.\nconst (\n")
	for _, u := range uids {
		note := u.Name
		if u.Retired {
			note += " (retired)"
		}
		fmt.Fprintf(&b, "\t%s = %q // %s: %s\n", u.Keyword, u.UID, u.Type, note)
	}
	b.WriteString(")\n\n// registry holds every named UID.\nvar registry = [...]Entry{\n")
	for _, u := range uids {
		fmt.Fprintf(&b, "\t{%s, %q, %q, %q, %v},\n", u.Keyword, u.Keyword, u.Name, u.Type, u.Retired)
	}
	b.WriteString("}\n\n// storageClasses are the Storage SOP classes of PS3.4 Annex B (current and retired) that the archive accepts.\nvar storageClasses = [...]string{\n")
	for _, u := range uids {
		if isStorage(u) {
			fmt.Fprintf(&b, "\t%s,\n", u.Keyword)
		}
	}
	b.WriteString("}\n\n// storageSyntaxes are the transfer syntaxes a stored data set may arrive in.\nvar storageSyntaxes = [...]string{\n")
	for _, u := range uids {
		if u.Type == "Transfer Syntax" && !notForStorage[u.UID] {
			fmt.Fprintf(&b, "\t%s,\n", u.Keyword)
		}
	}
	b.WriteString("}\n")
	return b.Bytes()
}

func write(path string, src []byte) {
	out, err := format.Source(src)
	if err != nil {
		log.Fatalf("format %s: %v", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		log.Fatal(err)
	}
}
