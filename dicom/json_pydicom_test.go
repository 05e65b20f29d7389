package dicom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// pydicomScript writes, for each file named on its command line, the
// DICOM JSON that pydicom's Dataset.to_json_dict makes of it (or the error
// that stopped pydicom), as one JSON object keyed by path.
const pydicomScript = `
import hashlib, json, sys, warnings
import pydicom
from pydicom import config

# Decode standard elements sent as UN by the data dictionary, as pacsd
# does (PS3.5 6.2.2); pydicom's default, set here so that it is compared.
config.replace_un_with_known_vr = True
warnings.simplefilter("ignore")

def bulk(elem):
    # The length and digest of the value stand in for a URI, so that
    # values pydicom leaves out of line can still be compared.
    value = elem.value
    return "bulk:%d:%s" % (len(value), hashlib.sha256(value).hexdigest())

out = {}
for path in sys.argv[1:]:
    try:
        ds = pydicom.dcmread(path)
        d = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
        out[path] = {"json": json.dumps(d, allow_nan=False)}
    except Exception as e:
        out[path] = {"error": "%s: %s" % (type(e).__name__, e)}
json.dump(out, sys.stdout)
`

// knownBugs are differences from pydicom that are pacsd's bugs outside
// the JSON encoder, keyed by sample and element path. The test logs them
// instead of failing, and fails once one is gone, so that its entry is
// removed with the fix.
var knownBugs = map[string]string{}

// TestJSONMatchesPydicom compares pacsd's DICOM JSON of every sample file
// with pydicom's, an independent implementation, element by element:
// tags, VRs and values. Each difference it tolerates is marked
// "Tolerance:" in the comparison below, with its reason; pacsd's own bugs
// outside the encoder are in knownBugs.
func TestJSONMatchesPydicom(t *testing.T) {
	py := pydicomPython(t)
	type sample struct{ name, path string }
	var samples []sample
	own, _ := filepath.Glob(filepath.Join(sampleDirPath(t, ownSamples), "*.dcm"))
	for _, p := range own {
		samples = append(samples, sample{"testdata/" + filepath.Base(p), p})
	}
	testFiles, charsetDir := sampleDirPath(t, pydicomTestFiles), sampleDirPath(t, pydicomCharsetFiles)
	charset, _ := filepath.Glob(filepath.Join(charsetDir, "*.dcm"))
	for _, p := range append(testpeer.PydicomFilesT(t), charset...) {
		rel, err := filepath.Rel(filepath.Dir(testFiles), p)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{filepath.ToSlash(rel), p})
	}
	paths := make([]string, len(samples))
	for i, s := range samples {
		paths[i] = s.path
	}
	theirs := runPydicom(t, py, paths)

	seenBugs := map[string]bool{}
	total := 0
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			m, data, err := readPart10(s.path)
			if err != nil {
				// Files without File Meta Information are not what
				// C-STORE or STOW-RS deliver.
				t.Skipf("not Part-10: %v", err)
			}
			res, ok := theirs[s.path]
			switch {
			case !ok:
				t.Fatal("pydicom wrote nothing for it")
			case res.Error != "":
				// badVR.dcm, malformed on purpose, stops pydicom.
				t.Skipf("pydicom cannot read it: %s", res.Error)
			}
			ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
			if !ok {
				t.Fatalf("transfer syntax %q unknown", m.TransferSyntaxUID)
			}
			_, h, err := scanAll(t, data, ts, Limits{})
			if err == nil {
				err = h.Err
			}
			if err != nil {
				if !strings.Contains(s.name, "truncated") {
					t.Fatalf("header: %v", err)
				}
				// Truncated on purpose: pydicom reads on where the
				// scanner stops.
				t.Skipf("header incomplete: %v", err)
			}
			// The offsets of a deflated data set count bytes of
			// the inflated one.
			c := &pydicomComparison{data: inflate(t, data, ts), ts: ts}
			c.bitsAllocated, _ = strconv.Atoi(h.Dataset.First(tag.BitsAllocated))
			ours := decodeJSON(t, h.Dataset.AppendJSON(nil, JSONOptions{BulkDataURI: c.uri}))
			var their map[string]any
			d := json.NewDecoder(strings.NewReader(res.JSON))
			d.UseNumber()
			if err := d.Decode(&their); err != nil {
				t.Fatalf("pydicom's JSON: %v", err)
			}
			c.dataset("", ours, their)
			for _, diff := range c.diffs {
				elem, _, _ := strings.Cut(diff.path, "#")
				key := s.name + " " + elem
				if bug, ok := knownBugs[key]; ok {
					seenBugs[key] = true
					t.Logf("known bug (%s): %s: %s", bug, diff.path, diff.msg)
					continue
				}
				t.Errorf("%s: %s", diff.path, diff.msg)
			}
			total += c.compared
		})
	}
	for key := range knownBugs {
		if !seenBugs[key] {
			t.Errorf("known bug %q no longer seen: remove it from knownBugs", key)
		}
	}
	if total < 5000 {
		t.Errorf("only %d elements compared with pydicom", total)
	}
	t.Logf("%d elements compared with pydicom", total)
}

type pydicomResult struct{ JSON, Error string }

// runPydicom runs pydicomScript with py on paths.
func runPydicom(t *testing.T, py string, paths []string) map[string]pydicomResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", pydicomScript}, paths...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pydicom: %v\n%s", err, stderr.Bytes())
	}
	var res map[string]pydicomResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("pydicom's output: %v", err)
	}
	return res
}

// pydicomPython returns a python3 on PATH that imports pydicom. The first
// python3 on a developer's PATH is often a virtual environment's or
// pyenv's, without the modules of Debian's python3-pydicom; the system's
// one comes later. A missing pydicom skips t, or fails it under CI=true,
// as testpeer.Need does.
func pydicomPython(t *testing.T) string {
	t.Helper()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "python3")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := exec.CommandContext(ctx, p, "-c", "import pydicom").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no python3 on PATH imports pydicom, and under CI=true a missing peer fails the test: the CI setup must install python3-pydicom, as `make test` does")
	}
	t.Skip("no python3 on PATH imports pydicom; run `make test`, which installs python3-pydicom")
	return ""
}

type pydicomDiff struct{ path, msg string }

// pydicomComparison compares one sample's JSON with pydicom's.
type pydicomComparison struct {
	data []byte // the (inflated) data set, for the values pacsd locates
	ts   uid.TransferSyntax
	// bitsAllocated is the data set's, for the byte order of its Pixel
	// Data (see SwapUnit).
	bitsAllocated int
	// bulk holds the values given a URI, which is "bulk:" and the index.
	bulk     []*Binary
	compared int
	diffs    []pydicomDiff
}

func (c *pydicomComparison) uri(_ []tag.Tag, b *Binary) string {
	c.bulk = append(c.bulk, b)
	return "bulk:" + strconv.Itoa(len(c.bulk)-1)
}

func (c *pydicomComparison) errorf(path, format string, args ...any) {
	c.diffs = append(c.diffs, pydicomDiff{path, fmt.Sprintf(format, args...)})
}

func (c *pydicomComparison) dataset(prefix string, ours, theirs map[string]any) {
	for _, k := range slices.Sorted(mapKeys(ours, theirs)) {
		o, inOurs := ours[k].(map[string]any)
		p, inTheirs := theirs[k].(map[string]any)
		switch {
		case inOurs && inTheirs:
			c.compared++
			c.element(prefix+k, o, p)
		case inOurs:
			c.errorf(prefix+k, "only pacsd has it: %v", o)
		// Tolerance: pydicom keeps Data Set Trailing Padding, which
		// the decoder drops: it is padding, without meaning.
		case k == "FFFCFFFC" && prefix == "":
		// Tolerance: pydicom keeps Group Length elements, which
		// PS3.18 §F.2.2 leaves out of DICOM JSON.
		case strings.HasSuffix(k, "0000"):
		default:
			c.errorf(prefix+k, "only pydicom has it: %v", p)
		}
	}
}

func mapKeys(ms ...map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}

func (c *pydicomComparison) element(path string, o, p map[string]any) {
	vr := o["vr"].(string)
	last := path[strings.LastIndexAny(path, "/")+1:]
	if t, err := tag.Parse(last); vr == "UN" && err == nil && t.IsPrivate() {
		// Tolerance: pydicom knows the private dictionaries of some
		// vendors and decodes their elements sent as UN; pacsd knows
		// the standard's dictionary only.
		return
	}
	if p["vr"] != vr {
		c.errorf(path, "VR %s, pydicom %v", vr, p["vr"])
		return
	}
	_, ob := o["InlineBinary"]
	_, ou := o["BulkDataURI"]
	_, pb := p["InlineBinary"]
	_, pu := p["BulkDataURI"]
	if ob || ou || pb || pu {
		c.binary(path, o, p)
		return
	}
	// Tolerance: pydicom writes an empty sequence as an empty Value
	// array; pacsd leaves Value out, as PS3.18 §F.2.5 has it for every
	// empty element.
	ov, _ := o["Value"].([]any)
	pv, _ := p["Value"].([]any)
	if len(ov) != len(pv) {
		c.errorf(path, "%d values %v, pydicom %d %v", len(ov), ov, len(pv), pv)
		return
	}
	for i := range ov {
		vpath := path
		if len(ov) > 1 {
			vpath = fmt.Sprintf("%s#%d", path, i)
		}
		switch vr {
		case "SQ":
			oi, _ := ov[i].(map[string]any)
			pi, _ := pv[i].(map[string]any)
			c.dataset(fmt.Sprintf("%s[%d]/", path, i), oi, pi)
		case "PN":
			if a, b := pnGroups(ov[i]), pnGroups(pv[i]); a != b {
				c.errorf(vpath, "%q, pydicom %q", a, b)
			}
		case "FL", "FD", "DS", "IS", "SL", "SS", "SV", "UL", "US", "UV":
			if !sameNumber(vr, ov[i], pv[i]) {
				c.errorf(vpath, "%v, pydicom %v", ov[i], pv[i])
			}
		default:
			if a, b := text(vr, ov[i]), text(vr, pv[i]); a != b {
				c.errorf(vpath, "%q, pydicom %q", a, b)
			}
		}
	}
}

// binary compares the values of a binary element, or of one either side
// put out of line.
//
// Tolerance: which values are inline differs. pacsd holds values of up to
// Limits.Inline (1024) bytes, but never an encapsulated one; pydicom's
// bulk_data_threshold counts base64 characters, so it puts values of 769
// bytes and more out of line, and small encapsulated Pixel Data inline.
// Values are compared whichever way each side wrote them: bytes, or
// pydicom's length and SHA-256 (see pydicomScript).
func (c *pydicomComparison) binary(path string, o, p map[string]any) {
	ours, oursLen, ok := c.oursBytes(path, o)
	if !ok {
		c.errorf(path, "pacsd's value unreadable: %v", o)
		return
	}
	switch {
	case p["InlineBinary"] != nil:
		theirs, err := base64.StdEncoding.DecodeString(p["InlineBinary"].(string))
		if err != nil {
			c.errorf(path, "pydicom's InlineBinary: %v", err)
			return
		}
		if ours == nil {
			if int64(len(theirs)) != oursLen {
				c.errorf(path, "%d bytes, pydicom %d", oursLen, len(theirs))
			}
			return
		}
		if !bytes.Equal(ours, theirs) {
			c.errorf(path, "value differs: %.40x…, pydicom %.40x…", ours, theirs)
		}
	case p["BulkDataURI"] != nil:
		var n int64
		var sum string
		if _, err := fmt.Sscanf(p["BulkDataURI"].(string), "bulk:%d:%s", &n, &sum); err != nil {
			c.errorf(path, "pydicom's URI %v: %v", p["BulkDataURI"], err)
			return
		}
		if oursLen != n {
			c.errorf(path, "%d bytes, pydicom %d", oursLen, n)
			return
		}
		if h := sha256.Sum256(ours); ours != nil && hex.EncodeToString(h[:]) != sum {
			c.errorf(path, "value differs from pydicom's (SHA-256)")
		}
	default:
		if oursLen != 0 {
			c.errorf(path, "%d bytes, pydicom none", oursLen)
		}
	}
}

// oursBytes returns pacsd's value of a binary element in the byte order of
// the file, which is how pydicom gives it, and its length; the bytes are
// nil when only the length is known (a located value of a deflated data
// set).
func (c *pydicomComparison) oursBytes(path string, o map[string]any) ([]byte, int64, bool) {
	if s, ok := o["InlineBinary"].(string); ok {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, 0, false
		}
		if c.ts.BigEndian {
			// Tolerance: pacsd's InlineBinary is little endian
			// whatever the file's transfer syntax (the walker
			// swaps big endian values; /metadata carries no
			// transfer-syntax parameter that would announce
			// another byte order, and PS3.18 §F.2.7 applies the
			// byte order rules of PS3.5); pydicom encodes a big
			// endian file's bytes as they are.
			b = bytes.Clone(b)
			t, _ := tag.Parse(path[strings.LastIndexAny(path, "/")+1:])
			swapUnits(b, SwapUnit(t, o["vr"].(string), c.bitsAllocated))
		}
		return b, int64(len(b)), true
	}
	if s, ok := o["BulkDataURI"].(string); ok {
		i, err := strconv.Atoi(strings.TrimPrefix(s, "bulk:"))
		if err != nil || i < 0 || i >= len(c.bulk) {
			return nil, 0, false
		}
		b := c.bulk[i]
		n := b.Length
		if b.Encapsulated {
			// Tolerance: Binary.Length of an encapsulated value
			// counts its Sequence Delimitation Item; pydicom's
			// value ends before it.
			n -= 8
		}
		if b.Offset < 0 {
			return nil, n, true
		}
		if b.Offset+n > int64(len(c.data)) {
			return nil, 0, false
		}
		return c.data[b.Offset : b.Offset+n], n, true
	}
	return []byte{}, 0, true
}

// pnGroups is a PN value as its "="-joined component groups.
func pnGroups(v any) string {
	m, _ := v.(map[string]any)
	g := func(k string) string { s, _ := m[k].(string); return strings.TrimRight(s, " ") }
	// Compared as "="-joined groups, so that an empty group written or
	// left out is the same. Tolerance: pydicom always writes the
	// Alphabetic group, empty or not, where PS3.18 §F.2.2 (and pacsd)
	// writes only the non-empty groups; and it writes an empty value as
	// {"Alphabetic": ""}, where pacsd writes null.
	return strings.TrimRight(g("Alphabetic")+"="+g("Ideographic")+"="+g("Phonetic"), "=")
}

// text is a string value with the padding PS3.5 §6.2 says is not
// significant trimmed.
func text(vr string, v any) string {
	// Tolerance: pydicom writes empty values as "", where PS3.18 §F.2.5
	// (and pacsd) has null.
	s, _ := v.(string)
	// Tolerance: pydicom trims the padding of the last value of a
	// multi-valued string only, keeping the spaces that end the others
	// ("DERIVED \PRIMARY"); they are not significant in these VRs.
	switch vr {
	case "LT", "ST", "UT", "UC", "PN":
		return strings.TrimRight(s, " ")
	}
	return strings.Trim(s, " \x00")
}

// sameNumber compares two JSON numbers (or strings of numbers) of vr.
func sameNumber(vr string, a, b any) bool {
	sa, sb := numberText(a), numberText(b)
	if sa == "" || sb == "" {
		return sa == sb
	}
	switch vr {
	case "FL":
		// Tolerance: pydicom writes a float32 as the float64 it
		// widens to (-77.20406341552734); pacsd as the shortest text
		// of the float32 (-77.20406). Same float32.
		x, errx := strconv.ParseFloat(sa, 32)
		y, erry := strconv.ParseFloat(sb, 32)
		return errx == nil && erry == nil && float32(x) == float32(y)
	case "DS", "FD":
		// Tolerance: compared as float64, the precision of pydicom's
		// DS: pacsd keeps a DS that no float64 holds exactly as a
		// string of its decimal (no sample has one today), where
		// pydicom writes the float64 nearest to it.
		x, errx := strconv.ParseFloat(sa, 64)
		y, erry := strconv.ParseFloat(sb, 64)
		return errx == nil && erry == nil && x == y
	}
	// Integers exactly, whether numbers or (beyond 2^53) strings.
	x, okx := new(big.Rat).SetString(sa)
	y, oky := new(big.Rat).SetString(sb)
	return okx && oky && x.Cmp(y) == 0
}

func numberText(v any) string {
	switch v := v.(type) {
	case json.Number:
		return v.String()
	case string:
		return strings.TrimSpace(v)
	}
	return "" // null
}
