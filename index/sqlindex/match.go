package sqlindex

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the value rules of matching (PS3.4 C.2.2.2) that do not
// depend on SQL: which VRs take wild cards, how a wild card value becomes
// a pattern, how dates and times are normalized so that values of
// different precision compare by what they mean, and the same rules
// written in Go for what SQL cannot check (the items of a sequence).

// wildcardVRs are the VRs whose keys may hold the wild cards "*" and "?"
// (PS3.4 C.2.2.2.4).
var wildcardVRs = map[string]bool{
	"AE": true, "CS": true, "LO": true, "LT": true, "PN": true, "SH": true,
	"ST": true, "UC": true, "UR": true, "UT": true,
}

func hasWildcard(v string) bool { return strings.ContainsAny(v, "*?") }

// emptyValue is the key value that asks for the entities whose attribute
// is empty or absent (PS3.4 C.2.2.2.1, Empty Value Matching).
const emptyValue = `""`

// literalPrefix returns the part of a wild card value before its first
// wild card.
func literalPrefix(v string) string {
	if i := strings.IndexAny(v, "*?"); i >= 0 {
		return v[:i]
	}
	return v
}

// prefixEnd returns the least string greater than every string that
// starts with prefix, in SQLite's byte order: no UTF-8 sequence holds the
// byte 0xFF. Comparisons against it are what let SQLite answer a prefix
// from an index, as it does not for GLOB with a bound pattern.
func prefixEnd(prefix string) string { return prefix + "\xff" }

// globPattern translates a DICOM wild card value into a SQLite GLOB
// pattern, which is case-sensitive. When inValue is set, "?" does not
// match the backslash that separates the values of a multi-valued column.
func globPattern(v string, inValue bool) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '*':
			b.WriteByte('*')
		case '?':
			if inValue {
				b.WriteString(`[^\]`)
			} else {
				b.WriteByte('?')
			}
		case '[':
			b.WriteString("[[]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// likePattern translates a DICOM wild card value into a LIKE pattern with
// the backslash as its escape character (PostgreSQL's default), which is
// case-sensitive in PostgreSQL.
func likePattern(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// wildMatch reports whether s matches the DICOM wild card value p, by
// characters (runes), case-sensitively.
func wildMatch(p, s string) bool {
	// The classic backtracking match: on a mismatch, let the last "*"
	// swallow one more character.
	var px, sx, starP, starS = 0, 0, -1, 0
	for sx < len(s) {
		if px < len(p) {
			pr, pn := utf8.DecodeRuneInString(p[px:])
			sr, sn := utf8.DecodeRuneInString(s[sx:])
			switch {
			case pr == '*':
				starP, starS = px, sx
				px += pn
				continue
			case pr == '?' || pr == sr:
				px += pn
				sx += sn
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// crossesValues reports whether a wild card value, matched against the
// backslash-joined values of a multi-valued column, could match across
// two of them: a "*" between two other characters can swallow a
// separator, a leading or trailing one cannot change which value a match
// starts or ends in.
func crossesValues(v string) bool {
	t := strings.Trim(v, "*")
	return strings.Contains(t, "*")
}

// Normalized dates and times are fixed-width digit strings that compare
// as text in the order of the moments they stand for:
//
//	DA  YYYYMMDD
//	TM  HHMMSS.FFFFFF
//	DT  YYYYMMDDHHMMSS.FFFFFF, in UTC when an offset is known
//
// A value of lesser precision stands for the start of its period when
// stored, and for its whole period in a key: the key "1030" is the range
// 10:30:00.000000 to 10:30:59.999999, so it matches a stored "103015.25";
// a stored "10" is 10:00:00.000000. A value that is not valid normalizes
// to "", which no key but universal matching matches.

// normDate returns the normalized form of a DA value, accepting the
// "YYYY.MM.DD" form of ACR-NEMA 2.0 as well.
func normDate(v string) string {
	v = strings.TrimSpace(v)
	if len(v) == 10 && v[4] == '.' && v[7] == '.' {
		v = v[:4] + v[5:7] + v[8:]
	}
	if len(v) != 8 || !digits(v) {
		return ""
	}
	m, _ := strconv.Atoi(v[4:6])
	d, _ := strconv.Atoi(v[6:])
	if m < 1 || m > 12 || d < 1 || d > 31 {
		return ""
	}
	return v
}

// normTime returns the normalized form of a TM value: the start of the
// period it names, or its end when high is set. It accepts the
// "HH:MM:SS.frac" form of ACR-NEMA 2.0 as well.
func normTime(v string, high bool) string {
	v = strings.TrimSpace(v)
	if strings.Contains(v, ":") {
		v = strings.ReplaceAll(v, ":", "")
	}
	whole, frac, hasFrac := strings.Cut(v, ".")
	if !digits(whole) || len(whole)%2 != 0 || len(whole) < 2 || len(whole) > 6 ||
		hasFrac && (len(whole) != 6 || len(frac) == 0 || len(frac) > 6 || !digits(frac)) {
		return ""
	}
	limits := []int{23, 59, 60}
	for i := 0; i < len(whole); i += 2 {
		if n, _ := strconv.Atoi(whole[i : i+2]); n > limits[i/2] {
			return ""
		}
	}
	fill, fillFrac := "000000", "000000"
	if high {
		fill, fillFrac = "005959", "999999"
	}
	return whole + fill[len(whole):] + "." + frac + fillFrac[len(frac):]
}

// normDateTime returns the normalized form of a DT value: the start of
// the period it names, or its end when high is set, moved to UTC by the
// offset it carries or, when it carries none, by tz (a Timezone Offset
// From UTC value, "&ZZXX"). Without either it is left as it is.
func normDateTime(v, tz string, high bool) string {
	v = strings.TrimSpace(v)
	offset := ""
	if i := strings.IndexAny(v, "+-"); i >= 0 {
		v, offset = v[:i], v[i:]
	} else if tz = strings.TrimSpace(tz); tz != "" {
		offset = tz
	}
	whole, frac, hasFrac := strings.Cut(v, ".")
	n := len(whole)
	if !digits(whole) || n < 4 || n > 14 || n%2 != 0 ||
		hasFrac && (n != 14 || len(frac) == 0 || len(frac) > 6 || !digits(frac)) {
		return ""
	}
	num := func(s string) int { x, _ := strconv.Atoi(s); return x }
	year, month, day, hour, minute, sec := num(whole[:4]), 1, 1, 0, 0, 0
	if high {
		month, hour, minute, sec = 12, 23, 59, 59
	}
	if n >= 6 {
		month = num(whole[4:6])
	}
	if month < 1 || month > 12 {
		return ""
	}
	last := time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if high {
		day = last
	}
	if n >= 8 {
		day = num(whole[6:8])
	}
	if n >= 10 {
		hour = num(whole[8:10])
	}
	if n >= 12 {
		minute = num(whole[10:12])
	}
	if n >= 14 {
		sec = num(whole[12:14])
	}
	if day < 1 || day > last || hour > 23 || minute > 59 || sec > 60 {
		return ""
	}
	fillFrac := "000000"
	if high {
		fillFrac = "999999"
	}
	frac += fillFrac[len(frac):]
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if offset != "" {
		off, ok := parseOffset(offset)
		if !ok {
			return ""
		}
		t = t.Add(-off)
	}
	if t.Year() < 0 || t.Year() > 9999 {
		return ""
	}
	return t.Format("20060102150405") + "." + frac
}

// parseOffset reads an offset from UTC, "&ZZXX".
func parseOffset(s string) (time.Duration, bool) {
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') || !digits(s[1:]) {
		return 0, false
	}
	h, _ := strconv.Atoi(s[1:3])
	m, _ := strconv.Atoi(s[3:])
	if h > 14 || m > 59 {
		return 0, false
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	if s[0] == '-' {
		d = -d
	}
	return d, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// normalize returns the normalized form of a stored DA, TM or DT value.
func normalize(vr, v, tz string) string {
	switch vr {
	case "DA":
		return normDate(v)
	case "TM":
		return normTime(v, false)
	case "DT":
		return normDateTime(v, tz, false)
	}
	return v
}

// timeRange is the normalized range a DA, TM or DT key asks for; an open
// end is "".
type timeRange struct{ lo, hi string }

// parseRange reads a DA, TM or DT key: a single value, which stands for
// its whole period, or a range "a-b", "-b" or "a-" (PS3.4 C.2.2.2.5).
// Keys of type DT without an offset are moved to UTC by tz, the Timezone
// Offset From UTC of the identifier, when it has one.
func parseRange(vr, v, tz string) (timeRange, error) {
	v = strings.TrimSpace(v)
	bound := func(s string, high bool) string {
		switch vr {
		case "DA":
			return normDate(s)
		case "TM":
			return normTime(s, high)
		default:
			return normDateTime(s, tz, high)
		}
	}
	if vr == "DT" {
		// The sign of an offset is a hyphen too: a value that is a
		// date-time as a whole is one; otherwise the hyphen that leaves
		// a valid bound (or nothing) on each side separates the range.
		if lo := bound(v, false); lo != "" {
			return timeRange{lo, bound(v, true)}, nil
		}
		for i := 0; i < len(v); i++ {
			if v[i] != '-' {
				continue
			}
			a, b := strings.TrimSpace(v[:i]), strings.TrimSpace(v[i+1:])
			r := timeRange{bound(a, false), bound(b, true)}
			if (a == "") != (r.lo == "") || (b == "") != (r.hi == "") || a == "" && b == "" {
				continue
			}
			return r, nil
		}
		return timeRange{}, fmt.Errorf("%q is neither a date-time nor a range of them", v)
	}
	a, b, isRange := strings.Cut(v, "-")
	if !isRange {
		r := timeRange{bound(v, false), bound(v, true)}
		if r.lo == "" {
			return timeRange{}, fmt.Errorf("%q is not a valid %s value", v, vr)
		}
		return r, nil
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	r := timeRange{bound(a, false), bound(b, true)}
	if a == "" && b == "" || (a != "") != (r.lo != "") || (b != "") != (r.hi != "") {
		return timeRange{}, fmt.Errorf("%q is not a valid %s range", v, vr)
	}
	return r, nil
}

// contains reports whether the normalized value n lies in r.
func (r timeRange) contains(n string) bool {
	return n != "" && (r.lo == "" || n >= r.lo) && (r.hi == "" || n <= r.hi)
}
