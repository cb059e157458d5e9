// The "newc" cpio format (SVR4 without CRC), the only one the kernel's initramfs unpacker accepts.
// Reference: Linux Documentation/driver-api/early-userspace/buffer-format.rst.
//
// Each member is a 110-byte ASCII header, then the NUL-terminated name, padded so the data starts on a
// 4-byte boundary, then the data, padded again to a 4-byte boundary. The header is the magic "070701"
// followed by 13 fields of 8 hexadecimal digits each. The archive ends with a member named "TRAILER!!!".

export const NEWC_MAGIC = '070701';
export const NEWC_HEADER_SIZE = 110;
export const TRAILER_NAME = 'TRAILER!!!';

// File type bits of st_mode (POSIX <sys/stat.h>, same values on Linux).
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export type CpioEntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block';

export interface CpioEntry {
  /** Path inside the archive, without a leading slash (e.g. "bin/busybox"). */
  name: string;
  type: CpioEntryType;
  /** Permission bits (e.g. 0o755); the file type bits come from `type`. */
  perm: number;
  /** Contents of a regular file. */
  data?: Uint8Array;
  /** Target of a symbolic link. */
  target?: string;
  /** Device numbers of a character or block device node. */
  major?: number;
  minor?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; 0 by default so the same inputs give the same bytes. */
  mtime?: number;
}

/** One member as read back from an archive. */
export interface CpioMember {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
  /** Byte offset of the member's header in the archive. */
  offset: number;
}

const TYPE_BITS: Record<CpioEntryType, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
};

const MAX_FIELD = 0xffffffff;

function align4(n: number): number {
  return (n + 3) & ~3;
}

function hex8(value: number, what: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new RangeError(`cpio: ${what} ${value} does not fit in a newc field`);
  }
  return value.toString(16).padStart(8, '0');
}

function entryData(entry: CpioEntry): Uint8Array {
  switch (entry.type) {
    case 'file':
      return entry.data ?? new Uint8Array(0);
    case 'symlink':
      if (entry.target === undefined || entry.target === '') {
        throw new Error(`cpio: symlink ${entry.name} has no target`);
      }
      // A symlink's data is its target, without a terminating NUL.
      return new TextEncoder().encode(entry.target);
    default:
      return new Uint8Array(0);
  }
}

function header(fields: {
  ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; fileSize: number;
  rdevMajor: number; rdevMinor: number; nameSize: number;
}): string {
  // Field order from buffer-format.rst: c_ino, c_mode, c_uid, c_gid, c_nlink, c_mtime, c_filesize,
  // c_maj, c_min (device holding the file: unused here), c_rmaj, c_rmin (device node numbers),
  // c_namesize (including the NUL), c_chksum (0 for the "070701" variant).
  return NEWC_MAGIC
    + hex8(fields.ino, 'inode')
    + hex8(fields.mode, 'mode')
    + hex8(fields.uid, 'uid')
    + hex8(fields.gid, 'gid')
    + hex8(fields.nlink, 'nlink')
    + hex8(fields.mtime, 'mtime')
    + hex8(fields.fileSize, 'file size')
    + hex8(0, 'dev major')
    + hex8(0, 'dev minor')
    + hex8(fields.rdevMajor, 'rdev major')
    + hex8(fields.rdevMinor, 'rdev minor')
    + hex8(fields.nameSize, 'name size')
    + hex8(0, 'checksum');
}

function validateName(name: string): void {
  if (name === '' || name.startsWith('/') || name.split('/').some((part) => part === '' || part === '..')) {
    throw new Error(`cpio: bad member name ${JSON.stringify(name)}`);
  }
  if (name.includes('\0')) throw new Error('cpio: member name contains NUL');
}

/**
 * Serialize entries into a newc archive. Directories must come before their contents (the kernel
 * creates members in archive order). Every member gets its own inode number and a link count of 1
 * (2 for directories), so the kernel never mistakes two files for hard links of each other.
 */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const push = (bytes: Uint8Array): void => {
    chunks.push(bytes);
    offset += bytes.length;
  };
  const pad = (): void => {
    const padded = align4(offset);
    if (padded > offset) push(new Uint8Array(padded - offset));
  };
  const seen = new Set<string>();
  let ino = 1;

  const emit = (name: string, mode: number, nlink: number, data: Uint8Array, extra: Partial<CpioEntry>): void => {
    const nameBytes = encoder.encode(name);
    push(encoder.encode(header({
      ino: name === TRAILER_NAME ? 0 : ino++,
      mode,
      uid: extra.uid ?? 0,
      gid: extra.gid ?? 0,
      nlink,
      mtime: extra.mtime ?? 0,
      fileSize: data.length,
      rdevMajor: extra.major ?? 0,
      rdevMinor: extra.minor ?? 0,
      nameSize: nameBytes.length + 1,
    })));
    push(nameBytes);
    push(new Uint8Array(1));
    pad();
    if (data.length > 0) {
      push(data);
      pad();
    }
  };

  for (const entry of entries) {
    validateName(entry.name);
    if (seen.has(entry.name)) throw new Error(`cpio: duplicate member ${entry.name}`);
    seen.add(entry.name);
    if (!Number.isInteger(entry.perm) || entry.perm < 0 || entry.perm > 0o7777) {
      throw new RangeError(`cpio: bad permissions ${entry.perm} for ${entry.name}`);
    }
    if (entry.type !== 'file' && entry.data !== undefined && entry.data.length > 0) {
      throw new Error(`cpio: ${entry.type} ${entry.name} cannot carry data`);
    }
    const isDevice = entry.type === 'char' || entry.type === 'block';
    if (isDevice && (entry.major === undefined || entry.minor === undefined)) {
      throw new Error(`cpio: device node ${entry.name} needs major and minor numbers`);
    }
    emit(entry.name, TYPE_BITS[entry.type] | entry.perm, entry.type === 'dir' ? 2 : 1, entryData(entry),
      isDevice ? entry : { uid: entry.uid, gid: entry.gid, mtime: entry.mtime });
  }
  emit(TRAILER_NAME, 0, 1, new Uint8Array(0), {});
  return Buffer.concat(chunks, offset);
}

/**
 * Parse a newc archive (strictly: wrong magic, bad hex, a truncated member or a missing trailer throw).
 * Returns the members before the trailer.
 */
export function parseCpio(archive: Uint8Array): CpioMember[] {
  const decoder = new TextDecoder();
  const members: CpioMember[] = [];
  let pos = 0;
  for (;;) {
    if (pos + NEWC_HEADER_SIZE > archive.length) throw new Error(`cpio: truncated header at offset ${pos}`);
    const head = decoder.decode(archive.subarray(pos, pos + NEWC_HEADER_SIZE));
    if (!head.startsWith(NEWC_MAGIC)) throw new Error(`cpio: bad magic at offset ${pos}`);
    const field = (index: number): number => {
      const text = head.slice(6 + index * 8, 14 + index * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(text)) throw new Error(`cpio: bad header field at offset ${pos}`);
      return parseInt(text, 16);
    };
    const nameSize = field(11);
    const fileSize = field(6);
    const nameStart = pos + NEWC_HEADER_SIZE;
    if (nameSize < 1 || nameStart + nameSize > archive.length) throw new Error(`cpio: bad name at offset ${pos}`);
    if (archive[nameStart + nameSize - 1] !== 0) throw new Error(`cpio: name not NUL-terminated at offset ${pos}`);
    const name = decoder.decode(archive.subarray(nameStart, nameStart + nameSize - 1));
    const dataStart = align4(nameStart + nameSize);
    const dataEnd = dataStart + fileSize;
    if (dataEnd > archive.length) throw new Error(`cpio: truncated data of ${name}`);
    if (name === TRAILER_NAME) return members;
    members.push({
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      nlink: field(4),
      mtime: field(5),
      devMajor: field(7),
      devMinor: field(8),
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: archive.subarray(dataStart, dataEnd),
      offset: pos,
    });
    pos = align4(dataEnd);
  }
}
