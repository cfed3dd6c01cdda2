/**
 * A strict, in-process test server for the part of the Amazon EC2 Query API that the EC2
 * snapshotter (providers/aws/snapshotter.ts) uses through `@aws-sdk/client-ec2`. No EC2 emulator
 * installs on these machines, so the snapshotter is tested against this, through the real SDK over
 * HTTP on 127.0.0.1. State lives in memory; tests seed it and inject faults through `state`.
 *
 * Implemented, following https://docs.aws.amazon.com/AWSEC2/latest/APIReference/ (Query-Requests,
 * errors-overview and API_<Action>):
 * - POST / with an application/x-www-form-urlencoded body, Action and Version=2016-11-15 (other
 *   versions: NoSuchVersion); responses in the 2016-11-15 namespace with requestId; errors as
 *   `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
 * - Signature Version 4, verified in full against the one access key the server knows: 403
 *   MissingAuthenticationToken without it, 400 IncompleteSignature when malformed, 401 AuthFailure
 *   for another key, another region or a wrong signature, 400 RequestExpired beyond 15 minutes' skew.
 * - Strict parameters: a parameter the action does not have is 400 UnknownParameter, a missing
 *   required one MissingParameter, a bad value InvalidParameterValue, an unknown action
 *   InvalidAction; malformed ids the *.Malformed codes, unknown ids the *.NotFound codes;
 *   DryRun=true answers 412 DryRunOperation once the request is valid.
 * - DescribeInstances, DescribeVolumes, DescribeSnapshots: ids or filters (the common filter names,
 *   tag:<key>, tag-key, `*`/`?` wildcards; an unknown filter is InvalidParameterValue), Owner for
 *   snapshots, MaxResults (at least 5, capped at 1000/500/1000) and NextToken (opaque, signed, bound
 *   to the other parameters; MaxResults with ids is InvalidParameterCombination).
 * - CreateSnapshot and CreateSnapshots (InstanceSpecification with ExcludeBootVolume and
 *   ExcludeDataVolumeId.N, CopyTagsFromSource, TagSpecification for 'snapshot' only; one start time
 *   for the whole set; SnapshotLimitExceeded past `state.limits.snapshots`), DeleteSnapshot.
 * - CreateVolume from a completed snapshot or a size, in a zone of the region, with ClientToken
 *   idempotency (IdempotentParameterMismatch), VolumeLimitExceeded past `state.limits.volumes`;
 *   AttachVolume (VolumeInUse, IncorrectState, InvalidVolume.ZoneMismatch, device names and device
 *   in use); CreateTags on instances, volumes and snapshots (TagLimitExceeded at 50).
 * - Life cycles without a clock: a snapshot is pending until the `snapshotPolls`-th DescribeSnapshots
 *   response that shows it, which reports completed (or error with a StateMessage, see
 *   state.failSnapshot); a volume is creating until the `volumePolls`-th DescribeVolumes response
 *   (available, or error after state.failNextVolumeCreations); an attachment is attaching until the
 *   `attachPolls`-th DescribeVolumes response.
 * - Faults: state.failNext(action, fault, count) makes the next calls answer an error code (with its
 *   usual status), an empty-bodied status, or a reset connection, before or after applying the action;
 *   state.beforeNext(action, change) changes the world just before the next call is handled;
 *   state.limits sets snapshot and volume quotas; state.detachVolume models a volume no longer attached.
 *
 * Deliberately stricter than the service: a repeated parameter is refused.
 *
 * Not implemented (each answers 400 UnsupportedOperation or UnknownParameter, never a silent 200):
 * GET requests and query-string parameters, every other action (InvalidAction), DetachVolume,
 * DeleteVolume and instance life cycles (tests change state directly), Local Zones and Outposts
 * (OutpostArn, Location=local), AvailabilityZoneId, KMS keys, multi-attach, RestorableBy, snapshot
 * archive tiers and the Recycle Bin (recoverable/recovering states), fast snapshot restore, eventual
 * consistency (a new resource is visible at once), session tokens, and per-action IAM policies
 * (UnauthorizedOperation only through state.failNext).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HANDLERS } from './actions.ts';
import type { ActionContext } from './actions.ts';
import { verifySignature } from './auth.ts';
import type { SigningScope } from './auth.ts';
import { Ec2Error } from './errors.ts';
import { Params } from './params.ts';
import { ACTIONS, Ec2State } from './state.ts';
import type { Ec2Action, Ec2Fault } from './state.ts';
import { API_VERSION, errorDocument, responseDocument } from './xml.ts';
import { listenOnLoopback } from '../loopback-server.ts';

export { signRequest } from './auth.ts';
export { Ec2State } from './state.ts';
export type { Ec2Action, Ec2Fault, InstanceRecord, RecordedCall, SeedInstance, SeedVolume, SnapshotRecord, VolumeRecord } from './state.ts';

/** The access key the server accepts unless told otherwise (tests put it in AWS_ACCESS_KEY_ID). */
export const TEST_ACCESS_KEY_ID = 'AKIAEC2TESTSERVER001';
/** Its secret: the server checks signatures in full. A test value, not a credential. */
export const TEST_SECRET_ACCESS_KEY = 'ec2-test-server-secret-key-0000000000000';

/** Options of startEc2Server. */
export interface Ec2ServerOptions {
  /** The region requests must be signed for; default us-east-1. */
  region?: string;
  /** Its availability zones; default <region>a, b and c. */
  zones?: string[];
  accessKeyId?: string;
  secretAccessKey?: string;
  /** The account id snapshots are owned by; default 123456789012. */
  ownerId?: string;
  /** DescribeSnapshots responses until a new snapshot shows completed; default 2 (0: completed at once). */
  snapshotPolls?: number;
  /** DescribeVolumes responses until a new volume shows available; default 1. */
  volumePolls?: number;
  /** DescribeVolumes responses until an attachment shows attached; default 1. */
  attachPolls?: number;
}

/** A running EC2 test server. */
export interface Ec2ServerHandle {
  /** e.g. http://127.0.0.1:PORT — the endpoint for new EC2Client({ endpoint }). */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The model: seed instances, volumes and snapshots, inject faults, read what was created and called. */
  state: Ec2State;
  /** Stops listening, closes open sockets, forgets everything. Safe to call twice. */
  stop(): Promise<void>;
}

/** The status an error code answers with when a fault names none. */
function defaultStatus(code: string): number {
  if (code === 'RequestLimitExceeded' || code === 'Unavailable' || code === 'ServiceUnavailable') return 503;
  if (code === 'InternalError' || code === 'InternalFailure') return 500;
  if (code === 'AuthFailure') return 401;
  if (code === 'UnauthorizedOperation') return 403;
  return 400;
}

/** Starts a server on a free port of 127.0.0.1 and resolves once it listens. */
export async function startEc2Server(opts: Ec2ServerOptions = {}): Promise<Ec2ServerHandle> {
  const region = opts.region ?? 'us-east-1';
  const scope: SigningScope = {
    accessKeyId: opts.accessKeyId ?? TEST_ACCESS_KEY_ID,
    secretAccessKey: opts.secretAccessKey ?? TEST_SECRET_ACCESS_KEY,
    region,
    service: 'ec2',
  };
  const state = new Ec2State({
    region,
    ownerId: opts.ownerId ?? '123456789012',
    zones: opts.zones ?? [`${region}a`, `${region}b`, `${region}c`],
    timings: { snapshotPolls: opts.snapshotPolls ?? 2, volumePolls: opts.volumePolls ?? 1, attachPolls: opts.attachPolls ?? 1 },
  });
  const ctx: ActionContext = { state, tokenKey: randomBytes(32) };

  const server = createServer((req, res) => {
    void handle(scope, ctx, req, res);
  });
  const listener = await listenOnLoopback(server, 'EC2 test server', () => { state.clear(); });

  return {
    endpoint: `http://127.0.0.1:${listener.port}`,
    region,
    accessKeyId: scope.accessKeyId,
    secretAccessKey: scope.secretAccessKey,
    state,
    stop: () => listener.stop(),
  };
}

/** Reads the whole body before answering, so that a refusal never races the client's upload. */
async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Writes an XML document with the headers the service sends. */
function sendXml(res: ServerResponse, status: number, body: string, requestId: string): void {
  res.writeHead(status, {
    'x-amzn-RequestId': requestId,
    'Content-Type': 'text/xml;charset=UTF-8',
    'Content-Length': Buffer.byteLength(body),
    Date: new Date().toUTCString(),
    Server: 'AmazonEC2',
  });
  res.end(body);
}

/** One request: authenticate, dispatch, apply faults, answer. */
async function handle(scope: SigningScope, ctx: ActionContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = randomUUID();
  try {
    const body = await readBody(req);
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    if (method !== 'POST') throw new Ec2Error(400, 'UnsupportedOperation', `${method} requests are not implemented by the EC2 test server; use POST.`);
    if (url !== '/') throw new Ec2Error(400, 'UnsupportedOperation', `The EC2 test server answers POST / only, not ${url}.`);
    verifySignature(scope, { method, url, headers: req.headers, body });
    const isForm = /^application\/x-www-form-urlencoded\s*(?:;|$)/i.test(req.headers['content-type'] ?? '');
    const params = Params.parse(isForm ? body.toString('utf8') : '');
    const action = params.peek('Action');
    if (action === undefined || action === '') throw new Ec2Error(400, 'MissingAction', 'The request must contain the parameter Action');
    const version = params.peek('Version');
    if (version === undefined || version === '') throw new Ec2Error(400, 'MissingParameter', 'The request must contain the parameter Version');
    if (version !== API_VERSION) throw new Ec2Error(400, 'NoSuchVersion', `The requested version (${version}) of service AmazonEC2 does not exist`);
    if (!(ACTIONS as readonly string[]).includes(action)) throw new Ec2Error(400, 'InvalidAction', `The action ${action} is not valid for this web service.`);
    const known = action as Ec2Action;
    ctx.state.calls.push({ action: known, params: params.all() });

    ctx.state.runHook(known);
    const fault = ctx.state.takeFault(known);
    if (fault !== undefined && fault.afterApply !== true) return answerFault(res, fault, requestId);
    const fields = HANDLERS[known](params, ctx);
    if (fault !== undefined) return answerFault(res, fault, requestId);
    sendXml(res, 200, responseDocument(known, requestId, fields), requestId);
  } catch (err) {
    const error =
      err instanceof Ec2Error ? err : new Ec2Error(500, 'InternalError', `EC2 test server internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    sendXml(res, error.status, errorDocument(error.code, error.message, requestId), requestId);
  }
}

/** Answers an injected fault. */
function answerFault(res: ServerResponse, fault: Ec2Fault, requestId: string): void {
  if ('resetConnection' in fault) {
    res.socket?.destroy();
    return;
  }
  if ('emptyStatus' in fault) {
    res.writeHead(fault.emptyStatus, { 'Content-Length': '0' });
    res.end();
    return;
  }
  const message = fault.message ?? `Injected ${fault.code} (EC2 test server fault).`;
  sendXml(res, fault.status ?? defaultStatus(fault.code), errorDocument(fault.code, message, requestId), requestId);
}
