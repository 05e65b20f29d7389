// dimse.mjs drives dcmjs-dimse, a third DICOM stack, against pacsd: C-ECHO,
// C-STORE, C-FIND, C-MOVE and C-GET, and C-CANCEL of C-FIND, C-MOVE and
// C-GET. It reads a plan (JSON, the file named by its argument), runs one
// step per association, and prints what each step saw as one JSON object;
// the Go tests judge it. Its own SCP receives the C-MOVEs, answering each
// C-STORE after plan.destDelayMs, so that a cancel finds a sub-operation in
// flight.
import { readFileSync } from 'node:fs';
import dimse from 'dcmjs-dimse';

const { Client, Server, Scp } = dimse;
const { PresentationContext } = dimse.association;
const { CEchoRequest, CStoreRequest, CFindRequest, CMoveRequest, CGetRequest } = dimse.requests;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { Status, PresentationContextResult, TransferSyntax, StorageClass, SopClass } = dimse.constants;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The library logs every message to standard output, where the result goes.
dimse.log.setLevel('warn');
const log = (...args) => console.error(...args);

// counts is what a C-MOVE or C-GET response says of its sub-operations.
function counts(r) {
  return {
    status: r.getStatus(),
    remaining: r.getRemaining(),
    completed: r.getCompleted(),
    failed: r.getFailures(),
    warning: r.getWarnings(),
  };
}

// associate runs requests on one association and resolves with how it
// ended: released, aborted or failed, and the statuses of the final
// responses. setup may add handlers to the client before it sends.
function associate(requests, setup) {
  return new Promise((resolve) => {
    const client = new Client();
    const out = { ended: 'closed', errors: [] };
    if (setup) setup(client, out);
    for (const r of requests) client.addRequest(r);
    client.on('associationReleased', () => (out.ended = 'released'));
    client.on('associationRejected', (r) => out.errors.push(`rejected: ${JSON.stringify(r)}`));
    client.on('abort', () => (out.ended = 'aborted'));
    client.on('networkError', (e) => out.errors.push(String(e)));
    client.on('closed', () => resolve(out));
    client.send(plan.host, plan.port, plan.callingAE, plan.calledAE, { associationTimeout: 30000, pduTimeout: 60000 });
  });
}

function echoRequest(out, key) {
  const r = new CEchoRequest();
  r.on('response', (rsp) => (out[key] = rsp.getStatus()));
  return r;
}

// Destination SCP of the C-MOVEs: accepts storage, keeps a count.
const dest = { received: [] };
class DestScp extends Scp {
  associationRequested(association) {
    for (const c of association.getPresentationContexts()) {
      const ctx = association.getPresentationContext(c.id);
      const ts = ctx.getTransferSyntaxUids();
      if (Object.values(StorageClass).includes(ctx.getAbstractSyntaxUid()) && ts.includes(TransferSyntax.ExplicitVRLittleEndian)) {
        ctx.setResult(PresentationContextResult.Accept, TransferSyntax.ExplicitVRLittleEndian);
      } else if (ctx.getAbstractSyntaxUid() === SopClass.Verification) {
        ctx.setResult(PresentationContextResult.Accept, TransferSyntax.ImplicitVRLittleEndian);
      } else {
        ctx.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      }
    }
    this.sendAssociationAccept();
  }
  cEchoRequest(request, callback) {
    const rsp = CEchoResponse.fromRequest(request);
    rsp.setStatus(Status.Success);
    callback(rsp);
  }
  cStoreRequest(request, callback) {
    dest.received.push(request.getAffectedSopInstanceUid());
    const rsp = CStoreResponse.fromRequest(request);
    rsp.setStatus(Status.Success);
    setTimeout(() => callback(rsp), dest.delayMs);
  }
  associationReleaseRequested() {
    this.sendAssociationReleaseResponse();
  }
}

// getContexts lets the C-GET's C-STOREs come back: storage contexts with
// this side as SCP (SCP/SCU role selection).
function getContexts(client) {
  client.addAdditionalPresentationContext(
    new PresentationContext(0, StorageClass.CtImageStorage, TransferSyntax.ExplicitVRLittleEndian, undefined, true, true)
  );
}

// storeFiles stores files on one association and reports each one's
// status.
async function storeFiles(files) {
  const statuses = {};
  const reqs = files.map((f) => {
    const r = new CStoreRequest(f.path);
    r.on('response', (rsp) => (statuses[f.sop] = rsp.getStatus()));
    return r;
  });
  const a = await associate(reqs);
  return { statuses, ...a };
}

const steps = {
  async echo() {
    const out = {};
    const a = await associate([echoRequest(out, 'status')]);
    return { ...out, ...a };
  },

  store() {
    return storeFiles(plan.files);
  },

  async find() {
    const study = [];
    const images = [];
    const out = {};
    const s = CFindRequest.createStudyFindRequest({ StudyInstanceUID: plan.study, PatientName: '', NumberOfStudyRelatedInstances: '' });
    s.on('response', (rsp) => {
      if (rsp.getStatus() === Status.Pending && rsp.hasDataset()) study.push(rsp.getDataset().getElements());
      else out.studyStatus = rsp.getStatus();
    });
    const i = CFindRequest.createImageFindRequest({ StudyInstanceUID: plan.study, SeriesInstanceUID: plan.series, SOPInstanceUID: '' });
    i.on('response', (rsp) => {
      if (rsp.getStatus() === Status.Pending && rsp.hasDataset()) images.push(rsp.getDataset().getElements().SOPInstanceUID);
      else out.imageStatus = rsp.getStatus();
    });
    const a = await associate([s, i]);
    return { study, images, ...out, ...a };
  },

  async move() {
    dest.received = [];
    dest.delayMs = 0;
    const out = {};
    const r = CMoveRequest.createStudyMoveRequest(plan.destAE, plan.study);
    r.on('response', (rsp) => {
      if (rsp.getStatus() !== Status.Pending) out.final = counts(rsp);
    });
    const a = await associate([r]);
    return { ...out, received: dest.received.length, ...a };
  },

  async get() {
    const received = [];
    const out = {};
    const r = CGetRequest.createStudyGetRequest(plan.study);
    r.on('response', (rsp) => {
      if (rsp.getStatus() !== Status.Pending) out.final = counts(rsp);
    });
    const a = await associate([r], (client) => {
      getContexts(client);
      client.on('cStoreRequest', (req, callback) => {
        received.push(req.getAffectedSopInstanceUid());
        const rsp = CStoreResponse.fromRequest(req);
        rsp.setStatus(Status.Success);
        callback(rsp);
      });
    });
    return { ...out, received, ...a };
  },

  // cancelFind cancels an image-level C-FIND right after sending it, as
  // its matches would all be on the wire before a cancel sent on the
  // first of them arrived, then echoes on the same association.
  async cancelFind() {
    const out = { matches: 0 };
    const r = CFindRequest.createImageFindRequest({ StudyInstanceUID: plan.cancelStudy, SeriesInstanceUID: plan.cancelSeries, SOPInstanceUID: '' });
    r.on('response', (rsp) => {
      if (rsp.getStatus() === Status.Pending) out.matches++;
      else out.status = rsp.getStatus();
    });
    const a = await associate([r, echoRequest(out, 'echoAfter')], (client) => {
      // The client sends its requests right after it tells of the
      // acceptance, in the same tick: the C-CANCEL follows at once.
      client.on('associationAccepted', () => process.nextTick(() => client.cancel(r)));
    });
    return { ...out, ...a };
  },

  // cancelMove cancels a C-MOVE after two pending responses, while the
  // destination holds back the response to the third sub-operation.
  async cancelMove() {
    dest.received = [];
    dest.delayMs = plan.destDelayMs;
    const out = { pending: 0 };
    const r = CMoveRequest.createStudyMoveRequest(plan.destAE, plan.study);
    let client;
    r.on('response', (rsp) => {
      if (rsp.getStatus() === Status.Pending) {
        if (++out.pending === 2) client.cancel(r);
      } else {
        out.final = counts(rsp);
        out.receivedAtFinal = dest.received.length;
      }
    });
    const a = await associate([r, echoRequest(out, 'echoAfter')], (c) => (client = c));
    return { ...out, received: dest.received.length, ...a };
  },

  // cancelGet cancels a C-GET when its third C-STORE arrives, and answers
  // that C-STORE only after the C-CANCEL has gone out.
  async cancelGet() {
    const received = [];
    const out = {};
    const r = CGetRequest.createStudyGetRequest(plan.study);
    r.on('response', (rsp) => {
      if (rsp.getStatus() !== Status.Pending) out.final = counts(rsp);
    });
    const a = await associate([r, echoRequest(out, 'echoAfter')], (client) => {
      getContexts(client);
      client.on('cStoreRequest', (req, callback) => {
        received.push(req.getAffectedSopInstanceUid());
        const rsp = CStoreResponse.fromRequest(req);
        rsp.setStatus(Status.Success);
        if (received.length === 3) {
          client.cancel(r);
          setTimeout(() => callback(rsp), 200);
        } else {
          callback(rsp);
        }
      });
    });
    return { ...out, received: received.length, ...a };
  },
};

const server = new Server(DestScp);
server.on('networkError', (e) => log('destination SCP:', String(e)));
server.listen(plan.destPort);

const results = {};
for (const name of plan.steps) {
  try {
    results[name] = await steps[name]();
  } catch (e) {
    results[name] = { error: String(e && e.stack ? e.stack : e) };
  }
  log(name, JSON.stringify(results[name]));
}
server.close();
process.stdout.write(JSON.stringify(results) + '\n');
