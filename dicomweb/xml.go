package dicomweb

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// This file writes data sets in the Native DICOM Model of PS3.19 §A.1,
// the XML of application/dicom+xml. pacsd answers in it where a client
// asks for XML: the response of STOW-RS. There is no reader: pacsd takes
// no XML in.

// appendXML appends ds to dst as an XML document of the Native DICOM
// Model. Binary values held in memory are InlineBinary; others, which no
// response of pacsd in XML carries, are left without a value.
func appendXML(dst []byte, ds *dicom.Dataset) []byte {
	dst = append(dst, xml.Header...)
	dst = append(dst, `<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">`...)
	dst = appendXMLAttributes(dst, ds)
	return append(dst, "</NativeDicomModel>\n"...)
}

func appendXMLAttributes(dst []byte, ds *dicom.Dataset) []byte {
	els := slices.Clone(ds.Elements)
	slices.SortStableFunc(els, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	creators := map[uint32]string{} // private creators by group<<8|block
	for _, e := range els {
		if g, el := e.Tag.Group(), e.Tag.Element(); g%2 == 1 && el >= 0x10 && el <= 0xFF && len(e.Values) > 0 {
			creators[uint32(g)<<8|uint32(el)] = e.Values[0]
		}
	}
	for i := range els {
		e := &els[i]
		if e.Tag.Element() == 0x0000 {
			continue // Group Length is not part of the model
		}
		dst = append(dst, `<DicomAttribute tag="`...)
		dst = append(dst, e.Tag.Hex()...)
		dst = append(dst, `" vr="`...)
		dst = appendEscaped(dst, e.VR)
		dst = append(dst, '"')
		if info, ok := tag.Lookup(e.Tag); ok && info.Keyword != "" && e.Tag.Group()%2 == 0 {
			dst = append(dst, ` keyword="`...)
			dst = append(dst, info.Keyword...)
			dst = append(dst, '"')
		}
		if g, el := e.Tag.Group(), e.Tag.Element(); g%2 == 1 && el > 0xFF {
			if c, ok := creators[uint32(g)<<8|uint32(el>>8)]; ok {
				dst = append(dst, ` privateCreator="`...)
				dst = appendEscaped(dst, c)
				dst = append(dst, '"')
			}
		}
		dst = append(dst, '>')
		switch {
		case e.VR == "SQ":
			for n, it := range e.Items {
				dst = append(dst, `<Item number="`...)
				dst = strconv.AppendInt(dst, int64(n+1), 10)
				dst = append(dst, `">`...)
				dst = appendXMLAttributes(dst, it)
				dst = append(dst, "</Item>"...)
			}
		case e.Binary != nil && e.Values == nil:
			if len(e.Binary.Data) > 0 {
				dst = append(dst, "<InlineBinary>"...)
				dst = base64.StdEncoding.AppendEncode(dst, e.Binary.Data)
				dst = append(dst, "</InlineBinary>"...)
			}
		case e.VR == "PN":
			for n, v := range e.Values {
				if v != "" {
					dst = appendPersonName(dst, n+1, v)
				}
			}
		default:
			for n, v := range e.Values {
				// An empty value keeps its number free: the model has
				// no empty Value element.
				if v == "" {
					continue
				}
				dst = append(dst, `<Value number="`...)
				dst = strconv.AppendInt(dst, int64(n+1), 10)
				dst = append(dst, `">`...)
				dst = appendEscaped(dst, v)
				dst = append(dst, "</Value>"...)
			}
		}
		dst = append(dst, "</DicomAttribute>"...)
	}
	return dst
}

// appendPersonName writes a PN value as its component groups (PS3.19
// §A.1.5: Alphabetic, Ideographic, Phonetic) of named components.
func appendPersonName(dst []byte, number int, v string) []byte {
	dst = append(dst, `<PersonName number="`...)
	dst = strconv.AppendInt(dst, int64(number), 10)
	dst = append(dst, `">`...)
	for i, group := range strings.SplitN(v, "=", 3) {
		if group == "" {
			continue
		}
		name := [...]string{"Alphabetic", "Ideographic", "Phonetic"}[i]
		dst = append(dst, '<')
		dst = append(dst, name...)
		dst = append(dst, '>')
		for j, c := range strings.SplitN(group, "^", 5) {
			if c == "" {
				continue
			}
			comp := [...]string{"FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"}[j]
			dst = append(dst, '<')
			dst = append(dst, comp...)
			dst = append(dst, '>')
			dst = appendEscaped(dst, c)
			dst = append(dst, "</"...)
			dst = append(dst, comp...)
			dst = append(dst, '>')
		}
		dst = append(dst, "</"...)
		dst = append(dst, name...)
		dst = append(dst, '>')
	}
	return append(dst, "</PersonName>"...)
}

func appendEscaped(dst []byte, s string) []byte {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s)) // a bytes.Buffer does not fail
	return append(dst, b.Bytes()...)
}
