// The form-encoded parameters of one EC2 Query request, read the way the API reference names
// them (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html): lists as
// `Name.N`, structures as `Name.N.Member`, filters as `Filter.N.Name` / `Filter.N.Value.M`, tags as
// `Tag.N.Key` / `Tag.N.Value`. Every read marks the key as used; finish() refuses what no read
// used, so that a misspelt parameter fails the test instead of being ignored.
import { Ec2Error, invalidValue, missingParameter, unknownParameter } from './errors.ts';

/** A tag as the API takes it. */
export interface TagParam {
  key: string;
  value: string;
}

/** A Describe* filter: its name and the values, any of which may match. */
export interface FilterParam {
  name: string;
  values: string[];
}

/** A TagSpecification: the resource type it is for and its tags. */
export interface TagSpecificationParam {
  resourceType: string;
  tags: TagParam[];
}

/** Parameters every action takes besides its own. */
const COMMON = ['Action', 'Version'];

/** An action's parameters, consumed by typed reads. */
export class Params {
  readonly #values: Map<string, string>;
  readonly #used = new Set<string>(COMMON);

  private constructor(values: Map<string, string>) {
    this.#values = values;
  }

  /** Parses an application/x-www-form-urlencoded body. A repeated key is refused: the SDK never sends one. */
  static parse(body: string): Params {
    const values = new Map<string, string>();
    for (const [key, value] of new URLSearchParams(body)) {
      if (key === '') continue;
      if (values.has(key)) throw invalidValue(`The parameter ${key} is given more than once.`);
      values.set(key, value);
    }
    return new Params(values);
  }

  /** Every parameter as sent, for the request log. */
  all(): Record<string, string> {
    return Object.fromEntries(this.#values);
  }

  /** A raw value without marking it used (Action and Version are read before dispatch). */
  peek(name: string): string | undefined {
    return this.#values.get(name);
  }

  /** A string parameter. */
  string(name: string): string | undefined {
    this.#used.add(name);
    return this.#values.get(name);
  }

  /** A string parameter the action requires; an empty value counts as missing. */
  required(name: string, wireName: string = name): string {
    const value = this.string(name);
    if (value === undefined || value === '') throw missingParameter(wireName);
    return value;
  }

  /** A boolean: "true" or "false" only. */
  bool(name: string): boolean | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    if (raw !== 'true' && raw !== 'false') throw invalidValue(`Invalid value '${raw}' for ${name}. Expected 'true' or 'false'.`);
    return raw === 'true';
  }

  /** A decimal integer. */
  int(name: string): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    if (!/^-?\d{1,10}$/.test(raw)) throw invalidValue(`Invalid value '${raw}' for ${name}. It must be an integer.`);
    return Number(raw);
  }

  /** One of a fixed set of values. */
  oneOf<T extends string>(name: string, values: readonly T[]): T | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    if (!(values as readonly string[]).includes(raw)) throw invalidValue(`Invalid value '${raw}' for ${name}. Valid values: ${values.join(', ')}.`);
    return raw as T;
  }

  /** The values of a flat list `prefix.1`, `prefix.2`, ... in index order. */
  list(prefix: string): string[] {
    return this.#indices(prefix, '').map((i) => this.string(`${prefix}.${i}`) ?? '');
  }

  /** The members of a list of structures `prefix.N.*`, each read by `read(memberPrefix)`. */
  structList<T>(prefix: string, read: (memberPrefix: string) => T): T[] {
    return this.#indices(prefix, '.').map((i) => read(`${prefix}.${i}`));
  }

  /** Tags at `prefix.N.Key` / `prefix.N.Value`; a tag without a key is refused, a missing value is "". */
  tags(prefix: string): TagParam[] {
    return this.structList(prefix, (p) => {
      const key = this.string(`${p}.Key`);
      if (key === undefined) throw missingParameter(`${p}.Key`);
      return { key, value: this.string(`${p}.Value`) ?? '' };
    });
  }

  /** Describe* filters at `Filter.N.Name` and `Filter.N.Value.M`. */
  filters(): FilterParam[] {
    return this.structList('Filter', (p) => {
      const name = this.string(`${p}.Name`);
      if (name === undefined) throw missingParameter(`${p}.Name`);
      return { name, values: this.list(`${p}.Value`) };
    });
  }

  /** TagSpecification.N.ResourceType and TagSpecification.N.Tag.M. */
  tagSpecifications(): TagSpecificationParam[] {
    return this.structList('TagSpecification', (p) => {
      const resourceType = this.string(`${p}.ResourceType`);
      if (resourceType === undefined) throw missingParameter(`${p}.ResourceType`);
      return { resourceType, tags: this.tags(`${p}.Tag`) };
    });
  }

  /** Refuses any parameter no read used; then answers DryRunOperation when DryRun=true, as the service does
   *  once a request is valid. */
  finish(): void {
    const dryRun = this.bool('DryRun');
    for (const key of this.#values.keys()) {
      if (!this.#used.has(key)) throw unknownParameter(key);
    }
    if (dryRun === true) throw new Ec2Error(412, 'DryRunOperation', 'Request would have succeeded, but DryRun flag is set.');
  }

  /** The indices N of keys `prefix.N` (separator '') or `prefix.N.*` (separator '.'), sorted; N must be a positive integer. */
  #indices(prefix: string, separator: '' | '.'): number[] {
    const found = new Set<number>();
    const head = `${prefix}.`;
    for (const key of this.#values.keys()) {
      if (!key.startsWith(head)) continue;
      const rest = key.slice(head.length);
      const dot = rest.indexOf('.');
      const index = separator === '' ? rest : dot === -1 ? undefined : rest.slice(0, dot);
      if (index === undefined || (separator === '' && dot !== -1)) continue;
      if (!/^[1-9]\d{0,4}$/.test(index)) throw invalidValue(`Invalid list index in parameter ${key}.`);
      found.add(Number(index));
    }
    return [...found].sort((a, b) => a - b);
  }
}
