// Package cmdset encodes and decodes DIMSE command sets (PS3.7 §6.3, §9,
// §10, Annex E): the group 0000 elements that head every DIMSE message and
// say what the message is.
//
// A command set travels in the command PDVs of P-DATA-TF PDUs, always in
// the Implicit VR Little Endian transfer syntax, whatever was negotiated for
// the data set. The association layer concatenates the command fragments of
// a message, up to MaxLength bytes, and calls Decode on them:
//
//	c, err := cmdset.Decode(fragments)
//	if err != nil { ... } // the peer broke PS3.7: abort the association
//	switch c.CommandField {
//	case cmdset.CEchoRQ:
//		rsp := &cmdset.Command{
//			CommandField:              cmdset.CEchoRSP,
//			MessageIDBeingRespondedTo: c.MessageID,
//			AffectedSOPClassUID:       c.AffectedSOPClassUID,
//			CommandDataSetType:        cmdset.NoDataSet,
//			Status:                    new(uint16(0)),
//		}
//		b, err := rsp.AppendTo(buf[:0])
//		...
//	}
//
// Command holds one typed field per command element that C-ECHO, C-STORE,
// C-FIND, C-GET, C-MOVE, C-CANCEL, N-EVENT-REPORT and N-ACTION use. Numeric
// elements whose absence means something are pointers, nil when absent;
// string and tag-list elements are absent when empty. AppendTo writes the
// elements that are present, in ascending tag order after the Command Group
// Length, and no others: the caller decides what a message carries.
//
// Decode is tolerant where real peers need it and strict where safety needs
// it. It accepts a missing Command Group Length (and ignores its value,
// since the caller already knows where the command set ends), skips group
// 0000 elements it does not know, such as retired ones, and strips the NUL or
// space padding of strings. It refuses elements outside group 0000,
// undefined lengths, lengths that overrun the buffer, fixed-size values of
// the wrong size, a known element given twice, and a command set without a
// Command Field or a Command Data Set Type. UIDs and AE titles longer than
// PS3.5 allows decode, since the command is otherwise understood and the
// peer deserves a failure status rather than an abort; Check finds them.
package cmdset
