package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// Attributes returned by every search of a level (PS3.18 Tables
// 10.6.3-3 to -5), besides the matching keys and the included fields.
// Study Description and the instance's image size are not required, but
// every viewer's study and series lists show them.
var (
	studyDefaults = []tag.Tag{
		tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.InstanceAvailability,
		tag.ModalitiesInStudy, tag.ReferringPhysicianName, tag.TimezoneOffsetFromUTC,
		tag.PatientName, tag.PatientID, tag.PatientBirthDate, tag.PatientSex,
		tag.StudyInstanceUID, tag.StudyID, tag.StudyDescription,
		tag.NumberOfStudyRelatedSeries, tag.NumberOfStudyRelatedInstances,
	}
	seriesDefaults = []tag.Tag{
		tag.StudyInstanceUID, tag.Modality, tag.TimezoneOffsetFromUTC, tag.SeriesDescription,
		tag.SeriesInstanceUID, tag.SeriesNumber, tag.SeriesDate, tag.SeriesTime,
		tag.NumberOfSeriesRelatedInstances, tag.PerformedProcedureStepStartDate,
		tag.PerformedProcedureStepStartTime,
	}
	instanceDefaults = []tag.Tag{
		tag.StudyInstanceUID, tag.SeriesInstanceUID, tag.SOPClassUID, tag.SOPInstanceUID,
		tag.InstanceAvailability, tag.TimezoneOffsetFromUTC, tag.InstanceNumber,
		tag.Rows, tag.Columns, tag.BitsAllocated, tag.NumberOfFrames,
	}
	// includefield=all adds these: what the index keeps of each level
	// that viewers and worklists show.
	studyAll = []tag.Tag{
		tag.IssuerOfPatientID, tag.PatientBirthTime, tag.OtherPatientIDs, tag.PatientAge,
		tag.PatientSize, tag.PatientWeight, tag.NameOfPhysiciansReadingStudy,
		tag.SOPClassesInStudy, tag.AdmittingDiagnosesDescription, tag.PatientComments,
	}
	seriesAll = []tag.Tag{
		tag.BodyPartExamined, tag.Laterality, tag.ProtocolName, tag.OperatorsName,
		tag.PerformingPhysicianName, tag.InstitutionName, tag.StationName, tag.Manufacturer,
		tag.ManufacturerModelName, tag.PerformedProcedureStepDescription,
	}
	instanceAll = []tag.Tag{
		tag.ImageType, tag.ContentDate, tag.ContentTime, tag.AcquisitionDateTime,
		tag.PhotometricInterpretation, tag.ContentLabel, tag.ContentDescription,
		tag.CompletionFlag, tag.VerificationFlag,
	}
)

func (s *Server) searchStudies(c echo.Context) error {
	return s.search(c, index.StudyLevel)
}

func (s *Server) searchSeries(c echo.Context) error {
	return s.search(c, index.SeriesLevel)
}

func (s *Server) searchInstances(c echo.Context) error {
	return s.search(c, index.ImageLevel)
}

// search answers a QIDO-RS request: matches as a DICOM JSON array,
// written as the index yields them.
func (s *Server) search(c echo.Context, level index.Level) error {
	if err := acceptsJSON(c.Request()); err != nil {
		return err
	}
	q, unsupported, err := s.parseSearch(c, level)
	if errors.Is(err, errNoMatch) {
		return c.NoContent(http.StatusNoContent)
	}
	if err != nil {
		return err
	}
	if len(unsupported) > 0 {
		// PS3.18 §8.3.4.4: keys the server does not match on are
		// named in a warning, and their values returned as found.
		names := make([]string, len(unsupported))
		for i, t := range unsupported {
			names[i] = keyword(t)
		}
		c.Response().Header().Add("Warning", fmt.Sprintf("299 pacsd %q", "pacsd does not match on "+strings.Join(names, ", ")+"; they are returned as return keys"))
	}
	ctx := c.Request().Context()
	matches := s.Index.Find
	if s.researching(c) {
		if err := s.researchQuery(ctx, q); errors.Is(err, errNoMatch) {
			return c.NoContent(http.StatusNoContent)
		} else if err != nil {
			return err
		}
		matches = func(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error] {
			return s.deidentified(ctx, level, s.Index.Find(ctx, q))
		}
	}
	limited := false
	if s.MaxMatches > 0 && (q.Limit == 0 || q.Limit > s.MaxMatches) {
		q.Limit, limited = s.MaxMatches+1, true
	}
	next, stop := iter.Pull2(matches(ctx, q))
	defer stop()
	first, err, ok := next()
	if err != nil {
		return err
	}
	if !ok {
		return c.NoContent(http.StatusNoContent) // PS3.18 §8.3.4.2: no matches
	}
	base := s.baseURL(c.Request())
	if limited {
		// Whether the search is cut short is known only at its end,
		// after the status line: the warning goes in a trailer.
		c.Response().Header().Set("Trailer", "Warning")
	}
	w := newJSONWriter(c, "")
	defer w.Close()
	w.WriteString("[")
	n := 0
	for ds := first; ; {
		if limited && n == s.MaxMatches {
			// Clients that do not read trailers miss the warning, so
			// it is logged as well.
			s.log().Warn("search cut at the maximum number of matches", "path", c.Request().URL.Path, "max", s.MaxMatches)
			c.Response().Header().Set(http.TrailerPrefix+"Warning",
				fmt.Sprintf("299 pacsd %q", fmt.Sprintf("the search matches more than %d results; the first %d are returned, ask for more with offset", s.MaxMatches, s.MaxMatches)))
			break
		}
		if n > 0 {
			w.WriteString(",")
		}
		s.decorate(ds, level, base)
		w.Write(ds.AppendJSON(w.buf[:0], dicom.JSONOptions{}))
		n++
		if n%64 == 0 {
			w.Flush()
		}
		if ds, err, ok = next(); err != nil {
			return err
		} else if !ok {
			break
		}
	}
	w.WriteString("]")
	return w.Close()
}

// decorate adds what the index does not keep to a match: its Retrieve
// URL, its availability and its character set, and drops Query/Retrieve
// Level, which QIDO-RS does not return.
func (s *Server) decorate(ds *dicom.Dataset, level index.Level, base string) {
	study := ds.First(tag.StudyInstanceUID)
	var url string
	switch level {
	case index.StudyLevel:
		url = studyURL(base, study)
	case index.SeriesLevel:
		url = seriesURL(base, study, ds.First(tag.SeriesInstanceUID))
	case index.ImageLevel:
		url = instanceURL(base, study, ds.First(tag.SeriesInstanceUID), ds.First(tag.SOPInstanceUID))
	}
	ds.Elements = slices.DeleteFunc(ds.Elements, func(e dicom.Element) bool { return e.Tag == tag.QueryRetrieveLevel })
	set(ds, dicom.Element{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 192"}})
	set(ds, dicom.Element{Tag: tag.RetrieveURL, VR: "UR", Values: []string{url}})
	if e, ok := ds.Find(tag.InstanceAvailability); ok && len(e.Values) == 0 {
		e.Values = []string{"ONLINE"}
	}
}

// set puts e into ds in tag order, replacing an element of the same tag.
func set(ds *dicom.Dataset, e dicom.Element) {
	i, found := slices.BinarySearchFunc(ds.Elements, e.Tag, func(x dicom.Element, t tag.Tag) int {
		return int(int64(x.Tag) - int64(t))
	})
	if found {
		ds.Elements[i] = e
		return
	}
	ds.Elements = slices.Insert(ds.Elements, i, e)
}

// errNoMatch reports a search that cannot match anything, such as one
// whose query names a study other than its path's.
var errNoMatch = errors.New("dicomweb: the search matches nothing")

// parseSearch reads the request of a search at a level, and returns the
// query with its matching keys that the index does not match on.
func (s *Server) parseSearch(c echo.Context, level index.Level) (*index.Query, []tag.Tag, error) {
	q, err := parseSearch(c.QueryParams(), level, c.Param("study"), c.Param("series"), s.Limits)
	if err != nil {
		return nil, nil, err
	}
	q.CaseSensitiveNames = s.CaseSensitiveNames
	unsupported, err := s.Index.UnsupportedKeys(q)
	if err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return q, unsupported, nil
}

// parseSearch reads the query parameters of a QIDO-RS request (PS3.18
// §8.3.4) at a level, with the UIDs of its path, into an index query.
// Every parameter must be known: a misspelt key would otherwise silently
// match everything. A key may be given several times, and a list of
// values in one parameter separated by backslashes, or for UIDs by
// commas too: the key matches any of its values. It returns errNoMatch
// for a query that matches nothing.
func parseSearch(params url.Values, level index.Level, study, series string, lim Limits) (*index.Query, error) {
	q := &index.Query{Level: level, Identifier: &dicom.Dataset{}}
	var include []tag.Tag
	switch level {
	case index.StudyLevel:
		include = slices.Clone(studyDefaults)
	case index.SeriesLevel:
		include = slices.Clone(seriesDefaults)
	case index.ImageLevel:
		include = slices.Clone(instanceDefaults)
	}
	keys := map[tag.Tag]*keyValues{}
	nested := map[tag.Tag]map[tag.Tag]*keyValues{}
	nvalues := 0
	add := func(kv **keyValues, t tag.Tag, values []string) error {
		if *kv == nil {
			*kv = &keyValues{}
		}
		nvalues += (*kv).add(vrOf(t), values)
		if nvalues > lim.searchValues() {
			return errorf(http.StatusBadRequest, "the search has more than %d values in its matching keys; split it into several searches", lim.searchValues())
		}
		return nil
	}
	for name, values := range params {
		switch strings.ToLower(name) {
		case "limit", "offset":
			v, err := single(name, values)
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, errorf(http.StatusBadRequest, "%s=%s is not a non-negative integer", name, clip(v))
			}
			if strings.EqualFold(name, "limit") {
				q.Limit = n
			} else {
				q.Offset = n
			}
			continue
		case "fuzzymatching":
			v, err := single(name, values)
			if err != nil {
				return nil, err
			}
			v = strings.ToLower(v)
			if v != "true" && v != "false" {
				return nil, errorf(http.StatusBadRequest, "fuzzymatching=%s is not true or false", clip(v))
			}
			q.FuzzyNames = v == "true"
			continue
		case "includefield":
			for _, v := range values {
				for f := range strings.SplitSeq(v, ",") {
					f = strings.TrimSpace(f)
					if f == "" {
						continue
					}
					if f == "all" {
						include = append(include, allFields(level)...)
						continue
					}
					path, err := parseAttribute(f)
					if err != nil {
						return nil, errorf(http.StatusBadRequest, "includefield %s: %v", clip(f), err)
					}
					include = append(include, path[0])
					if len(include) > 2*lim.searchAttributes() {
						return nil, tooManyAttributes(lim)
					}
				}
			}
			continue
		case "accept", "charset":
			// Media types and character sets are negotiated apart.
			continue
		}
		path, err := parseAttribute(name)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "query parameter %s: %v", clip(name), err)
		}
		switch len(path) {
		case 1:
			kv := keys[path[0]]
			if err := add(&kv, path[0], values); err != nil {
				return nil, err
			}
			keys[path[0]] = kv
		case 2:
			if nested[path[0]] == nil {
				nested[path[0]] = map[tag.Tag]*keyValues{}
			}
			kv := nested[path[0]][path[1]]
			if err := add(&kv, path[1], values); err != nil {
				return nil, err
			}
			nested[path[0]][path[1]] = kv
		default:
			return nil, errorf(http.StatusBadRequest, "query parameter %s: sequences nest one level deep in a search", clip(name))
		}
	}
	// The unique keys in the path narrow what the query asks: a query
	// that also names the study (or series) matches only if its list
	// holds the path's.
	for _, u := range []struct {
		t tag.Tag
		v string
	}{{tag.StudyInstanceUID, study}, {tag.SeriesInstanceUID, series}} {
		if u.v == "" {
			continue
		}
		if kv := keys[u.t]; kv != nil && !kv.universal && len(kv.values) > 0 && !slices.Contains(kv.values, u.v) {
			return nil, errNoMatch
		}
		keys[u.t] = &keyValues{values: []string{u.v}}
	}
	for _, t := range include {
		if _, ok := keys[t]; !ok && nested[t] == nil {
			keys[t] = &keyValues{}
		}
	}
	if len(keys)+len(nested) > lim.searchAttributes() {
		return nil, tooManyAttributes(lim)
	}
	for t, kv := range keys {
		vr := vrOf(t)
		if vr == "SQ" {
			return nil, errorf(http.StatusBadRequest, "%s is a sequence: match on its items' attributes (%s.KEYWORD)", t.Hex(), keyword(t))
		}
		q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: t, VR: vr, Values: kv.matching()})
	}
	for seq, item := range nested {
		if vr := vrOf(seq); vr != "SQ" && vr != "UN" {
			return nil, errorf(http.StatusBadRequest, "%s is not a sequence", keyword(seq))
		}
		it := &dicom.Dataset{}
		for t, kv := range item {
			it.Elements = append(it.Elements, dicom.Element{Tag: t, VR: vrOf(t), Values: kv.matching()})
		}
		sortElements(it)
		q.Identifier.Elements = slices.DeleteFunc(q.Identifier.Elements, func(e dicom.Element) bool { return e.Tag == seq })
		q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: seq, VR: "SQ", Items: []*dicom.Dataset{it}})
	}
	sortElements(q.Identifier)
	return q, nil
}

func tooManyAttributes(lim Limits) error {
	return errorf(http.StatusBadRequest, "the search names more than %d attributes (matching keys, includefield and the level's defaults together)", lim.searchAttributes())
}

// single returns the value of a parameter that takes one: given several
// times it must be the same each time.
func single(name string, values []string) (string, error) {
	for _, v := range values[1:] {
		if v != values[0] {
			return "", errorf(http.StatusBadRequest, "%s is given more than once, with different values", clip(name))
		}
	}
	return values[0], nil
}

// keyValues are the values a matching key was given, in every spelling,
// without repeats.
type keyValues struct {
	values []string
	seen   map[string]bool
	// universal is set when one of the values matches everything: an
	// empty value or "*". The key then matches everything, whatever
	// else it was given.
	universal bool
}

// add adds the values of parameters of a key of VR vr, split into single
// values, and returns how many were new.
func (k *keyValues) add(vr string, params []string) int {
	n := 0
	for _, p := range params {
		for _, v := range splitValues(vr, p) {
			v = strings.TrimSpace(v)
			switch {
			case v == "" || v == "*":
				k.universal = true
			case !k.seen[v]:
				if k.seen == nil {
					k.seen = map[string]bool{}
				}
				k.seen[v] = true
				k.values = append(k.values, v)
				n++
			}
		}
	}
	return n
}

// matching returns the values of the key's element: nil for a universal
// key (a return key).
func (k *keyValues) matching() []string {
	if k.universal {
		return nil
	}
	return k.values
}

// splitValues splits a parameter's value into single values: at
// backslashes, the delimiter of DICOM values, except in the text VRs
// whose one value may hold them; UIDs at commas too (PS3.18 §8.3.4.1).
func splitValues(vr, v string) []string {
	switch vr {
	case "LT", "ST", "UT", "UR":
		return []string{v}
	case "UI":
		return strings.FieldsFunc(v, func(r rune) bool { return r == '\\' || r == ',' })
	}
	if v == "" {
		return []string{""}
	}
	return strings.Split(v, `\`)
}

func allFields(level index.Level) []tag.Tag {
	switch level {
	case index.StudyLevel:
		return studyAll
	case index.SeriesLevel:
		return slices.Concat(seriesAll, studyDefaults, studyAll)
	}
	return slices.Concat(instanceAll, seriesDefaults, seriesAll, studyDefaults, studyAll)
}

func sortElements(ds *dicom.Dataset) {
	slices.SortFunc(ds.Elements, func(a, b dicom.Element) int { return int(int64(a.Tag) - int64(b.Tag)) })
}

// parseAttribute reads an attribute of a query: a keyword or eight
// hexadecimal digits, or a dotted path of them into a sequence.
func parseAttribute(s string) ([]tag.Tag, error) {
	var path []tag.Tag
	for part := range strings.SplitSeq(s, ".") {
		t, ok := tag.ByKeyword(part)
		if !ok {
			if len(part) != 8 {
				return nil, errUnknownAttribute
			}
			v, err := strconv.ParseUint(part, 16, 32)
			if err != nil {
				return nil, errUnknownAttribute
			}
			t = tag.Tag(v)
		}
		path = append(path, t)
	}
	return path, nil
}

var errUnknownAttribute = &Error{Status: http.StatusBadRequest, Reason: "not an attribute keyword or tag, nor a search parameter (limit, offset, fuzzymatching, includefield)"}

func vrOf(t tag.Tag) string {
	if info, ok := tag.Lookup(t); ok && info.VR != "" {
		vr, _, _ := strings.Cut(info.VR, " ") // "US or SS": the first
		return vr
	}
	return "UN"
}

func keyword(t tag.Tag) string {
	if info, ok := tag.Lookup(t); ok && info.Keyword != "" {
		return info.Keyword
	}
	return t.Hex()
}
