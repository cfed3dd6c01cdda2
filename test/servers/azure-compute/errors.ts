// ARM's error shape and the errors this test server answers with. Wording follows Azure Resource
// Manager where it is documented (https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors)
// and the Compute resource provider's "Required parameter 'x' is missing (null)." style otherwise.

/** An error ARM would answer: HTTP status, `error.code`, `error.message`, optional `error.target`. */
export class ArmError extends Error {
  readonly status: number;
  readonly code: string;
  readonly target: string | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, options: { target?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.target = options.target;
    this.headers = options.headers ?? {};
  }

  /** The body: `{"error":{"code","message"[,"target"]}}`. */
  toJSON(): { error: { code: string; message: string; target?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.target === undefined ? {} : { target: this.target }) } };
  }
}

/** 400 InvalidParameter, the Compute RP's answer to a body field it cannot accept. */
export function invalidParameter(message: string, target: string): ArmError {
  return new ArmError(400, 'InvalidParameter', message, { target });
}

/** 400 InvalidParameter for a required field that is absent or null. */
export function requiredParameter(target: string): ArmError {
  return invalidParameter(`Required parameter '${target}' is missing (null).`, target);
}

/** 400 InvalidRequestContent: the body is not JSON, or a field has the wrong JSON type. */
export function invalidContent(detail: string): ArmError {
  return new ArmError(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: '${detail}'.`);
}

/** 400 LinkedInvalidPropertyId: a property that must hold a resource id does not. */
export function linkedInvalidPropertyId(value: string, path: string): ArmError {
  return new ArmError(
    400,
    'LinkedInvalidPropertyId',
    `Property id '${value}' at path '${path}' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'.`,
  );
}

/** 404 ResourceNotFound, ARM's answer for a resource that does not exist. */
export function resourceNotFound(type: string, name: string, resourceGroup: string): ArmError {
  return new ArmError(
    404,
    'ResourceNotFound',
    `The Resource 'Microsoft.Compute/${type}/${name}' under resource group '${resourceGroup}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
  );
}

/** 404 NotFound, the Compute RP's answer when a request names another resource that does not exist. */
export function linkedNotFound(id: string): ArmError {
  return new ArmError(404, 'NotFound', `Resource ${id} is not found.`);
}

/** 409 OperationNotAllowed: the resource is in a state that forbids the request (quota wording is separate). */
export function operationNotAllowed(message: string): ArmError {
  return new ArmError(409, 'OperationNotAllowed', message);
}

/** 501 for a part of the API this server does not implement: never a silent success. */
export function notImplemented(what: string): ArmError {
  return new ArmError(501, 'NotImplemented', `${what} is not implemented by the Azure Compute test server.`);
}
