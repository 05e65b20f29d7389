package dicomweb

import (
	"fmt"
	"iter"
	"net/http"
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
	q, err := s.parseSearch(c, level)
	if err != nil {
		return err
	}
	limited := false
	if s.MaxMatches > 0 && (q.Limit == 0 || q.Limit > s.MaxMatches) {
		q.Limit, limited = s.MaxMatches+1, true
	}
	next, stop := iter.Pull2(s.Index.Find(c.Request().Context(), q))
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

// parseSearch reads a QIDO-RS request (PS3.18 §8.3.4) into an index
// query. Every parameter must be known: a misspelt key would otherwise
// silently match everything.
func (s *Server) parseSearch(c echo.Context, level index.Level) (*index.Query, error) {
	q := &index.Query{Level: level, Identifier: &dicom.Dataset{}, CaseSensitiveNames: s.CaseSensitiveNames}
	var include []tag.Tag
	switch level {
	case index.StudyLevel:
		include = slices.Clone(studyDefaults)
	case index.SeriesLevel:
		include = slices.Clone(seriesDefaults)
	case index.ImageLevel:
		include = slices.Clone(instanceDefaults)
	}
	keys := map[tag.Tag][]string{}
	nested := map[tag.Tag]map[tag.Tag][]string{}
	for name, values := range c.QueryParams() {
		switch strings.ToLower(name) {
		case "limit", "offset":
			n, err := strconv.Atoi(last(values))
			if err != nil || n < 0 {
				return nil, errorf(http.StatusBadRequest, "%s=%q is not a non-negative integer", name, last(values))
			}
			if strings.EqualFold(name, "limit") {
				q.Limit = n
			} else {
				q.Offset = n
			}
			continue
		case "fuzzymatching":
			v := strings.ToLower(last(values))
			if v != "true" && v != "false" {
				return nil, errorf(http.StatusBadRequest, "fuzzymatching=%q is not true or false", last(values))
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
						return nil, errorf(http.StatusBadRequest, "includefield %q: %v", f, err)
					}
					include = append(include, path[0])
				}
			}
			continue
		}
		path, err := parseAttribute(name)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "query parameter %q: %v", name, err)
		}
		// Several values of one key match any of them, as a multi-valued
		// C-FIND key does; UID lists may also be comma-separated.
		vals := values
		switch len(path) {
		case 1:
			keys[path[0]] = append(keys[path[0]], vals...)
		case 2:
			if nested[path[0]] == nil {
				nested[path[0]] = map[tag.Tag][]string{}
			}
			nested[path[0]][path[1]] = append(nested[path[0]][path[1]], vals...)
		default:
			return nil, errorf(http.StatusBadRequest, "query parameter %q: sequences nest one level deep in a search", name)
		}
	}
	// The unique keys in the path.
	if v := c.Param("study"); v != "" {
		keys[tag.StudyInstanceUID] = []string{v}
	}
	if v := c.Param("series"); v != "" {
		keys[tag.SeriesInstanceUID] = []string{v}
	}
	for _, t := range include {
		if _, ok := keys[t]; !ok && nested[t] == nil {
			keys[t] = nil
		}
	}
	for t, vals := range keys {
		vr := vrOf(t)
		if vr == "SQ" {
			return nil, errorf(http.StatusBadRequest, "%s is a sequence: match on its items' attributes (%s.KEYWORD)", t.Hex(), keyword(t))
		}
		e := dicom.Element{Tag: t, VR: vr}
		if len(vals) > 0 {
			e.Values = []string{strings.Join(vals, `\`)}
		}
		q.Identifier.Elements = append(q.Identifier.Elements, e)
	}
	for seq, item := range nested {
		it := &dicom.Dataset{}
		for t, vals := range item {
			it.Elements = append(it.Elements, dicom.Element{Tag: t, VR: vrOf(t), Values: []string{strings.Join(vals, `\`)}})
		}
		sortElements(it)
		q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: seq, VR: "SQ", Items: []*dicom.Dataset{it}})
	}
	sortElements(q.Identifier)
	if _, err := q.UnsupportedKeys(); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return q, nil
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

func last(v []string) string { return v[len(v)-1] }

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
