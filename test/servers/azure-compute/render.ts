// Resources in the JSON ARM returns for them (GET bodies and PUT/PATCH answers), from the state's records.
import type { AzureComputeState, DiskRecord, SnapshotRecord, VmRecord } from './state.ts';
import { parseResourceId } from './state.ts';

const GiB = 1024 ** 3;

/** The sku.tier the Disk RP reports for a sku.name. */
function tierOf(sku: string): string {
  if (sku.startsWith('PremiumV2')) return 'PremiumV2';
  if (sku.startsWith('Premium')) return 'Premium';
  if (sku.startsWith('Ultra')) return 'Ultra';
  return 'Standard';
}

/** The completionPercent of a snapshot with a background copy, or undefined when it has none. */
export function completionPercent(snapshot: SnapshotRecord): number | undefined {
  if (snapshot.copySteps === 0) return undefined;
  return Math.round((100 * snapshot.copyStep) / snapshot.copySteps);
}

/** A disk as GET /disks/{name} returns it. */
export function renderDisk(state: AzureComputeState, disk: DiskRecord): Record<string, unknown> {
  return {
    id: state.diskId(disk),
    name: disk.name,
    type: 'Microsoft.Compute/disks',
    location: disk.location,
    ...(disk.zone === undefined ? {} : { zones: [disk.zone] }),
    ...(Object.keys(disk.tags).length === 0 ? {} : { tags: disk.tags }),
    ...(disk.managedBy === undefined ? {} : { managedBy: disk.managedBy }),
    sku: { name: disk.sku, tier: tierOf(disk.sku) },
    properties: {
      creationData: {
        createOption: disk.createOption,
        ...(disk.sourceResourceId === undefined ? {} : { sourceResourceId: disk.sourceResourceId }),
        ...(disk.sourceUniqueId === undefined ? {} : { sourceUniqueId: disk.sourceUniqueId }),
      },
      diskSizeGB: disk.sizeGiB,
      diskSizeBytes: disk.sizeGiB * GiB,
      uniqueId: disk.uniqueId,
      encryption: { type: 'EncryptionAtRestWithPlatformKey' },
      networkAccessPolicy: 'AllowAll',
      publicNetworkAccess: 'Enabled',
      timeCreated: disk.timeCreated,
      provisioningState: disk.provisioningState,
      diskState: disk.managedBy === undefined ? 'Unattached' : 'Attached',
    },
  };
}

/** A snapshot as GET /snapshots/{name} returns it; completionPercent only while it has a background copy. */
export function renderSnapshot(state: AzureComputeState, snapshot: SnapshotRecord): Record<string, unknown> {
  const percent = completionPercent(snapshot);
  const succeeded = snapshot.provisioningState === 'Succeeded';
  let accessState: string | undefined;
  if (succeeded) accessState = percent === undefined || percent >= 100 ? 'Available' : 'Pending';
  return {
    id: state.snapshotId(snapshot),
    name: snapshot.name,
    type: 'Microsoft.Compute/snapshots',
    location: snapshot.location,
    ...(Object.keys(snapshot.tags).length === 0 ? {} : { tags: snapshot.tags }),
    sku: { name: snapshot.sku, tier: 'Standard' },
    properties: {
      creationData: { createOption: snapshot.createOption, sourceResourceId: snapshot.sourceResourceId, sourceUniqueId: snapshot.sourceUniqueId },
      diskSizeGB: snapshot.sizeGiB,
      diskSizeBytes: snapshot.sizeGiB * GiB,
      incremental: snapshot.incremental,
      ...(snapshot.familyId === undefined ? {} : { incrementalSnapshotFamilyId: snapshot.familyId }),
      uniqueId: snapshot.uniqueId,
      encryption: { type: 'EncryptionAtRestWithPlatformKey' },
      networkAccessPolicy: 'AllowAll',
      publicNetworkAccess: 'Enabled',
      timeCreated: snapshot.timeCreated,
      provisioningState: snapshot.provisioningState,
      diskState: 'Unattached',
      ...(percent === undefined ? {} : { completionPercent: percent }),
      ...(accessState === undefined ? {} : { snapshotAccessState: accessState }),
    },
  };
}

/**
 * The id of a disk as a VM's storage profile shows it: the Compute RP reports the resource group in
 * upper case there (a long-standing ARM quirk), so clients must compare ids case-insensitively.
 */
function vmViewOfDiskId(diskId: string): string {
  const parts = parseResourceId(diskId);
  if (parts === undefined) return diskId;
  return `/subscriptions/${parts.subscriptionId}/resourceGroups/${parts.resourceGroup.toUpperCase()}/providers/Microsoft.Compute/disks/${parts.name}`;
}

/** A VM as GET /virtualMachines/{name} returns it (the parts this server models). */
export function renderVm(state: AzureComputeState, vm: VmRecord): Record<string, unknown> {
  const diskJson = (diskId: string): { name: string; sku: string; sizeGiB: number } => {
    const found = state.byId(diskId);
    if (found?.type !== 'disks') throw new Error(`Azure Compute test server: VM ${vm.name} refers to missing disk ${diskId}`);
    return { name: found.disk.name, sku: found.disk.sku, sizeGiB: found.disk.sizeGiB };
  };
  const os = diskJson(vm.osDiskId);
  return {
    id: state.vmId(vm),
    name: vm.name,
    type: 'Microsoft.Compute/virtualMachines',
    location: vm.location,
    ...(vm.zone === undefined ? {} : { zones: [vm.zone] }),
    ...(Object.keys(vm.tags).length === 0 ? {} : { tags: vm.tags }),
    etag: `"${vm.version}"`,
    properties: {
      vmId: vm.vmId,
      hardwareProfile: { vmSize: vm.vmSize },
      storageProfile: {
        osDisk: {
          osType: 'Linux',
          name: os.name,
          createOption: 'FromImage',
          caching: 'ReadWrite',
          managedDisk: { id: vmViewOfDiskId(vm.osDiskId), storageAccountType: os.sku },
          deleteOption: 'Delete',
          diskSizeGB: os.sizeGiB,
        },
        dataDisks: [...vm.dataDisks]
          .sort((a, b) => a.lun - b.lun)
          .map((data) => {
            const disk = diskJson(data.diskId);
            return {
              lun: data.lun,
              name: disk.name,
              createOption: data.createOption,
              caching: data.caching,
              writeAcceleratorEnabled: false,
              managedDisk: { id: vmViewOfDiskId(data.diskId), storageAccountType: disk.sku },
              deleteOption: 'Detach',
              diskSizeGB: disk.sizeGiB,
              toBeDetached: false,
            };
          }),
      },
      provisioningState: vm.provisioningState,
      timeCreated: vm.timeCreated,
    },
  };
}
