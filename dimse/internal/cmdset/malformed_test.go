package cmdset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
)

// elem returns an element of group gggg in Implicit VR Little Endian.
func elem(t tag.Tag, v ...byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, t.Group())
	b = binary.LittleEndian.AppendUint16(b, t.Element())
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// us returns the 2 bytes of a US value.
func us(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// set concatenates elements into a command set.
func set(elems ...[]byte) []byte { return bytes.Join(elems, nil) }

var (
	field  = elem(tag.CommandField, us(0x0030)...)
	noData = elem(tag.CommandDataSetType, us(NoDataSet)...)
)

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated element header", set(field, noData, []byte{0, 0, 0, 1, 2})},
		{"length beyond the buffer", set(field, noData, []byte{0, 0, 2, 0, 20, 0, 0, 0, '1', '.', '2', 0})},
		{"length 0xFFFFFFFF", set(field, noData, []byte{0, 0, 2, 0, 0xFF, 0xFF, 0xFF, 0xFF})},
		{"length 0x7FFFFFFF", set(field, noData, []byte{0, 0, 2, 0, 0xFF, 0xFF, 0xFF, 0x7F})},
		{"element of group 0008", set(field, noData, elem(tag.SOPInstanceUID, '1', 0))},
		{"element of group 0002", set(elem(tag.New(2, 0x10), '1', 0), field, noData)},
		{"element of group FFFE", set(field, noData, elem(tag.New(0xFFFE, 0xE000)))},
		{"Command Field of length 1", set(elem(tag.CommandField, 0x30), noData)},
		{"Command Field of length 4", set(elem(tag.CommandField, 0x30, 0, 0, 0), noData)},
		{"Message ID of length 3", set(field, noData, elem(tag.MessageID, 1, 0, 0))},
		{"Status of length 1", set(field, noData, elem(tag.Status, 0))},
		{"Priority of length 4", set(field, noData, elem(tag.Priority, 0, 0, 0, 0))},
		{"group length of length 2", set(elem(tag.CommandGroupLength, 0, 0), field, noData)},
		{"Offending Element of length 6", set(field, noData, elem(tag.OffendingElement, 0x10, 0, 0x10, 0, 0x20, 0))},
		{"Attribute Identifier List of length 2", set(field, noData, elem(tag.AttributeIdentifierList, 0x10, 0))},
		{"Command Field twice", set(field, field, noData)},
		{"Message ID twice", set(field, noData, elem(tag.MessageID, us(1)...), elem(tag.MessageID, us(2)...))},
		{"group length twice", set(elem(tag.CommandGroupLength, 0, 0, 0, 0), elem(tag.CommandGroupLength, 0, 0, 0, 0), field, noData)},
		{"no Command Field", set(noData)},
		{"empty Command Field", set(elem(tag.CommandField), noData)},
		{"no Command Data Set Type", set(field)},
		{"empty Command Data Set Type", set(field, elem(tag.CommandDataSetType))},
		{"longer than MaxLength", set(field, noData, elem(tag.ErrorComment, make([]byte, MaxLength)...))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(tt.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %+v, %v; want ErrMalformed", c, err)
			}
			if !strings.HasPrefix(err.Error(), "cmdset: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestOverlongValues checks that a UID or AE title longer than PS3.5
// allows decodes, for the request to be answered with a failure status,
// and that Check names it.
func TestOverlongValues(t *testing.T) {
	long := strings.Repeat("1", 65)
	tests := []struct {
		name string
		b    []byte
		want ValueError
	}{
		{"UID of 65 bytes", set(field, noData, elem(tag.AffectedSOPInstanceUID, []byte(long+"\x00")...)), ValueError{tag.AffectedSOPInstanceUID, 65, 64}},
		{"AE title of 17 bytes", set(field, noData, elem(tag.MoveDestination, []byte(strings.Repeat("A", 17)+" ")...)), ValueError{tag.MoveDestination, 17, 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(tt.b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = c.Check()
			var ve *ValueError
			if !errors.As(err, &ve) || *ve != tt.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check = %v, want %+v", err, tt.want)
			}
			if _, err := c.AppendTo(nil); !errors.Is(err, ErrInvalid) {
				t.Errorf("AppendTo = %v, want ErrInvalid", err)
			}
		})
	}
	if err := (&Command{AffectedSOPInstanceUID: strings.Repeat("1", 64), MoveDestination: "ABCDEFGHIJKLMNOP"}).Check(); err != nil {
		t.Errorf("values at the limit: %v", err)
	}
}

// TestTolerant checks what real peers send that a strict reading would
// refuse.
func TestTolerant(t *testing.T) {
	echo := &Command{CommandField: CEchoRQ, MessageID: new(uint16(7)), AffectedSOPClassUID: "1.2.840.10008.1.1", CommandDataSetType: NoDataSet}
	tests := []struct {
		name string
		b    []byte
		want *Command
	}{
		{"no group length", goldenCEchoRQ[12:], echo},
		{"wrong group length", append([]byte{0, 0, 0, 0, 4, 0, 0, 0, 0xFF, 0, 0, 0}, goldenCEchoRQ[12:]...), echo},
		{"empty group length", append([]byte{0, 0, 0, 0, 0, 0, 0, 0}, goldenCEchoRQ[12:]...), echo},
		{"retired and unknown group 0000 elements", set(goldenCEchoRQ, elem(tag.New(0, 0x0001), 0, 0, 0, 0), elem(tag.New(0, 0x4000), 'x', 'y'), elem(tag.New(0, 0xFFFF))), echo},
		{"unknown element given twice", set(goldenCEchoRQ, elem(tag.New(0, 0x0010), 'a', 'b'), elem(tag.New(0, 0x0010), 'a', 'b')), echo},
		{"elements in descending order", set(noData, elem(tag.MessageID, us(7)...), field, elem(tag.AffectedSOPClassUID, []byte("1.2.840.10008.1.1\x00")...)), echo},
		{"UID padded with a space", set(field, noData, elem(tag.MessageID, us(7)...), elem(tag.AffectedSOPClassUID, []byte("1.2.840.10008.1.1 ")...)), echo},
		{"UID padded with several NULs", set(field, noData, elem(tag.MessageID, us(7)...), elem(tag.AffectedSOPClassUID, []byte("1.2.840.10008.1.1\x00\x00\x00")...)), echo},
		{"UID of odd length", set(field, noData, elem(tag.MessageID, us(7)...), elem(tag.AffectedSOPClassUID, []byte("1.2.840.10008.1.1")...)), echo},
		{"empty optional elements", set(goldenCEchoRQ, elem(tag.Status), elem(tag.Priority), elem(tag.OffendingElement), elem(tag.ErrorComment), elem(tag.MoveDestination)), echo},
		{"padded strings", set(field, noData,
			elem(tag.MoveDestination, []byte("  DEST\x00\x00")...),
			elem(tag.ErrorComment, []byte("  failed  \x00\x00")...)),
			&Command{CommandField: CEchoRQ, CommandDataSetType: NoDataSet, MoveDestination: "DEST", ErrorComment: "  failed"}},
		{"error comment longer than 64 bytes", set(field, noData, elem(tag.ErrorComment, []byte(strings.Repeat("e", 200))...)),
			&Command{CommandField: CEchoRQ, CommandDataSetType: NoDataSet, ErrorComment: strings.Repeat("e", 200)}},
		{"data set type of another implementation", set(field, elem(tag.CommandDataSetType, us(0x0102)...)),
			&Command{CommandField: CEchoRQ, CommandDataSetType: 0x0102}},
		{"unknown command field", set(elem(tag.CommandField, us(0x0042)...), noData),
			&Command{CommandField: 0x0042, CommandDataSetType: NoDataSet}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

// TestDecodeDoesNotAlias checks that the Command owns its strings and
// slices, so that the caller may reuse the buffer of fragments.
func TestDecodeDoesNotAlias(t *testing.T) {
	b := bytes.Clone(goldenCStoreRSP)
	c, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xAA
	}
	if c.AffectedSOPInstanceUID != uidInstance || c.ErrorComment != "Coerced" || c.OffendingElement[0] != tag.PatientName {
		t.Errorf("decoded command changed with the buffer: %s", dump(c))
	}
}

func TestEncodeInvalid(t *testing.T) {
	long := strings.Repeat("1", 65)
	for name, c := range map[string]*Command{
		"Affected SOP Class UID of 65 bytes":     {AffectedSOPClassUID: long},
		"Requested SOP Instance UID of 65 bytes": {RequestedSOPInstanceUID: long},
		"Move Destination of 17 bytes":           {MoveDestination: "ABCDEFGHIJKLMNOPQ"},
		"Move Originator of 17 bytes":            {MoveOriginatorApplicationEntityTitle: " ABCDEFGHIJKLMNOPQ "},
		"error comment longer than MaxLength":    {ErrorComment: strings.Repeat("e", MaxLength+1)},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := c.AppendTo([]byte("keep"))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("AppendTo = %v, want ErrInvalid", err)
			}
			if string(got) != "keep" {
				t.Errorf("AppendTo returned %q, want dst unchanged", got)
			}
		})
	}
	// Padding that is not significant does not count against the limit.
	if _, err := (&Command{MoveDestination: "  ABCDEFGHIJKLMNOP  "}).AppendTo(nil); err != nil {
		t.Errorf("16-byte AE title with spaces around: %v", err)
	}
}
