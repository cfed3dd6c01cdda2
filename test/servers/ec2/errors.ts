// The EC2 Query API's error codes the test server answers with, each with the HTTP status and the
// wording the service uses. Reference: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html

/** A request the server refuses; the dispatcher writes it as `<Response><Errors><Error>...`. Handlers
 *  throw it so that every refusal has one shape and one place that writes it. */
export class Ec2Error extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'Ec2Error';
    this.status = status;
    this.code = code;
  }
}

/** 400 MissingParameter: a required parameter is absent. */
export function missingParameter(name: string): Ec2Error {
  return new Ec2Error(400, 'MissingParameter', `The request must contain the parameter ${name}`);
}

/** 400 InvalidParameterValue: a value the service does not accept. */
export function invalidValue(message: string): Ec2Error {
  return new Ec2Error(400, 'InvalidParameterValue', message);
}

/** 400 UnknownParameter: the action has no such parameter (a misspelling must fail, not be ignored). */
export function unknownParameter(name: string): Ec2Error {
  return new Ec2Error(400, 'UnknownParameter', `The parameter ${name} is not recognized`);
}

/** 400 InvalidParameterCombination: two parameters that must not be used together. */
export function invalidCombination(message: string): Ec2Error {
  return new Ec2Error(400, 'InvalidParameterCombination', message);
}

/** 400 UnsupportedOperation: a parameter or value the real service accepts that this server does not model. */
export function notImplemented(what: string): Ec2Error {
  return new Ec2Error(400, 'UnsupportedOperation', `${what} is not implemented by the EC2 test server.`);
}

/** The resource kinds the server models, for their NotFound and Malformed codes. */
export type ResourceKind = 'instance' | 'volume' | 'snapshot';

/** The id prefix of each kind. */
export const ID_PREFIX: Readonly<Record<ResourceKind, string>> = { instance: 'i', volume: 'vol', snapshot: 'snap' };

/** 400 with the kind's NotFound code and the service's wording. */
export function notFound(kind: ResourceKind, ids: readonly string[]): Ec2Error {
  const list = ids.join(', ');
  switch (kind) {
    case 'instance':
      return new Ec2Error(
        400,
        'InvalidInstanceID.NotFound',
        ids.length === 1 ? `The instance ID '${list}' does not exist` : `The instance IDs '${list}' do not exist`,
      );
    case 'volume':
      return new Ec2Error(400, 'InvalidVolume.NotFound', `The volume '${list}' does not exist.`);
    case 'snapshot':
      return new Ec2Error(400, 'InvalidSnapshot.NotFound', `The snapshot '${list}' does not exist.`);
  }
}

/** 400 with the kind's Malformed code: the id does not have the shape of an id. */
export function malformed(kind: ResourceKind, id: string): Ec2Error {
  switch (kind) {
    case 'instance':
      return new Ec2Error(400, 'InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
    case 'volume':
      return new Ec2Error(400, 'InvalidVolumeID.Malformed', `Invalid id: "${id}" (expecting "vol-...")`);
    case 'snapshot':
      return new Ec2Error(400, 'InvalidSnapshotID.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
  }
}

/** 400 IncorrectState: the resource is not in a state that allows the action. */
export function incorrectState(message: string): Ec2Error {
  return new Ec2Error(400, 'IncorrectState', message);
}
