package dicom

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// ImplementationClassUID and ImplementationVersionName identify pacsd in
// File Meta Information and association negotiation (PS3.7 §D.3.3.2).
const (
	ImplementationClassUID    = "2.25.300678274968914377774867292643702321900"
	ImplementationVersionName = "PACSD_0"
)

// FileMeta is the File Meta Information of a Part-10 file (PS3.10 §7.1).
type FileMeta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	ImplementationClassUID     string
	ImplementationVersionName  string
	// SourceApplicationEntityTitle is the AE that wrote the file.
	SourceApplicationEntityTitle string
	// SendingApplicationEntityTitle and ReceivingApplicationEntityTitle
	// record the network transfer the content arrived by.
	SendingApplicationEntityTitle   string
	ReceivingApplicationEntityTitle string
	// PrivateInformationCreatorUID names who wrote PrivateInformation,
	// data the file's writer keeps for itself (PS3.10 §7.1); both are
	// left out when empty.
	PrivateInformationCreatorUID string
	PrivateInformation           []byte
}

// ErrNotPart10 reports a stream that does not start with a Part-10 preamble
// and File Meta Information.
var ErrNotPart10 = errors.New("dicom: not a DICOM Part-10 file")

// maxMeta bounds the File Meta Information read from a stream.
const maxMeta = 1 << 20

// AppendFileMeta appends the 128-byte preamble, "DICM" and m encoded as
// File Meta Information to dst.
func AppendFileMeta(dst []byte, m FileMeta) []byte {
	dst = append(dst, make([]byte, 128)...)
	dst = append(dst, "DICM"...)
	lengthAt := len(dst) + 8
	dst = appendMeta(dst, tag.FileMetaInformationGroupLength, "UL", []byte{0, 0, 0, 0})
	start := len(dst)
	dst = appendMeta(dst, tag.FileMetaInformationVersion, "OB", []byte{0, 1})
	dst = appendMeta(dst, tag.MediaStorageSOPClassUID, "UI", []byte(m.MediaStorageSOPClassUID))
	dst = appendMeta(dst, tag.MediaStorageSOPInstanceUID, "UI", []byte(m.MediaStorageSOPInstanceUID))
	dst = appendMeta(dst, tag.TransferSyntaxUID, "UI", []byte(m.TransferSyntaxUID))
	dst = appendMeta(dst, tag.ImplementationClassUID, "UI", []byte(m.ImplementationClassUID))
	optional := []struct {
		t  tag.Tag
		vr string
		v  string
	}{
		{tag.ImplementationVersionName, "SH", m.ImplementationVersionName},
		{tag.SourceApplicationEntityTitle, "AE", m.SourceApplicationEntityTitle},
		{tag.SendingApplicationEntityTitle, "AE", m.SendingApplicationEntityTitle},
		{tag.ReceivingApplicationEntityTitle, "AE", m.ReceivingApplicationEntityTitle},
	}
	for _, o := range optional {
		if o.v != "" {
			dst = appendMeta(dst, o.t, o.vr, []byte(o.v))
		}
	}
	if m.PrivateInformationCreatorUID != "" {
		dst = appendMeta(dst, tag.PrivateInformationCreatorUID, "UI", []byte(m.PrivateInformationCreatorUID))
		dst = appendMeta(dst, tag.PrivateInformation, "OB", m.PrivateInformation)
	}
	binary.LittleEndian.PutUint32(dst[lengthAt:], uint32(len(dst)-start))
	return dst
}

// appendMeta appends one explicit VR little endian element, padding its
// value to an even length as its VR requires.
func appendMeta(dst []byte, t tag.Tag, vr string, v []byte) []byte {
	if len(v)%2 == 1 {
		pad := byte(' ')
		if vr == "UI" || vr == "OB" {
			pad = 0
		}
		v = append(v[:len(v):len(v)], pad)
	}
	dst = binary.LittleEndian.AppendUint16(dst, t.Group())
	dst = binary.LittleEndian.AppendUint16(dst, t.Element())
	dst = append(dst, vr...)
	if longVR(vr) {
		dst = append(dst, 0, 0)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(v)))
	} else {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v)))
	}
	return append(dst, v...)
}

// ReadFileMeta reads the preamble and File Meta Information from r,
// leaving r at the first byte of the data set, and returns the meta and
// the number of bytes read. Group 2 is read element by element, so a
// missing or wrong group length does not matter.
func ReadFileMeta(r *bufio.Reader) (FileMeta, int64, error) {
	var m FileMeta
	head, err := r.Peek(132)
	if err != nil || string(head[128:]) != "DICM" {
		return m, 0, fmt.Errorf("%w: no \"DICM\" after the preamble", ErrNotPart10)
	}
	r.Discard(132)
	n := int64(132)
	for {
		b, err := r.Peek(8)
		if len(b) >= 2 && binary.LittleEndian.Uint16(b) != 0x0002 {
			break // the data set starts
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) == 0 {
				break // a file of File Meta Information only
			}
			return m, n, fmt.Errorf("%w: %v", ErrNotPart10, err)
		}
		group := binary.LittleEndian.Uint16(b)
		t := tag.New(group, binary.LittleEndian.Uint16(b[2:]))
		vr := string(b[4:6])
		hdr := 8
		length := uint32(binary.LittleEndian.Uint16(b[6:]))
		if longVR(vr) {
			if b, err = r.Peek(12); err != nil {
				return m, n, fmt.Errorf("%w: %v", ErrNotPart10, err)
			}
			hdr, length = 12, binary.LittleEndian.Uint32(b[8:])
		}
		if n+int64(hdr)+int64(length) > maxMeta {
			return m, n, fmt.Errorf("%w: File Meta Information longer than %d bytes", ErrNotPart10, maxMeta)
		}
		r.Discard(hdr)
		v := make([]byte, length)
		if _, err := io.ReadFull(r, v); err != nil {
			return m, n, fmt.Errorf("%w: %v", ErrNotPart10, err)
		}
		n += int64(hdr) + int64(length)
		s := strings.TrimRight(string(v), " \x00")
		switch t {
		case tag.MediaStorageSOPClassUID:
			m.MediaStorageSOPClassUID = uid.Trim(s)
		case tag.MediaStorageSOPInstanceUID:
			m.MediaStorageSOPInstanceUID = uid.Trim(s)
		case tag.TransferSyntaxUID:
			m.TransferSyntaxUID = uid.Trim(s)
		case tag.ImplementationClassUID:
			m.ImplementationClassUID = uid.Trim(s)
		case tag.ImplementationVersionName:
			m.ImplementationVersionName = strings.TrimSpace(s)
		case tag.SourceApplicationEntityTitle:
			m.SourceApplicationEntityTitle = strings.TrimSpace(s)
		case tag.SendingApplicationEntityTitle:
			m.SendingApplicationEntityTitle = strings.TrimSpace(s)
		case tag.ReceivingApplicationEntityTitle:
			m.ReceivingApplicationEntityTitle = strings.TrimSpace(s)
		case tag.PrivateInformationCreatorUID:
			m.PrivateInformationCreatorUID = uid.Trim(s)
		case tag.PrivateInformation:
			m.PrivateInformation = v
		}
	}
	if m.TransferSyntaxUID == "" {
		return m, n, fmt.Errorf("%w: no Transfer Syntax UID", ErrNotPart10)
	}
	return m, n, nil
}
