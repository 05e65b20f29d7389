package testpeer

import (
	"context"
	"regexp"
	"strconv"
	"strings"
)

// dumpLine matches a top-level element of dcmdump's output and its value:
// in brackets for text, bare for numbers, or no value.
var dumpLine = regexp.MustCompile(`^\(([0-9a-f]{4}),([0-9a-f]{4})\) (\w\w) (?:\[(.*)\]|(\(no value available\))|(-?[0-9][^ ]*(?:\\-?[0-9][^ ]*)*))\s+#`)

// Dump runs dcmtk's dcmdump on a file and returns the values of its
// top-level text and integer elements outside the File Meta Information,
// keyed by tag (group<<16 | element): text converted to UTF-8 (dcmdump
// +U8), multiple values joined by backslashes, padding trimmed as PS3.5
// allows; standard elements sent as UN read with their dictionary VR
// (dcmdump +uc, PS3.5 §6.2.2). It gives tests an account of a file that
// owes nothing to pacsd's own parser. dcmdump relabels the character set it converted from as
// ISO_IR 192, so Specific Character Set is left out.
func Dump(ctx context.Context, path string) (map[uint32]string, error) {
	out, _, err := Run(ctx, "dcmdump", "-q", "+U8", "+L", "-Un", "+uc", path)
	if err != nil {
		return nil, err
	}
	return parseDump(out), nil
}

// DumpFiles runs one dcmdump on many files, which spares a process and a
// dictionary load per file, and returns what Dump would for each, keyed
// by path. A file dcmdump cannot read has no entry.
func DumpFiles(ctx context.Context, paths []string) (map[string]map[uint32]string, error) {
	out, _, err := Run(ctx, "dcmdump", append([]string{"-q", "+F", "+U8", "+L", "-Un"}, paths...)...)
	if err != nil && out == "" {
		return nil, err
	}
	res := map[string]map[uint32]string{}
	for _, chunk := range strings.Split(out, "# dcmdump (")[1:] {
		first, rest, _ := strings.Cut(chunk, "\n")
		_, path, ok := strings.Cut(first, "): ")
		if !ok || !strings.Contains(rest, "# Dicom-Data-Set") {
			continue
		}
		res[path] = parseDump(rest)
	}
	return res, nil
}

// parseDump reads dcmdump's output as Dump documents.
func parseDump(out string) map[uint32]string {
	vals := map[uint32]string{}
	for _, line := range strings.Split(out, "\n") {
		m := dumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		g, _ := strconv.ParseUint(m[1], 16, 16)
		e, _ := strconv.ParseUint(m[2], 16, 16)
		t := uint32(g)<<16 | uint32(e)
		if g == 2 || t == 0x00080005 {
			continue
		}
		switch m[3] {
		case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UI":
			parts := strings.Split(m[4], `\`)
			for i := range parts {
				parts[i] = strings.Trim(parts[i], " ")
			}
			v := strings.Join(parts, `\`)
			if strings.Trim(v, `\`) == "" {
				v = ""
			}
			vals[t] = v
		case "LT", "ST", "UT":
			vals[t] = strings.TrimRight(m[4], " ")
		case "US", "UL", "SS", "SL":
			vals[t] = m[6]
		}
	}
	return vals
}
