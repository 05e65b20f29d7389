package cmdset

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestDcmtk(t *testing.T) {
	const (
		uidSC        = "1.2.840.10008.5.1.4.1.1.7"
		uidSCInst    = "1.2.826.0.1.3680043.2.1125.1.1"
		uidPatFind   = "1.2.840.10008.5.1.4.1.2.1.1"
		uidPatMove   = "1.2.840.10008.5.1.4.1.2.1.2"
		uidPatGet    = "1.2.840.10008.5.1.4.1.2.1.3"
		uidVerifying = "1.2.840.10008.1.1"
	)
	one := new(uint16(1))
	ok := new(uint16(0))
	pending := new(uint16(0xFF00))
	want := map[string]*Command{
		"echoscu-c-echo-rq.bin":   {CommandField: CEchoRQ, MessageID: one, AffectedSOPClassUID: uidVerifying, CommandDataSetType: NoDataSet},
		"storescp-c-echo-rsp.bin": {CommandField: CEchoRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidVerifying, CommandDataSetType: NoDataSet, Status: ok},
		"storescu-c-store-rq.bin": {CommandField: CStoreRQ, MessageID: one, AffectedSOPClassUID: uidSC, AffectedSOPInstanceUID: uidSCInst,
			Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent},
		"storescp-c-store-rsp.bin": {CommandField: CStoreRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidSC, AffectedSOPInstanceUID: uidSCInst,
			CommandDataSetType: NoDataSet, Status: ok},
		"findscu-c-find-rq.bin":           {CommandField: CFindRQ, MessageID: one, AffectedSOPClassUID: uidPatFind, Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent},
		"dcmqrscp-c-find-rsp-pending.bin": {CommandField: CFindRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatFind, CommandDataSetType: DataSetPresent, Status: pending},
		"dcmqrscp-c-find-rsp.bin":         {CommandField: CFindRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatFind, CommandDataSetType: NoDataSet, Status: ok},
		"findscu-c-cancel-rq.bin":         {CommandField: CCancelRQ, MessageIDBeingRespondedTo: one, CommandDataSetType: NoDataSet},
		"getscu-c-get-rq.bin":             {CommandField: CGetRQ, MessageID: one, AffectedSOPClassUID: uidPatGet, Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent},
		"dcmqrscp-c-store-rq.bin": {CommandField: CStoreRQ, MessageID: one, AffectedSOPClassUID: uidSC, AffectedSOPInstanceUID: uidSCInst,
			Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent},
		"getscu-c-store-rsp.bin": {CommandField: CStoreRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidSC, AffectedSOPInstanceUID: uidSCInst,
			CommandDataSetType: NoDataSet, Status: ok},
		"dcmqrscp-c-get-rsp-pending.bin": {CommandField: CGetRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatGet, CommandDataSetType: NoDataSet, Status: pending,
			NumberOfRemainingSuboperations: new(uint16(0)), NumberOfCompletedSuboperations: one, NumberOfFailedSuboperations: new(uint16(0)), NumberOfWarningSuboperations: new(uint16(0))},
		"dcmqrscp-c-get-rsp.bin": {CommandField: CGetRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatGet, CommandDataSetType: NoDataSet, Status: ok,
			NumberOfCompletedSuboperations: one, NumberOfFailedSuboperations: new(uint16(0)), NumberOfWarningSuboperations: new(uint16(0))},
		"movescu-c-move-rq.bin": {CommandField: CMoveRQ, MessageID: one, AffectedSOPClassUID: uidPatMove, MoveDestination: "MOVESCU",
			Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent},
		"dcmqrscp-c-move-rsp-pending.bin": {CommandField: CMoveRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatMove, CommandDataSetType: NoDataSet, Status: pending,
			NumberOfRemainingSuboperations: new(uint16(0)), NumberOfCompletedSuboperations: one, NumberOfFailedSuboperations: new(uint16(0)), NumberOfWarningSuboperations: new(uint16(0))},
		"dcmqrscp-c-move-rsp.bin": {CommandField: CMoveRSP, MessageIDBeingRespondedTo: one, AffectedSOPClassUID: uidPatMove, CommandDataSetType: NoDataSet, Status: ok,
			NumberOfCompletedSuboperations: one, NumberOfFailedSuboperations: new(uint16(0)), NumberOfWarningSuboperations: new(uint16(0))},
		"dcmqrscp-c-store-rq-move.bin": {CommandField: CStoreRQ, MessageID: one, AffectedSOPClassUID: uidSC, AffectedSOPInstanceUID: uidSCInst,
			Priority: new(PriorityMedium), CommandDataSetType: DataSetPresent, MoveOriginatorApplicationEntityTitle: "MOVESCU", MoveOriginatorMessageID: one},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "dcmtk", "*.bin"))
	if err != nil || len(files) != len(want) {
		t.Fatalf("%d fixtures, want %d (%v)", len(files), len(want), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := want[name]; !ok {
				t.Fatal("no expectation for this fixture")
			} else if !reflect.DeepEqual(c, w) {
				t.Errorf("decoded\n%s\nwant\n%s", dump(c), dump(w))
			}
			// dcmtk writes the same elements, order and padding as
			// AppendTo, so the round trip is exact.
			enc, err := c.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(enc, b); d != "" {
				t.Error(d)
			}
		})
	}
}
