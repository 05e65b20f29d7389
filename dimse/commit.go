package dimse

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
)

// Storage Commitment Push Model (PS3.4 Annex J): an SCU asks with
// N-ACTION whether instances are safely archived; the SCP answers the
// request at once and reports the outcome later with N-EVENT-REPORT, on
// the same association if it is still open or on one it opens itself.

// SOPRef names an instance: its SOP Class and SOP Instance UIDs.
type SOPRef struct {
	ClassUID, InstanceUID string
}

// CommitRequest is a Storage Commitment request (N-ACTION, Action Type 1).
type CommitRequest struct {
	TransactionUID string
	Instances      []SOPRef
	// Answered is closed once the N-ACTION response has been sent (or
	// could not be): the peer expects the response before the result, so
	// a result for the same association waits for it.
	Answered <-chan struct{}
}

// CommitResult is a Storage Commitment result (N-EVENT-REPORT): the
// instances committed and those that could not be, with the reason
// (PS3.4 J.3.3.1.1: 0x0110 processing failure, 0x0112 no such object
// instance, 0x0122 SOP class not supported, 0x0119 class-instance
// conflict, 0x0131 duplicate transaction UID).
type CommitResult struct {
	TransactionUID string
	Committed      []SOPRef
	Failed         []FailedSOP
}

// FailedSOP is an instance that could not be committed, and why.
type FailedSOP struct {
	SOPRef
	Reason Status
}

// CommitHandler serves Storage Commitment requests (as SCP of the Storage
// Commitment Push Model). Commit is called once the request has arrived;
// returning nil answers Success, which only acknowledges the request: the
// handler reports the result later, with Association.ReportCommit on
// the same association while a is open (after req.Answered is closed),
// or on a new one.
type CommitHandler interface {
	Commit(ctx context.Context, a *Association, req *CommitRequest) error
}

// CommitResultHandler receives Storage Commitment results (as SCU of the
// Storage Commitment Push Model). Returning nil answers Success.
type CommitResultHandler interface {
	CommitResult(ctx context.Context, a *Association, res *CommitResult) error
}

// maxCommitDataSet bounds a commitment request or result held in memory:
// some 10,000 instances.
const maxCommitDataSet = 4 << 20

// commitRequest starts the handling of an N-ACTION or N-EVENT-REPORT of
// the Storage Commitment Push Model, or returns nil if it is not one.
func commitRequest(a *Association, cmd *cmdset.Command, pc *PresentationContext, commit CommitHandler, result CommitResultHandler, respond func(field cmdset.Field, err error)) (sink, error) {
	if pc.AbstractSyntax != uid.StorageCommitmentPushModel {
		return nil, nil
	}
	var field cmdset.Field
	var handle func(ctx context.Context, ds *dicom.Dataset) error
	answered := make(chan struct{})
	switch cmd.CommandField {
	case cmdset.NActionRQ:
		if commit == nil {
			return nil, nil
		}
		field = cmdset.NActionRSP
		handle = func(ctx context.Context, ds *dicom.Dataset) error {
			if cmd.ActionTypeID == nil || *cmd.ActionTypeID != 1 {
				return Errorf(StatusNoSuchActionType, "Action Type ID must be 1 (Request Storage Commitment)")
			}
			if cmd.RequestedSOPInstanceUID != uid.StorageCommitmentPushModelInstance {
				return Errorf(StatusNoSuchObjectInstance, "Requested SOP Instance UID must be %s", uid.StorageCommitmentPushModelInstance)
			}
			req := &CommitRequest{TransactionUID: ds.First(tag.TransactionUID), Instances: refs(ds.Items(tag.ReferencedSOPSequence)), Answered: answered}
			if req.TransactionUID == "" || len(req.Instances) == 0 {
				return Errorf(StatusMissingAttribute, "Transaction UID and Referenced SOP Sequence are required")
			}
			return commit.Commit(ctx, a, req)
		}
	case cmdset.NEventReportRQ:
		if result == nil {
			return nil, nil
		}
		field = cmdset.NEventReportRSP
		handle = func(ctx context.Context, ds *dicom.Dataset) error {
			if cmd.EventTypeID == nil || (*cmd.EventTypeID != 1 && *cmd.EventTypeID != 2) {
				return Errorf(StatusNoSuchEventType, "Event Type ID must be 1 or 2")
			}
			res := &CommitResult{TransactionUID: ds.First(tag.TransactionUID), Committed: refs(ds.Items(tag.ReferencedSOPSequence))}
			for _, it := range ds.Items(tag.FailedSOPSequence) {
				r := refs([]*dicom.Dataset{it})
				reason, _ := strconv.Atoi(it.First(tag.FailureReason))
				res.Failed = append(res.Failed, FailedSOP{SOPRef: r[0], Reason: Status(reason)})
			}
			return result.CommitResult(ctx, a, res)
		}
	default:
		return nil, nil
	}
	if !cmd.HasDataSet() {
		return nil, ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without a data set", cmd.CommandField)
	}
	return withDataSet(a, *cmd.MessageID, nil, pc, maxCommitDataSet, func(ctx context.Context, ds *dicom.Dataset, err error) {
		defer close(answered)
		if err != nil {
			respond(field, Errorf(StatusInvalidArgumentValue, "data set: %v", err))
			return
		}
		respond(field, handle(ctx, ds))
	}), nil
}

func refs(items []*dicom.Dataset) []SOPRef {
	out := make([]SOPRef, 0, len(items))
	for _, it := range items {
		out = append(out, SOPRef{ClassUID: it.First(tag.ReferencedSOPClassUID), InstanceUID: it.First(tag.ReferencedSOPInstanceUID)})
	}
	return out
}

func refItems(rs []SOPRef) []*dicom.Dataset {
	out := make([]*dicom.Dataset, 0, len(rs))
	for _, r := range rs {
		out = append(out, &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.ReferencedSOPClassUID, VR: "UI", Values: []string{r.ClassUID}},
			{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{r.InstanceUID}},
		}})
	}
	return out
}

// RequestCommit asks the peer to commit to keeping instances (N-ACTION)
// and returns once the peer has accepted the request; the result comes
// later, to a CommitResultHandler.
func (a *Association) RequestCommit(ctx context.Context, req *CommitRequest) error {
	ds := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.TransactionUID, VR: "UI", Values: []string{req.TransactionUID}},
		{Tag: tag.ReferencedSOPSequence, VR: "SQ", Items: refItems(req.Instances)},
	}}
	action := uint16(1)
	cmd := &cmdset.Command{
		CommandField:            cmdset.NActionRQ,
		RequestedSOPClassUID:    uid.StorageCommitmentPushModel,
		RequestedSOPInstanceUID: uid.StorageCommitmentPushModelInstance,
		ActionTypeID:            &action,
	}
	return a.commitMessage(ctx, cmd, ds)
}

// ReportCommit sends a Storage Commitment result (N-EVENT-REPORT) and
// waits for the peer's response: Event Type 1 when every instance was
// committed, 2 when some were not.
func (a *Association) ReportCommit(ctx context.Context, res *CommitResult) error {
	ds := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.TransactionUID, VR: "UI", Values: []string{res.TransactionUID}},
	}}
	event := uint16(1)
	if len(res.Failed) > 0 {
		event = 2
		var items []*dicom.Dataset
		for _, f := range res.Failed {
			it := refItems([]SOPRef{f.SOPRef})[0]
			it.Elements = append(it.Elements, dicom.Element{Tag: tag.FailureReason, VR: "US", Values: []string{strconv.Itoa(int(f.Reason))}})
			items = append(items, it)
		}
		ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.FailedSOPSequence, VR: "SQ", Items: items})
	}
	if len(res.Committed) > 0 {
		ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.ReferencedSOPSequence, VR: "SQ", Items: refItems(res.Committed)})
	}
	cmd := &cmdset.Command{
		CommandField:           cmdset.NEventReportRQ,
		AffectedSOPClassUID:    uid.StorageCommitmentPushModel,
		AffectedSOPInstanceUID: uid.StorageCommitmentPushModelInstance,
		EventTypeID:            &event,
	}
	return a.commitMessage(ctx, cmd, ds)
}

func (a *Association) commitMessage(ctx context.Context, cmd *cmdset.Command, ds *dicom.Dataset) error {
	pc, ok := a.Context(uid.StorageCommitmentPushModel, "")
	if !ok {
		return fmt.Errorf("%w for Storage Commitment Push Model", ErrNoContext)
	}
	ts, _ := uid.LookupTransferSyntax(pc.TransferSyntax)
	var buf bytes.Buffer
	if err := ds.Encode(&buf, ts, dicom.EncodeOptions{}); err != nil {
		return fmt.Errorf("dimse: encode %v: %w", cmd.CommandField, err)
	}
	id := a.nextMessageID()
	cmd.MessageID = &id
	rsp, err := a.roundTrip(ctx, pc.ID, cmd, &buf)
	if err != nil {
		return err
	}
	if st := responseStatus(rsp.cmd); !st.IsSuccess() {
		return &StatusError{Status: st, Comment: rsp.cmd.ErrorComment}
	}
	return nil
}
