// A Linux TAP device through /dev/net/tun (Documentation/networking/tuntap.rst): open the clone device,
// TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR names the interface and makes every read and write one
// Ethernet frame preceded by a struct virtio_net_hdr, whose size TUNSETVNETHDRSZ sets to the virtio 1.x
// header (12 bytes, num_buffers included, virtio 1.2 §5.1.6). TUNSETOFFLOAD(0) turns off every offload so the
// host never hands over a frame with a partial checksum or a GSO super-frame, until the virtio-net device has a
// guest that negotiated them (setOffload: GUEST_CSUM, GUEST_TSO4/6). The other way needs no setting: a frame written
// with NEEDS_CSUM or a GSO type in its header is taken as one packet whose checksum or segmentation the host's
// kernel finishes where the frame leaves the host, or never when it is delivered locally (tun_get_user ->
// virtio_net_hdr_to_skb, which checks the header again); the device passes only what the guest negotiated.
//
// The fd is non-blocking. Node cannot watch a character device in its event loop (libuv treats it as a
// file), so readiness comes from poll(2) run on koffi's worker pool, on the TAP fd and a wake-up pipe: the
// pipe lets close() end a pending poll at once, so nothing keeps a thread or the event loop after close.
import fs from 'node:fs';
import { libc, lastErrno, errnoName, SysError } from '../sys/libc.ts';
import { TapWriter } from './tap-writer.ts';

// linux/if_tun.h: _IOW('T', 202, int) and friends.
const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
/** TUNSETOFFLOAD flags (linux/if_tun.h): partial checksums, TCP segmentation offload over IPv4 and IPv6. */
export const TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04;
export const IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;
/** IFNAMSIZ (linux/if.h) including the terminating NUL. */
export const IFNAMSIZ = 16;
/** struct ifreq: name[16] then a union whose first member here is short ifr_flags. */
const IFREQ_BYTES = 40;
/** The virtio 1.x struct virtio_net_hdr (with num_buffers). */
export const TAP_VNET_HDR_BYTES = 12;

const O_NONBLOCK = 0o4000;
const POLLIN = 0x001;
const ioctlPtr = libc.func('int ioctl(int fd, unsigned long request, void *arg)');
const ioctlInt = libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)');
const pipe2 = libc.func('int pipe2(_Out_ int *fds, int flags)');
const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
// read(2) called directly: an empty TAP answers EAGAIN, which fs.readSync turns into a thrown exception, ~60 us of
// the VMM's CPU each on this (loaded) host against ~7 us for the call here; every receive pass ends on one.
const readFn = libc.func('long read(int fd, void *buf, unsigned long count)');
const O_CLOEXEC = 0o2000000;

/** Linux interface names: 1-15 bytes, no '/', ':', whitespace (dev_valid_name), not "." or "..". */
export function isValidInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.@+-]{1,15}$/.test(name) && name !== '.' && name !== '..';
}

export class TapError extends Error {}

/** How long TUNSETIFF retries EBUSY: the TAP's previous user (this VMM before a guest reboot) may still be letting go. */
const BUSY_RETRY_MS = 250;

/** TUNSETIFF, retried while the interface is busy for a moment; false with errno set on failure. */
function attach(fd: number, ifr: Buffer): boolean {
  const deadline = Date.now() + BUSY_RETRY_MS;
  for (;;) {
    if ((ioctlPtr(fd, TUNSETIFF, ifr) as number) === 0) return true;
    if (errnoName(lastErrno()) !== 'EBUSY' || Date.now() >= deadline) return false;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  }
}

export class Tap {
  readonly fd: number;
  private readonly wakeRead: number;
  private readonly wakeWrite: number;
  private polling = false;
  private closed = false;
  private onReadable: (() => void) | undefined;
  private readonly pollFds = Buffer.alloc(16);
  /** Writes go through a thread of their own (./tap-writer.ts; the VMM's default, RINGZERO_NET_TX_THREAD=0: not). */
  readonly writer: TapWriter | undefined;

  /**
   * Attach to TAP interface `name` (created, non-persistent, if it does not exist and we may create it).
   * `writerThread`: write frames from a thread of their own (./tap-writer.ts; `writerDirectMax`: its directMax).
   */
  constructor(readonly name: string, options: { writerThread?: boolean; writerDirectMax?: number } = {}) {
    if (!isValidInterfaceName(name)) throw new TapError(`invalid TAP interface name '${name}'`);
    let fd: number;
    try {
      fd = fs.openSync('/dev/net/tun', fs.constants.O_RDWR | O_NONBLOCK);
    } catch (error) {
      throw new TapError(`cannot open /dev/net/tun for TAP '${name}' (${(error as NodeJS.ErrnoException).code})`);
    }
    try {
      const ifr = Buffer.alloc(IFREQ_BYTES);
      ifr.write(name, 0, IFNAMSIZ - 1, 'latin1');
      ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, IFNAMSIZ);
      if (!attach(fd, ifr)) {
        const errno = lastErrno();
        const why = errnoName(errno);
        const hint = why === 'EPERM' ? ': needs CAP_NET_ADMIN, or a TAP made for this user (ip tuntap add dev NAME mode tap user USER)'
          : why === 'EBUSY' ? ': another process has it open' : why === 'EINVAL' ? ': it exists and is not a TAP device with these flags' : '';
        throw new TapError(`cannot attach to TAP '${name}' (${why})${hint}`);
      }
      const size = Buffer.alloc(4);
      size.writeInt32LE(TAP_VNET_HDR_BYTES);
      if ((ioctlPtr(fd, TUNSETVNETHDRSZ, size) as number) < 0) throw new SysError('ioctl(TUNSETVNETHDRSZ)', lastErrno());
      if ((ioctlInt(fd, TUNSETOFFLOAD, 0) as number) < 0) throw new SysError('ioctl(TUNSETOFFLOAD)', lastErrno());
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    const fds = new Int32Array(2);
    if ((pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number) < 0) {
      const errno = lastErrno();
      fs.closeSync(fd);
      throw new SysError('pipe2', errno);
    }
    this.fd = fd;
    [this.wakeRead, this.wakeWrite] = [fds[0], fds[1]];
    // struct pollfd[2]: { int fd; short events; short revents; }
    this.pollFds.writeInt32LE(fd, 0);
    this.pollFds.writeInt16LE(POLLIN, 4);
    this.pollFds.writeInt32LE(this.wakeRead, 8);
    this.pollFds.writeInt16LE(POLLIN, 12);
    if (options.writerThread) this.writer = new TapWriter(fd, options.writerDirectMax);
  }

  /**
   * Read one frame (virtio_net_hdr + Ethernet frame) into `into`; returns its length, or undefined when
   * nothing is queued. A frame longer than `into` is cut short by the kernel (the return value says so).
   */
  read(into: Uint8Array): number | undefined {
    if (this.closed) return undefined;
    const n = Number(readFn(this.fd, into, into.length));
    // EAGAIN: nothing queued. Anything else (EIO while the interface is being torn down, EFAULT/EINVAL on a short
    // buffer) is no frame either.
    if (n < 0) return undefined;
    return n;
  }

  /** Send one frame (virtio_net_hdr + Ethernet frame); false if the kernel refused it (dropped). */
  write(frame: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.writer) return this.writer.write(frame);
    try {
      return fs.writeSync(this.fd, frame) === frame.length;
    } catch {
      return false; // EIO (interface down), EINVAL (malformed), EAGAIN: the frame is lost, as on a wire
    }
  }

  /**
   * Send a frame of `len` bytes that `fill` writes (false: send nothing): with the writer thread, straight into its
   * ring (./tap-writer.ts writeWith); without, into `scratch` and then write(2) as write() does.
   */
  writeWith(len: number, fill: (into: Uint8Array) => boolean, scratch: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.writer) return this.writer.writeWith(len, fill, scratch);
    const frame = scratch.subarray(0, len);
    return fill(frame) && this.write(frame);
  }

  /**
   * Which offloaded frames the kernel may hand over (TUN_F_* flags; TSO needs TUN_F_CSUM): with them the host's
   * stack sends this interface frames with partial checksums and TCP segments up to 64 KiB, described by the
   * virtio_net_hdr in front of each. Throws when the kernel refuses.
   */
  setOffload(flags: number): void {
    if (this.closed) return;
    if ((ioctlInt(this.fd, TUNSETOFFLOAD, flags >>> 0) as number) < 0) throw new SysError('ioctl(TUNSETOFFLOAD)', lastErrno());
  }

  /** Call `callback` once (on the event loop) when a frame can be read; replaces an earlier callback. */
  whenReadable(callback: () => void): void {
    this.onReadable = callback;
    if (this.polling || this.closed) return;
    this.polling = true;
    (poll as unknown as { async: (...args: unknown[]) => void }).async(this.pollFds, 2, -1, (error: unknown, result: number) => {
      this.polling = false;
      if (this.closed) {
        this.release();
        return;
      }
      const callback = this.onReadable;
      this.onReadable = undefined;
      if (error || result < 0) {
        // EINTR and the like: try again later rather than spin.
        setTimeout(() => { if (callback) this.whenReadable(callback); }, 10);
        return;
      }
      callback?.();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onReadable = undefined;
    // (the writer thread ends before the fd it writes to closes)
    this.writer?.stop();
    // The TAP fd goes at once, so the interface is free for the next user (a VM restarted after a guest
    // reboot attaches again right away; the kernel lets go of it when the woken poll returns, see attach()).
    try { fs.closeSync(this.fd); } catch { /* already closed */ }
    if (this.polling) {
      // Wake the pending poll; its completion closes the pipe. The pipe must outlive the poll: were its
      // number reused by a quiet file before the poll rescans, the poll would sleep for good.
      try { fs.writeSync(this.wakeWrite, Buffer.of(1)); } catch { /* pipe full: poll wakes anyway */ }
    } else {
      this.release();
    }
  }

  private release(): void {
    for (const fd of [this.wakeRead, this.wakeWrite]) {
      try { fs.closeSync(fd); } catch { /* already closed */ }
    }
  }
}
