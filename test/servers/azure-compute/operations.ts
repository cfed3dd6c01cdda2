// Long-running operations as ARM's asynchronous-operation pattern describes them
// (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations): the
// accepting request answers 200/201/202 with an Azure-AsyncOperation URL (an operation status
// resource) and, for the Disk RP, also a Location URL (`monitor=true`). Time never passes here: an
// operation advances one step per GET of either URL, so tests control it by polling, not by waiting.
import { randomBytes, randomUUID } from 'node:crypto';
import type { ResourceProviderPart } from './api-versions.ts';

/** The status values of an operation status resource. */
export type OperationStatus = 'InProgress' | 'Succeeded' | 'Failed';

/** An ARM error body's inner object. */
export interface ArmErrorDetail {
  code: string;
  message: string;
}

/** What starting an operation needs. */
export interface OperationSpec {
  part: ResourceProviderPart;
  location: string;
  apiVersion: string;
  /** Applies the operation's effect when it succeeds; returns the resource body (undefined for deletes). */
  succeed: () => unknown;
  /** Undoes or marks what the accepting request did when the operation fails. */
  fail: () => void;
  /** When set, the operation ends Failed with this error (injected by a test). */
  failure?: ArmErrorDetail;
  /** HTTP status a Location poll answers once the operation failed. */
  failureStatus?: number;
}

/** One running or finished operation. */
export interface Operation {
  readonly id: string;
  /** The opaque `p` parameter ARM puts in operation URLs; a URL with another `p` is not this operation. */
  readonly token: string;
  readonly spec: OperationSpec;
  status: OperationStatus;
  /** GETs of the operation's URLs still to answer InProgress. */
  pollsLeft: number;
  /** Every GET of the operation's URLs so far. */
  polls: number;
  readonly startTime: string;
  endTime: string | undefined;
  error: ArmErrorDetail | undefined;
  /** The resource, once succeeded (the Disk RP returns it as properties.output). */
  output: unknown;
}

/** All operations of one server, by id. */
export class Operations {
  readonly #operations = new Map<string, Operation>();
  readonly #polls: () => number;

  /** `polls`: how many GETs an operation takes; read when each operation starts, so tests may change it. */
  constructor(polls: () => number) {
    this.#polls = polls;
  }

  /** Registers a new operation, InProgress. */
  start(spec: OperationSpec): Operation {
    const operation: Operation = {
      id: randomUUID(),
      token: randomBytes(12).toString('base64url'),
      spec,
      status: 'InProgress',
      pollsLeft: Math.max(1, this.#polls()),
      polls: 0,
      startTime: new Date().toISOString(),
      endTime: undefined,
      error: undefined,
      output: undefined,
    };
    this.#operations.set(operation.id, operation);
    return operation;
  }

  /** An operation by id, when its `p` token matches. */
  get(id: string, token: string | null): Operation | undefined {
    const operation = this.#operations.get(id.toLowerCase());
    return operation !== undefined && operation.token === token ? operation : undefined;
  }

  /** One GET of an operation URL: counts it, and finishes the operation on its last step. */
  advance(operation: Operation): void {
    operation.polls += 1;
    if (operation.status !== 'InProgress') return;
    operation.pollsLeft -= 1;
    if (operation.pollsLeft > 0) return;
    operation.endTime = new Date().toISOString();
    if (operation.spec.failure !== undefined) {
      operation.status = 'Failed';
      operation.error = operation.spec.failure;
      operation.spec.fail();
    } else {
      operation.status = 'Succeeded';
      operation.output = operation.spec.succeed();
    }
  }

  /** The operation status resource's body, as the Disk RP (with output) or the Compute RP returns it. */
  statusBody(operation: Operation): Record<string, unknown> {
    const body: Record<string, unknown> = { startTime: operation.startTime, status: operation.status, name: operation.id };
    if (operation.endTime !== undefined) body['endTime'] = operation.endTime;
    if (operation.status === 'Failed') body['error'] = operation.error;
    if (operation.status === 'Succeeded' && operation.spec.part === 'disk' && operation.output !== undefined) {
      body['properties'] = { output: operation.output };
    }
    return body;
  }

  /** The Azure-AsyncOperation and Location (monitor) URLs of an operation. */
  urls(operation: Operation, endpoint: string, subscriptionId: string): { asyncOperation: string; location: string } {
    const collection = operation.spec.part === 'disk' ? 'DiskOperations' : 'operations';
    const base = `${endpoint}/subscriptions/${subscriptionId}/providers/Microsoft.Compute/locations/${operation.spec.location}/${collection}/${operation.id}`;
    const query = `p=${operation.token}&api-version=${operation.spec.apiVersion}`;
    return { asyncOperation: `${base}?${query}`, location: `${base}?${query}&monitor=true` };
  }
}
