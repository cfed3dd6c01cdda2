// The Compute RP's part: Microsoft.Compute/virtualMachines GET, and PATCH or PUT of an existing VM
// to attach and detach data disks (https://learn.microsoft.com/rest/api/compute/virtual-machines).
// An update answers 200 with the VM (provisioningState Updating) and an Azure-AsyncOperation URL;
// the VM's etag changes with every accepted update, and If-Match / If-None-Match are honoured.
import { ArmError, invalidParameter, linkedInvalidPropertyId, linkedNotFound, notImplemented, operationNotAllowed, requiredParameter, resourceNotFound } from './errors.ts';
import { renderVm } from './render.ts';
import type { Reply, ResourceRequest } from './routes.ts';
import { parseResourceId } from './state.ts';
import type { AzureComputeState, DataDiskRecord, DiskRecord, VmRecord } from './state.ts';
import { isObject, jsonBody, onlyMembers, optionalArray, optionalBoolean, optionalInteger, optionalObject, optionalString, optionalTags, requiredLocation } from './validate.ts';

/** Values of DiskCreateOptionTypes for a VM's disks. */
const DATA_DISK_CREATE_OPTIONS = ['FromImage', 'Empty', 'Attach', 'Copy', 'Restore'];

/** Members of DataDisk. */
const DATA_DISK_MEMBERS = [
  'lun', 'name', 'vhd', 'image', 'caching', 'writeAcceleratorEnabled', 'createOption', 'diskSizeGB', 'managedDisk', 'sourceResource',
  'toBeDetached', 'detachOption', 'deleteOption', 'diskIOPSReadWrite', 'diskMBpsReadWrite', 'storageFaultDomainAlignment',
];

/** Values of CachingTypes. */
const CACHING_TYPES = ['None', 'ReadOnly', 'ReadWrite'];

/** The highest LUN a data disk may have. */
const MAX_LUN = 63;

/** GET /virtualMachines/{name}. */
export function getVm(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  const vm = state.vm(request.name, request.resourceGroup);
  if (vm === undefined) throw resourceNotFound('virtualMachines', request.name, request.resourceGroup);
  return { status: 200, body: renderVm(state, vm) };
}

/** PATCH (update) or PUT (createOrUpdate) of an existing VM: tags and storageProfile.dataDisks. */
export function updateVm(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  const vm = state.vm(request.name, request.resourceGroup);
  const body = jsonBody(request.contentType, request.body);
  if (vm === undefined) {
    if (request.method === 'PUT') throw notImplemented('Creating virtual machines');
    throw resourceNotFound('virtualMachines', request.name, request.resourceGroup);
  }
  checkConditions(request, vm);
  const isPut = request.method === 'PUT';
  const topMembers = ['tags', 'properties', 'id', 'name', 'type', 'etag', 'managedBy', 'systemData', 'resources'];
  onlyMembers(body, isPut ? [...topMembers, 'location', 'zones', 'plan', 'identity', 'extendedLocation', 'placement'] : [...topMembers, 'plan', 'identity', 'zones'], isPut ? 'VirtualMachine' : 'VirtualMachineUpdate', '');
  if (isPut) {
    const location = requiredLocation(body['location'], 'virtualMachines');
    if (location !== vm.location) {
      throw new ArmError(409, 'InvalidResourceLocation', `The resource '${vm.name}' already exists in location '${vm.location}' in resource group '${vm.resourceGroup}'. A resource with the same name cannot be created in location '${location}'. Please select a new resource name.`);
    }
  }
  for (const member of ['plan', 'identity', 'placement', 'extendedLocation']) {
    if (body[member] !== undefined && body[member] !== null) throw notImplemented(`Updating a VM's ${member}`);
  }
  const zones = optionalArray(body['zones'], 'zones');
  if (zones !== undefined && JSON.stringify(zones) !== JSON.stringify(vm.zone === undefined ? [] : [vm.zone])) {
    throw new ArmError(409, 'PropertyChangeNotAllowed', `Changing property 'zones' is not allowed.`, { target: 'zones' });
  }
  const tags = optionalTags(body['tags']);
  const properties = optionalObject(body['properties'], 'properties');
  // A PUT carries the whole model (hardwareProfile, osProfile, ...), which this server does not model
  // and accepts as sent; a PATCH may only carry what it changes, so anything but disks is refused.
  if (!isPut && properties !== undefined) {
    for (const member of Object.keys(properties)) if (member !== 'storageProfile') throw notImplemented(`Updating a VM's properties.${member}`);
  }
  const storageProfile = optionalObject(properties?.['storageProfile'], 'properties.storageProfile');
  if (storageProfile !== undefined && !isPut) {
    for (const member of Object.keys(storageProfile)) if (member !== 'dataDisks') throw notImplemented(`Updating a VM's storageProfile.${member}`);
  }
  const rawDataDisks = optionalArray(storageProfile?.['dataDisks'], 'properties.storageProfile.dataDisks');
  if (isPut && rawDataDisks === undefined) throw requiredParameter('storageProfile.dataDisks');
  if (vm.busy) {
    throw operationNotAllowed(`Operation 'Update' is not allowed on VM '${vm.name}' since another operation on it is in progress.`);
  }
  const plan = rawDataDisks === undefined ? undefined : planDataDisks(state, vm, rawDataDisks);
  if (tags !== undefined) vm.tags = tags;
  vm.version += 1;
  if (plan === undefined) {
    return { status: 200, body: renderVm(state, vm) };
  }

  const previous = vm.dataDisks;
  vm.dataDisks = plan.next;
  for (const disk of plan.attach) disk.managedBy = state.vmId(vm);
  vm.busy = true;
  vm.provisioningState = 'Updating';
  const failure = state.takeOperationFailure('virtualMachines', vm.name);
  const operation = state.operations.start({
    part: 'compute',
    location: vm.location,
    apiVersion: request.apiVersion,
    succeed: () => {
      for (const disk of plan.detach) disk.managedBy = undefined;
      vm.busy = false;
      vm.provisioningState = 'Succeeded';
      return undefined;
    },
    fail: () => {
      vm.dataDisks = previous;
      for (const disk of plan.attach) disk.managedBy = undefined;
      vm.busy = false;
      vm.provisioningState = 'Failed';
      vm.version += 1;
    },
    ...(failure === undefined ? {} : { failure }),
  });
  const urls = state.operations.urls(operation, request.ctx.endpoint, state.subscriptionId);
  return { status: 200, body: renderVm(state, vm), headers: { 'Azure-AsyncOperation': urls.asyncOperation } };
}

/** If-Match and If-None-Match against the VM's etag ('*' matches any existing VM). */
function checkConditions(request: ResourceRequest, vm: VmRecord): void {
  const etag = `"${vm.version}"`;
  const failed = (): ArmError => new ArmError(412, 'PreconditionFailed', 'The condition specified using HTTP conditional header(s) is not met.');
  if (request.ifMatch !== undefined && request.ifMatch !== '*' && request.ifMatch !== etag) throw failed();
  if (request.ifNoneMatch !== undefined && (request.ifNoneMatch === '*' || request.ifNoneMatch === etag)) throw failed();
}

/** The data disks a VM will have, and which disks that attaches and detaches. */
interface DataDiskPlan {
  next: DataDiskRecord[];
  attach: DiskRecord[];
  detach: DiskRecord[];
}

/**
 * Checks the wanted storageProfile.dataDisks against the VM and the disks, as the Compute RP does:
 * the list replaces the current one, entries already attached must keep their LUN, new entries
 * must Attach an existing, unowned, provisioned disk in the VM's region and zone, and the VM size
 * caps the count.
 */
function planDataDisks(state: AzureComputeState, vm: VmRecord, raw: unknown[]): DataDiskPlan {
  const current = new Map(vm.dataDisks.map((d) => [d.diskId.toLowerCase(), d]));
  const next: DataDiskRecord[] = [];
  const attach: DiskRecord[] = [];
  const luns = new Set<number>();
  const seen = new Set<string>();
  raw.forEach((entry, index) => {
    const path = `properties.storageProfile.dataDisks[${index}]`;
    if (!isObject(entry)) throw new ArmError(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: 'Error converting value to type 'DataDisk'. Path '${path}''.`);
    onlyMembers(entry, DATA_DISK_MEMBERS, 'DataDisk', path);
    const lun = optionalInteger(entry['lun'], `${path}.lun`);
    if (lun === undefined) throw requiredParameter('dataDisk.lun');
    if (lun < 0 || lun > MAX_LUN) throw invalidParameter(`The value ${lun} of parameter 'dataDisk.lun' is out of range (0-${MAX_LUN}).`, 'dataDisk.lun');
    const createOption = optionalString(entry['createOption'], `${path}.createOption`);
    if (createOption === undefined) throw requiredParameter('dataDisk.createOption');
    if (!DATA_DISK_CREATE_OPTIONS.includes(createOption)) {
      throw invalidParameter(`The value '${createOption}' of parameter 'dataDisk.createOption' is not valid.`, 'dataDisk.createOption');
    }
    const caching = optionalString(entry['caching'], `${path}.caching`) ?? 'None';
    if (!CACHING_TYPES.includes(caching)) throw invalidParameter(`The value '${caching}' of parameter 'dataDisk.caching' is not valid.`, 'dataDisk.caching');
    if (entry['vhd'] !== undefined && entry['vhd'] !== null) throw notImplemented('Unmanaged (VHD) data disks');
    if (optionalBoolean(entry['toBeDetached'], `${path}.toBeDetached`) === true) return;
    const managedDisk = optionalObject(entry['managedDisk'], `${path}.managedDisk`);
    const id = optionalString(managedDisk?.['id'], `${path}.managedDisk.id`);
    if (id === undefined) {
      if (createOption === 'Attach') throw requiredParameter('dataDisk.managedDisk.id');
      throw notImplemented(`Creating a data disk with createOption '${createOption}'`);
    }
    const parsed = parseResourceId(id);
    if (parsed === undefined) throw linkedInvalidPropertyId(id, `${path}.managedDisk.id`);
    const found = parsed.type === 'disks' ? state.byId(id) : undefined;
    if (found?.type !== 'disks') throw linkedNotFound(id);
    const disk = found.disk;
    const diskKey = state.diskId(disk).toLowerCase();
    if (luns.has(lun)) throw invalidParameter(`Two data disks of the VM cannot use the same LUN ${lun}.`, 'dataDisk.lun');
    if (seen.has(diskKey)) throw invalidParameter(`Disk '${disk.name}' is listed more than once.`, 'dataDisks');
    if (diskKey === vm.osDiskId.toLowerCase()) throw invalidParameter(`Disk '${disk.name}' is the VM's OS disk.`, 'dataDisks');
    luns.add(lun);
    seen.add(diskKey);
    const attached = current.get(diskKey);
    if (attached !== undefined) {
      if (attached.lun !== lun) throw invalidParameter(`Disk '${disk.name}' is attached at LUN ${attached.lun}; its LUN cannot change.`, 'dataDisk.lun');
      next.push({ ...attached, caching });
      return;
    }
    if (createOption !== 'Attach') throw notImplemented(`Creating a data disk with createOption '${createOption}'`);
    checkAttachable(state, vm, disk);
    next.push({ lun, diskId: state.diskId(disk), createOption: 'Attach', caching });
    attach.push(disk);
  });
  if (next.length > vm.maxDataDisks) {
    throw operationNotAllowed(`The maximum number of data disks allowed to be attached to a VM of this size is ${vm.maxDataDisks}.`);
  }
  const kept = new Set(next.map((d) => d.diskId.toLowerCase()));
  const detach = vm.dataDisks
    .filter((d) => !kept.has(d.diskId.toLowerCase()))
    .map((d) => state.byId(d.diskId))
    .flatMap((found) => (found?.type === 'disks' ? [found.disk] : []));
  return { next, attach, detach };
}

/** The checks on a disk that is about to be attached. */
function checkAttachable(state: AzureComputeState, vm: VmRecord, disk: DiskRecord): void {
  if (disk.managedBy !== undefined && disk.managedBy.toLowerCase() !== state.vmId(vm).toLowerCase()) {
    throw new ArmError(409, 'ConflictingUserInput', `Disk '${disk.name}' cannot be attached as the disk is already owned by VM '${disk.managedBy}'.`);
  }
  if (disk.provisioningState !== 'Succeeded') {
    throw operationNotAllowed(`Disk '${disk.name}' cannot be attached while its provisioning state is '${disk.provisioningState}'.`);
  }
  if (disk.location !== vm.location) {
    throw invalidParameter(`Disk '${disk.name}' is in location '${disk.location}' but the VM is in '${vm.location}'.`, 'dataDisks');
  }
  if (disk.zone !== undefined && disk.zone !== vm.zone) {
    throw invalidParameter(`Disk '${disk.name}' is in zone '${disk.zone}' but the VM is in ${vm.zone === undefined ? 'no zone' : `zone '${vm.zone}'`}.`, 'dataDisks');
  }
}
