// CRC32C (Castagnoli), the checksum GCS reports for every object, computed in plain TypeScript.

/** Reflected CRC32C polynomial, as in RFC 3720 (iSCSI) section 12.1. */
const POLYNOMIAL = 0x82f63b78;

/** One lookup table for byte-at-a-time CRC32C; built once when the module loads. */
const TABLE = ((): Uint32Array => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C of `data` as an unsigned 32-bit integer; `previous` continues a running checksum. */
export function crc32c(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) {
    // Both indexes are in range by construction; `?? 0` only satisfies noUncheckedIndexedAccess.
    crc = (TABLE[(crc ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}

/** The form GCS uses in `crc32c` fields and `x-goog-hash`: base64 of the big-endian 4 bytes. */
export function crc32cBase64(data: Uint8Array): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32c(data), 0);
  return out.toString('base64');
}
