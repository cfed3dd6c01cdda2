// The in-memory model behind the ARM test server: resource groups, virtual machines, managed disks,
// snapshots and their operations, plus what tests inject (throttling, quotas, failing operations).
// Names compare case-insensitively, as ARM resource names and paths do.
import { randomUUID } from 'node:crypto';
import { Operations } from './operations.ts';
import type { ArmErrorDetail } from './operations.ts';

/** The Microsoft.Compute resource types the server models. */
export type ResourceType = 'virtualMachines' | 'disks' | 'snapshots';

/** Disk SKUs the Disk RP accepts (sku.name). */
export const DISK_SKUS = ['Standard_LRS', 'Premium_LRS', 'StandardSSD_LRS', 'UltraSSD_LRS', 'Premium_ZRS', 'StandardSSD_ZRS', 'PremiumV2_LRS'] as const;

/** Snapshot SKUs the Disk RP accepts (sku.name). */
export const SNAPSHOT_SKUS = ['Standard_LRS', 'Premium_LRS', 'Standard_ZRS'] as const;

/** Disk SKUs whose incremental snapshots copy their data in the background after creation (completionPercent). */
export const BACKGROUND_COPY_SKUS: readonly string[] = ['PremiumV2_LRS', 'UltraSSD_LRS'];

/** Regions the server knows (a subset of Azure's), by ARM's normalised name. */
export const LOCATIONS = [
  'australiaeast', 'brazilsouth', 'canadacentral', 'centralindia', 'centralus', 'eastasia', 'eastus', 'eastus2',
  'francecentral', 'germanywestcentral', 'italynorth', 'japaneast', 'koreacentral', 'northcentralus', 'northeurope',
  'norwayeast', 'polandcentral', 'southafricanorth', 'southcentralus', 'southeastasia', 'swedencentral',
  'switzerlandnorth', 'uaenorth', 'uksouth', 'ukwest', 'westcentralus', 'westeurope', 'westus', 'westus2', 'westus3',
] as const;

/** A resource group. */
export interface ResourceGroupRecord {
  readonly name: string;
  readonly location: string;
}

/** A managed disk. */
export interface DiskRecord {
  readonly name: string;
  readonly resourceGroup: string;
  readonly location: string;
  readonly zone: string | undefined;
  sizeGiB: number;
  readonly sku: string;
  tags: Record<string, string>;
  readonly createOption: string;
  /** creationData.sourceResourceId exactly as the creating request gave it. */
  readonly sourceResourceId: string | undefined;
  readonly sourceUniqueId: string | undefined;
  provisioningState: string;
  /** The id of the VM the disk is attached to (or reserved for, while an attach runs). */
  managedBy: string | undefined;
  readonly uniqueId: string;
  readonly timeCreated: string;
}

/** A snapshot. */
export interface SnapshotRecord {
  readonly name: string;
  readonly resourceGroup: string;
  readonly location: string;
  tags: Record<string, string>;
  readonly incremental: boolean;
  readonly sku: string;
  readonly createOption: string;
  readonly sourceResourceId: string;
  readonly sourceUniqueId: string;
  readonly sizeGiB: number;
  provisioningState: string;
  /** Background copy (incremental snapshots of Premium SSD v2 and Ultra disks): steps done of `copySteps`. */
  copyStep: number;
  /** 0 when the snapshot has no background copy. */
  readonly copySteps: number;
  readonly uniqueId: string;
  readonly familyId: string | undefined;
  readonly timeCreated: string;
}

/** One entry of a VM's storageProfile.dataDisks. */
export interface DataDiskRecord {
  readonly lun: number;
  /** The disk's canonical id (as the disk resource reports it). */
  readonly diskId: string;
  readonly createOption: string;
  readonly caching: string;
}

/** A virtual machine: only what attaching disks and describing them needs. */
export interface VmRecord {
  readonly name: string;
  readonly resourceGroup: string;
  readonly location: string;
  readonly zone: string | undefined;
  readonly vmSize: string;
  /** The size's data-disk limit. */
  readonly maxDataDisks: number;
  readonly osDiskId: string;
  dataDisks: DataDiskRecord[];
  provisioningState: string;
  /** The etag's number; every accepted change increments it. */
  version: number;
  /** True while an update operation runs (another update is refused until it ends). */
  busy: boolean;
  tags: Record<string, string>;
  readonly vmId: string;
  readonly timeCreated: string;
}

/** A canned error for requests that match; `times` counts down to zero. */
export interface InjectedFault {
  /** HTTP method to match (any when absent). */
  method?: string;
  /** Case-insensitive substring of the path to match (any when absent). */
  pathIncludes?: string;
  status: number;
  code: string;
  message: string;
  headers?: Record<string, string>;
  /** How many matching requests get the error; 1 when absent. */
  times?: number;
}

/** Makes the next long-running operation on a resource end Failed. */
export interface OperationFailure {
  type: ResourceType;
  name: string;
  code?: string;
  message?: string;
}

/** One request as the server received it (for tests to assert on order and count). */
export interface RequestRecord {
  method: string;
  path: string;
  apiVersion: string | null;
}

/** ARM's normalised location name: lower case without spaces ("West Europe" is "westeurope"). */
export function normalizeLocation(location: string): string {
  return location.replace(/\s+/g, '').toLowerCase();
}

/** A resource id in ARM's form. */
export function resourceId(subscriptionId: string, resourceGroup: string, type: ResourceType, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/${type}/${name}`;
}

/** The parts of a Microsoft.Compute resource id; the leading '/' is optional (the Disk RP examples omit it). */
export function parseResourceId(id: string): { subscriptionId: string; resourceGroup: string; type: ResourceType; name: string } | undefined {
  const match = /^\/?subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/(virtualMachines|disks|snapshots)\/([^/]+)$/i.exec(id);
  if (match === null) return undefined;
  const [, subscriptionId = '', resourceGroup = '', rawType = '', name = ''] = match;
  const type = (['virtualMachines', 'disks', 'snapshots'] as const).find((t) => t.toLowerCase() === rawType.toLowerCase());
  return type === undefined ? undefined : { subscriptionId, resourceGroup, type, name };
}

/** The map key of a resource: resource group and name, case-insensitively. */
function key(resourceGroup: string, name: string): string {
  return `${resourceGroup.toLowerCase()}/${name.toLowerCase()}`;
}

/** What the server was started with. */
export interface StateOptions {
  subscriptionId: string;
  location: string;
  resourceGroups: readonly string[];
  operationPolls: number;
  backgroundCopyPolls: number;
}

/** The server's state. Tests read it and set it up directly; handlers change it through requests. */
export class AzureComputeState {
  /** The one subscription the server knows; any other is SubscriptionNotFound. */
  readonly subscriptionId: string;
  /** Where resources go when a test does not say. */
  readonly defaultLocation: string;
  /** GETs an operation takes to finish (1 = the first poll sees the end). Read when an operation starts. */
  operationPolls: number;
  /** GETs of an incremental snapshot of a Premium SSD v2 or Ultra disk until completionPercent reaches 100. */
  backgroundCopyPolls: number;
  /** Regional quotas, as counts of existing resources; a create beyond them is refused. */
  readonly quota = { snapshots: Number.POSITIVE_INFINITY, disks: Number.POSITIVE_INFINITY };
  /** Every request received, in order. */
  readonly requests: RequestRecord[] = [];
  readonly operations: Operations;

  readonly #groups = new Map<string, ResourceGroupRecord>();
  readonly #disks = new Map<string, DiskRecord>();
  readonly #snapshots = new Map<string, SnapshotRecord>();
  readonly #vms = new Map<string, VmRecord>();
  readonly #faults: (InjectedFault & { remaining: number })[] = [];
  readonly #operationFailures: OperationFailure[] = [];

  constructor(options: StateOptions) {
    this.subscriptionId = options.subscriptionId;
    this.defaultLocation = options.location;
    this.operationPolls = options.operationPolls;
    this.backgroundCopyPolls = options.backgroundCopyPolls;
    this.operations = new Operations(() => this.operationPolls);
    for (const name of options.resourceGroups) this.addResourceGroup(name);
  }

  /** The first resource group, where setup helpers put resources by default. */
  get defaultResourceGroup(): string {
    const first = this.#groups.values().next();
    if (first.done === true) throw new Error('Azure Compute test server: no resource group exists');
    return first.value.name;
  }

  /** Creates a resource group (setup). */
  addResourceGroup(name: string, location = this.defaultLocation): ResourceGroupRecord {
    const group = { name, location };
    this.#groups.set(name.toLowerCase(), group);
    return group;
  }

  /** A resource group by name. */
  resourceGroup(name: string): ResourceGroupRecord | undefined {
    return this.#groups.get(name.toLowerCase());
  }

  /** Creates a disk, Succeeded and unattached (setup). */
  addDisk(spec: { name: string; resourceGroup?: string; location?: string; zone?: string; sizeGiB?: number; sku?: string; tags?: Record<string, string> }): DiskRecord {
    const resourceGroup = this.#existingGroup(spec.resourceGroup);
    return this.putDisk({
      name: spec.name,
      resourceGroup,
      location: normalizeLocation(spec.location ?? this.defaultLocation),
      zone: spec.zone,
      sizeGiB: spec.sizeGiB ?? 32,
      sku: spec.sku ?? 'Premium_LRS',
      tags: spec.tags ?? {},
      createOption: 'Empty',
      sourceResourceId: undefined,
      sourceUniqueId: undefined,
      provisioningState: 'Succeeded',
      managedBy: undefined,
      uniqueId: randomUUID(),
      timeCreated: new Date().toISOString(),
    });
  }

  /**
   * Creates a running VM with an OS disk (`<name>_OsDisk`) and the given data disks, created and
   * attached at the given or next free LUNs (setup).
   */
  addVm(spec: {
    name: string;
    resourceGroup?: string;
    location?: string;
    zone?: string;
    vmSize?: string;
    maxDataDisks?: number;
    osDiskSizeGiB?: number;
    dataDisks?: { name: string; lun?: number; sizeGiB?: number; sku?: string }[];
  }): VmRecord {
    const resourceGroup = this.#existingGroup(spec.resourceGroup);
    const location = normalizeLocation(spec.location ?? this.defaultLocation);
    const zone = spec.zone;
    const os = this.addDisk({ name: `${spec.name}_OsDisk`, resourceGroup, location, ...(zone === undefined ? {} : { zone }), sizeGiB: spec.osDiskSizeGiB ?? 30 });
    const vm: VmRecord = {
      name: spec.name,
      resourceGroup,
      location,
      zone,
      vmSize: spec.vmSize ?? 'Standard_D4s_v5',
      maxDataDisks: spec.maxDataDisks ?? 8,
      osDiskId: this.diskId(os),
      dataDisks: [],
      provisioningState: 'Succeeded',
      version: 1,
      busy: false,
      tags: {},
      vmId: randomUUID(),
      timeCreated: new Date().toISOString(),
    };
    this.#vms.set(key(resourceGroup, spec.name), vm);
    os.managedBy = this.vmId(vm);
    for (const data of spec.dataDisks ?? []) {
      this.addDisk({ name: data.name, resourceGroup, location, ...(zone === undefined ? {} : { zone }), sizeGiB: data.sizeGiB ?? 64, sku: data.sku ?? 'Premium_LRS' });
      this.attach(spec.name, data.name, data.lun, resourceGroup);
    }
    return vm;
  }

  /** Attaches an existing disk to a VM at a LUN (the lowest free one by default), with no operation (setup). */
  attach(vmName: string, diskName: string, lun?: number, resourceGroup = this.defaultResourceGroup): void {
    const vm = this.vm(vmName, resourceGroup);
    const disk = this.disk(diskName, resourceGroup);
    if (vm === undefined || disk === undefined) throw new Error(`Azure Compute test server: no VM ${vmName} or disk ${diskName}`);
    const used = new Set(vm.dataDisks.map((d) => d.lun));
    let chosen = lun ?? 0;
    while (lun === undefined && used.has(chosen)) chosen += 1;
    if (used.has(chosen)) throw new Error(`Azure Compute test server: LUN ${chosen} of ${vmName} is taken`);
    vm.dataDisks.push({ lun: chosen, diskId: this.diskId(disk), createOption: 'Attach', caching: 'None' });
    vm.version += 1;
    disk.managedBy = this.vmId(vm);
  }

  /** Detaches a disk from its VM without an operation: "the disk is no longer attached" (setup). */
  detach(vmName: string, diskName: string, resourceGroup = this.defaultResourceGroup): void {
    const vm = this.vm(vmName, resourceGroup);
    const disk = this.disk(diskName, resourceGroup);
    if (vm === undefined || disk === undefined) throw new Error(`Azure Compute test server: no VM ${vmName} or disk ${diskName}`);
    const id = this.diskId(disk).toLowerCase();
    vm.dataDisks = vm.dataDisks.filter((d) => d.diskId.toLowerCase() !== id);
    vm.version += 1;
    disk.managedBy = undefined;
  }

  /** A VM by name. */
  vm(name: string, resourceGroup = this.defaultResourceGroup): VmRecord | undefined {
    return this.#vms.get(key(resourceGroup, name));
  }

  /** A disk by name. */
  disk(name: string, resourceGroup = this.defaultResourceGroup): DiskRecord | undefined {
    return this.#disks.get(key(resourceGroup, name));
  }

  /** A snapshot by name. */
  snapshot(name: string, resourceGroup = this.defaultResourceGroup): SnapshotRecord | undefined {
    return this.#snapshots.get(key(resourceGroup, name));
  }

  /** Every snapshot, in creation order. */
  snapshots(): SnapshotRecord[] {
    return [...this.#snapshots.values()];
  }

  /** Every disk, in creation order. */
  disks(): DiskRecord[] {
    return [...this.#disks.values()];
  }

  /** Answers the next `times` requests that match with an error. */
  injectFault(fault: InjectedFault): void {
    this.#faults.push({ ...fault, remaining: fault.times ?? 1 });
  }

  /**
   * Throttles the next `times` matching requests: 429 with Retry-After, as ARM does when a
   * subscription's read or write budget is spent (code TooManyRequests unless another is given).
   */
  throttle(options: { times?: number; retryAfterSeconds?: number; code?: string; method?: string; pathIncludes?: string } = {}): void {
    const seconds = options.retryAfterSeconds ?? 1;
    this.injectFault({
      ...(options.method === undefined ? {} : { method: options.method }),
      ...(options.pathIncludes === undefined ? {} : { pathIncludes: options.pathIncludes }),
      status: 429,
      code: options.code ?? 'TooManyRequests',
      message: `Number of requests for subscription '${this.subscriptionId}' exceeded. Please try again after '${seconds}' seconds.`,
      headers: { 'Retry-After': String(seconds) },
      times: options.times ?? 1,
    });
  }

  /** Makes the next long-running operation on the named resource end Failed with the given error. */
  failNextOperation(failure: OperationFailure): void {
    this.#operationFailures.push(failure);
  }

  /** The injected fault for a request, if one matches (and counts it). */
  takeFault(method: string, path: string): InjectedFault | undefined {
    const lowerPath = path.toLowerCase();
    const index = this.#faults.findIndex(
      (f) => (f.method === undefined || f.method.toUpperCase() === method) && (f.pathIncludes === undefined || lowerPath.includes(f.pathIncludes.toLowerCase())),
    );
    const fault = this.#faults[index];
    if (fault === undefined) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.#faults.splice(index, 1);
    return fault;
  }

  /** The injected failure for an operation about to start on a resource, if any (and consumes it). */
  takeOperationFailure(type: ResourceType, name: string): ArmErrorDetail | undefined {
    const index = this.#operationFailures.findIndex((f) => f.type === type && f.name.toLowerCase() === name.toLowerCase());
    const failure = this.#operationFailures[index];
    if (failure === undefined) return undefined;
    this.#operationFailures.splice(index, 1);
    return { code: failure.code ?? 'InternalOperationError', message: failure.message ?? 'An internal execution error occurred. Please retry later.' };
  }

  /** The canonical id of a disk. */
  diskId(disk: DiskRecord): string {
    return resourceId(this.subscriptionId, disk.resourceGroup, 'disks', disk.name);
  }

  /** The canonical id of a snapshot. */
  snapshotId(snapshot: SnapshotRecord): string {
    return resourceId(this.subscriptionId, snapshot.resourceGroup, 'snapshots', snapshot.name);
  }

  /** The canonical id of a VM. */
  vmId(vm: VmRecord): string {
    return resourceId(this.subscriptionId, vm.resourceGroup, 'virtualMachines', vm.name);
  }

  /** Stores a disk (handlers and setup). */
  putDisk(disk: DiskRecord): DiskRecord {
    this.#disks.set(key(disk.resourceGroup, disk.name), disk);
    return disk;
  }

  /** Stores a snapshot (handlers). */
  putSnapshot(snapshot: SnapshotRecord): SnapshotRecord {
    this.#snapshots.set(key(snapshot.resourceGroup, snapshot.name), snapshot);
    return snapshot;
  }

  /** Removes a snapshot (the end of a delete operation). */
  removeSnapshot(snapshot: SnapshotRecord): void {
    this.#snapshots.delete(key(snapshot.resourceGroup, snapshot.name));
  }

  /** Finds a disk or snapshot by resource id in this subscription. */
  byId(id: string): { type: 'disks'; disk: DiskRecord } | { type: 'snapshots'; snapshot: SnapshotRecord } | undefined {
    const parsed = parseResourceId(id);
    if (parsed === undefined || parsed.subscriptionId.toLowerCase() !== this.subscriptionId.toLowerCase()) return undefined;
    if (parsed.type === 'disks') {
      const disk = this.disk(parsed.name, parsed.resourceGroup);
      return disk === undefined ? undefined : { type: 'disks', disk };
    }
    if (parsed.type === 'snapshots') {
      const snapshot = this.snapshot(parsed.name, parsed.resourceGroup);
      return snapshot === undefined ? undefined : { type: 'snapshots', snapshot };
    }
    return undefined;
  }

  /** Frees everything (the server stopped). */
  clear(): void {
    this.#groups.clear();
    this.#disks.clear();
    this.#snapshots.clear();
    this.#vms.clear();
    this.#faults.length = 0;
    this.#operationFailures.length = 0;
  }

  /** The named resource group, or the default one; setup helpers refuse a group that does not exist. */
  #existingGroup(name: string | undefined): string {
    const group = this.resourceGroup(name ?? this.defaultResourceGroup);
    if (group === undefined) throw new Error(`Azure Compute test server: no resource group ${String(name)}`);
    return group.name;
  }
}
