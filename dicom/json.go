package dicom

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
)

// JSONOptions control how binary values are written as DICOM JSON.
type JSONOptions struct {
	// BulkDataURI, if not nil, names a binary value that is not held in
	// memory; such values are otherwise written with their VR only.
	BulkDataURI func(path []tag.Tag, b *Binary) string
}

// AppendJSON appends d to dst as a DICOM JSON object (PS3.18 Annex F):
// keys are tags in eight upper-case hexadecimal digits, PN values are
// objects of their component groups, IS, DS and the binary number VRs are
// JSON numbers, binary values are InlineBinary when held in memory.
func (d *Dataset) AppendJSON(dst []byte, opts JSONOptions) []byte {
	return d.appendJSON(dst, opts, nil)
}

// MarshalJSON encodes d as DICOM JSON, binary values held in memory
// inline and others omitted.
func (d *Dataset) MarshalJSON() ([]byte, error) {
	return d.AppendJSON(nil, JSONOptions{}), nil
}

func (d *Dataset) appendJSON(dst []byte, opts JSONOptions, path []tag.Tag) []byte {
	dst = append(dst, '{')
	els := d.Elements
	byTag := func(a, b Element) int { return cmp.Compare(a.Tag, b.Tag) }
	if !slices.IsSortedFunc(els, byTag) {
		// DICOM JSON lists attributes in ascending tag order (PS3.18
		// §F.2.2); a malformed data set may not have been.
		els = slices.Clone(els)
		slices.SortStableFunc(els, byTag)
	}
	n := 0
	for i := range els {
		e := &els[i]
		if e.Tag.Element() == 0x0000 {
			continue // Group Length is not part of DICOM JSON (PS3.18 §F.2.2)
		}
		if n++; n > 1 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, e.Tag.Hex()...)
		dst = append(dst, `":{"vr":"`...)
		dst = append(dst, e.VR...)
		dst = append(dst, '"')
		dst = e.appendValue(dst, opts, append(path, e.Tag))
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func (e *Element) appendValue(dst []byte, opts JSONOptions, path []tag.Tag) []byte {
	switch {
	case e.VR == "SQ":
		if len(e.Items) == 0 {
			return dst
		}
		dst = append(dst, `,"Value":[`...)
		for i, it := range e.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = it.appendJSON(dst, opts, path)
		}
		return append(dst, ']')
	case e.Binary != nil && (e.VR != "SV" && e.VR != "UV" || e.Values == nil):
		if len(e.Binary.Data) == 0 && e.Binary.Length <= 0 {
			// An empty value has neither InlineBinary nor a URI
			// (PS3.18 §F.2.5); the walker holds it as nil Data.
			return dst
		}
		if e.Binary.Data != nil {
			dst = append(dst, `,"InlineBinary":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Binary.Data)
			return append(dst, '"')
		}
		if opts.BulkDataURI != nil {
			if uri := opts.BulkDataURI(path, e.Binary); uri != "" {
				dst = append(dst, `,"BulkDataURI":`...)
				// Not strconv.Quote: its \x and \v escapes are not JSON.
				return appendString(dst, uri)
			}
		}
		return dst
	case len(e.Values) == 0:
		return dst
	}
	dst = append(dst, `,"Value":[`...)
	for i, v := range e.Values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONValue(dst, e.VR, v)
	}
	return append(dst, ']')
}

func appendJSONValue(dst []byte, vr, v string) []byte {
	if v == "" {
		return append(dst, "null"...)
	}
	switch vr {
	case "PN":
		groups := strings.SplitN(v, "=", 3)
		names := [...]string{"Alphabetic", "Ideographic", "Phonetic"}
		dst = append(dst, '{')
		n := 0
		for i, g := range groups {
			if g == "" {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `"`+names[i]+`":`...)
			dst = appendString(dst, g)
		}
		return append(dst, '}')
	case "IS", "SS", "US", "SL", "UL", "SV", "UV":
		if n, err := strconv.ParseInt(strings.TrimPrefix(v, "+"), 10, 64); err == nil {
			if (vr == "SV" || vr == "UV") && (n > 1<<53 || n < -(1<<53)) {
				return appendString(dst, v) // PS3.18 §F.2.3.1
			}
			return strconv.AppendInt(dst, n, 10)
		}
		if u, err := strconv.ParseUint(v, 10, 64); err == nil && vr == "UV" {
			return appendString(dst, strconv.FormatUint(u, 10))
		}
	case "DS", "FL", "FD":
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			n := strconv.AppendFloat(dst, f, 'g', -1, 64)
			if vr != "DS" || sameDecimal(v, n[len(dst):]) {
				return n
			}
			// A DS of 16 significant digits that no float64 holds
			// stays a string, as PS3.18 §F.2.3 allows, rather than lose
			// precision.
			dst = n[:len(dst)]
		}
	}
	// Text, and numbers too malformed to be JSON numbers, as strings.
	return appendString(dst, v)
}

// sameDecimal reports whether the decimal texts a and b, b the shortest
// form of the float64 that a parses to, denote the same number. A float64
// keeps any 15 significant decimal digits, so only longer texts need an
// exact comparison.
func sameDecimal(a string, b []byte) bool {
	digits := 0
	for _, c := range strings.TrimLeft(strings.Split(strings.ToLower(a), "e")[0], "+-0.") {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits <= 15 {
		return true
	}
	x, okx := new(big.Rat).SetString(a)
	y, oky := new(big.Rat).SetString(string(b))
	return okx && oky && x.Cmp(y) == 0
}

// appendString appends s as a JSON string; unlike strconv.Quote it leaves
// non-ASCII characters as they are, as JSON allows.
func appendString(dst []byte, s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return append(dst, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...)
}

// ParseJSON decodes a DICOM JSON object. Numbers become their decimal text,
// PN objects their "="-joined component groups, InlineBinary its bytes;
// BulkDataURI values are dropped.
func ParseJSON(b []byte) (*Dataset, error) {
	var m map[string]jsonElement
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("dicom: DICOM JSON: %w", err)
	}
	return fromJSON(m)
}

type jsonElement struct {
	VR           string            `json:"vr"`
	Value        []json.RawMessage `json:"Value"`
	InlineBinary []byte            `json:"InlineBinary"`
}

func fromJSON(m map[string]jsonElement) (*Dataset, error) {
	ds := &Dataset{Elements: make([]Element, 0, len(m))}
	for k, je := range m {
		t, err := tag.Parse(k)
		if err != nil || len(k) != 8 {
			return nil, fmt.Errorf("dicom: DICOM JSON key %q is not a tag", k)
		}
		e := Element{Tag: t, VR: je.VR}
		if je.InlineBinary != nil {
			e.Binary = &Binary{Offset: -1, Length: int64(len(je.InlineBinary)), Data: je.InlineBinary}
		}
		for _, raw := range je.Value {
			if je.VR == "SQ" {
				var item map[string]jsonElement
				if err := json.Unmarshal(raw, &item); err != nil {
					return nil, fmt.Errorf("dicom: DICOM JSON %s item: %w", k, err)
				}
				sub, err := fromJSON(item)
				if err != nil {
					return nil, err
				}
				e.Items = append(e.Items, sub)
				continue
			}
			v, err := jsonValue(je.VR, raw)
			if err != nil {
				return nil, fmt.Errorf("dicom: DICOM JSON %s: %w", k, err)
			}
			e.Values = append(e.Values, v)
		}
		ds.Elements = append(ds.Elements, e)
	}
	sort.Slice(ds.Elements, func(i, j int) bool { return ds.Elements[i].Tag < ds.Elements[j].Tag })
	return ds, nil
}

func jsonValue(vr string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case bytes.Equal(raw, []byte("null")):
		return "", nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case len(raw) > 0 && raw[0] == '{' && vr == "PN":
		var pn struct{ Alphabetic, Ideographic, Phonetic string }
		if err := json.Unmarshal(raw, &pn); err != nil {
			return "", err
		}
		return strings.TrimRight(pn.Alphabetic+"="+pn.Ideographic+"="+pn.Phonetic, "="), nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	return n.String(), nil
}
